"""Small reference networks: a time-conditioned MLP for vector data and a compact image UNet."""

from ._common import FourierEmbedding, SinusoidalEmbedding
from .mlp import MLPDenoiser, TimeMLP
from .unet import UNet

__all__ = ["MLPDenoiser", "TimeMLP", "UNet", "SinusoidalEmbedding", "FourierEmbedding"]
