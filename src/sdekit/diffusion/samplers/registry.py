"""The one registry of sampler names. Adding a sampler: one class and one entry here."""

from __future__ import annotations

from .base import Sampler
from .ddim import DDIM
from .euler_maruyama import EulerMaruyama
from .pf_ode import PFODE

__all__ = ["SAMPLERS", "get_sampler"]

SAMPLERS = {
    "ddim": DDIM,
    "euler-maruyama": EulerMaruyama,
    "ode": PFODE,
}


def get_sampler(solver) -> Sampler:
    """Resolve a sampler name (see :data:`SAMPLERS`; default settings) or pass a :class:`Sampler` through."""
    if isinstance(solver, Sampler):
        return solver
    if isinstance(solver, str):
        if solver not in SAMPLERS:
            raise ValueError(f"unknown solver {solver!r}; choose one of {sorted(SAMPLERS)} or pass a Sampler "
                             "object such as DDIM(eta=1.0) or PFODE(method='rk4')")
        return SAMPLERS[solver]()
    raise TypeError(f"solver must be a name or a Sampler object, got {type(solver).__name__}")
