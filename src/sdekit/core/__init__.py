"""The numerical core: SDE/ODE problems, Brownian sources, solvers and the one time loop."""

from .adjoint import AdjointStrategy, Backprop, Checkpointed, ContinuousAdjoint, ReversibleAdjoint
from .brownian import BrownianGrid, BrownianPath
from .integrate import odeint, sdeint
from .sde import NOISE_TYPES, SDE, SDE_TYPES
from .solvers import ODESolver, SDESolver

__all__ = [
    "sdeint", "odeint", "BrownianPath", "BrownianGrid", "SDE", "NOISE_TYPES", "SDE_TYPES",
    "SDESolver", "ODESolver",
    "AdjointStrategy", "Backprop", "Checkpointed", "ContinuousAdjoint", "ReversibleAdjoint",
]
