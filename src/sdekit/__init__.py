"""sdekit: stochastic differential equations for generative modelling in PyTorch."""

from . import data as data  # embedded data sets: sdekit.data
from . import diffusion as diffusion  # the diffusion layer: sdekit.diffusion
from . import metrics as metrics  # SW2, MMD, noise floors: sdekit.metrics
from . import nn as nn  # reference networks: sdekit.nn
from . import train as train  # trainer, checkpoints, DDP: sdekit.train
from .core import (
    NOISE_TYPES,
    SDE,
    SDE_TYPES,
    AdjointStrategy,
    Backprop,
    BrownianGrid,
    BrownianPath,
    Checkpointed,
    ContinuousAdjoint,
    ODESolver,
    ReversibleAdjoint,
    SDESolver,
    odeint,
    sdeint,
)

__version__ = "0.1.0"

__all__ = [
    "sdeint", "odeint", "BrownianPath", "BrownianGrid", "SDE", "NOISE_TYPES", "SDE_TYPES",
    "SDESolver", "ODESolver", "__version__",
    "AdjointStrategy", "Backprop", "Checkpointed", "ContinuousAdjoint", "ReversibleAdjoint",
]
