"""Solvers and the one registry that turns names into solver objects."""

from __future__ import annotations

from .base import ODESolver, SDESolver
from .euler_heun import EulerHeun
from .log_ode import LogODE
from .ode_solvers import BOSH3, DOPRI5, EULER, HEUN, MIDPOINT, RK4, TSIT5, ButcherTableau, ExplicitRK
from .sde_solvers import SRA1, SRI2, SRK, Euler, Heun, Midpoint, Milstein, ReversibleHeun, SRKTableau

__all__ = [
    "SDESolver", "ODESolver", "Euler", "Milstein", "SRK", "Heun", "Midpoint", "ReversibleHeun", "EulerHeun", "LogODE",
    "SRKTableau", "SRI2", "SRA1", "ButcherTableau", "ExplicitRK", "EULER", "MIDPOINT", "HEUN",
    "RK4", "BOSH3", "DOPRI5", "TSIT5", "SDE_METHODS", "ODE_METHODS", "sde_solver", "ode_solver",
]

# name -> factory taking the problem's sde_type
SDE_METHODS = {
    "euler": lambda sde_type: Euler(),
    "milstein": lambda sde_type: Milstein(sde_type=sde_type),
    "milstein_grad_free": lambda sde_type: Milstein(sde_type=sde_type, derivative_free=True),
    "srk": lambda sde_type: SRK(),
    "heun": lambda sde_type: Heun(),
    "midpoint": lambda sde_type: Midpoint(),
    "reversible_heun": lambda sde_type: ReversibleHeun(),
    "euler_heun": lambda sde_type: EulerHeun(),
    "log_ode": lambda sde_type: LogODE(),
}

ODE_METHODS = {t.name: t for t in (EULER, MIDPOINT, HEUN, RK4, BOSH3, DOPRI5, TSIT5)}


def sde_solver(method, sde_type: str = "ito") -> SDESolver:
    """Resolve ``method`` (a name or an :class:`SDESolver`) for an SDE of ``sde_type``."""
    if isinstance(method, SDESolver):
        return method
    if isinstance(method, str):
        if method not in SDE_METHODS:
            raise ValueError(f"unknown SDE method {method!r}; choose one of {sorted(SDE_METHODS)} "
                             "or pass an SDESolver object")
        return SDE_METHODS[method](sde_type)
    raise TypeError(f"method must be a name or an SDESolver, got {type(method).__name__}")


def ode_solver(method) -> ODESolver:
    """Resolve ``method`` (a name, a :class:`ButcherTableau` or an :class:`ODESolver`)."""
    if isinstance(method, ODESolver):
        return method
    if isinstance(method, ButcherTableau):
        return ExplicitRK(method)
    if isinstance(method, str):
        if method not in ODE_METHODS:
            raise ValueError(f"unknown ODE method {method!r}; choose one of {sorted(ODE_METHODS)} "
                             "or pass an ODESolver / ButcherTableau")
        return ExplicitRK(ODE_METHODS[method])
    raise TypeError(f"method must be a name, a ButcherTableau or an ODESolver, got {type(method).__name__}")
