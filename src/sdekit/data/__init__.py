"""Embedded data sets (nothing is downloaded): 2-D toys, scikit-learn's 8x8 digits, Gaussian mixtures."""

from .digits import DIGITS_SPLIT_SIZES, digits
from .mixtures import gaussian_mixture
from .registry import SPLITS, DatasetSpec, dataset_names, get_dataset, load_dataset, register_dataset
from .toys import TOYS, checkerboard, eight_gaussians, moons, rings, spirals

__all__ = [
    "moons", "checkerboard", "spirals", "eight_gaussians", "rings", "TOYS",
    "digits", "DIGITS_SPLIT_SIZES", "gaussian_mixture",
    "DatasetSpec", "load_dataset", "dataset_names", "get_dataset", "register_dataset", "SPLITS",
]
