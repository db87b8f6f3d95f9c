"""Sample-quality metrics: exact 1-D and sliced Wasserstein distances, RBF MMD, and noise floors."""

from .mmd import mmd_rbf
from .noise_floor import NoiseFloor, noise_floor
from .wasserstein import random_directions, sliced_wasserstein, wasserstein_1d

__all__ = [
    "wasserstein_1d", "sliced_wasserstein", "random_directions", "mmd_rbf", "NoiseFloor", "noise_floor",
]
