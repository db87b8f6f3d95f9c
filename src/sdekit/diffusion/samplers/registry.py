"""The one registry of sampler names. Adding a sampler: one class and one entry here."""

from __future__ import annotations

from functools import partial

from .._utils import resolve_name
from .base import Sampler
from .ddim import DDIM
from .deis import DEIS
from .dpm_solver import DPMSolverPP, SDEDPMSolverPP
from .edm import EDMHeun
from .er_sde import ERSDE
from .euler_maruyama import EulerMaruyama
from .ipndm import IPNDM
from .pc import PredictorCorrector
from .pf_ode import PFODE
from .sa_solver import SASolver
from .unipc import UniPC

__all__ = ["SAMPLERS", "get_sampler"]

SAMPLERS = {
    "ddim": DDIM,
    "euler-maruyama": EulerMaruyama,
    "ode": PFODE,
    "dpm++2m": partial(DPMSolverPP, order=2),
    "dpm++3m": partial(DPMSolverPP, order=3),
    "sde-dpm++2m": SDEDPMSolverPP,
    "deis": DEIS,
    "ipndm": IPNDM,
    "unipc": UniPC,
    "heun": EDMHeun,
    "pc": PredictorCorrector,
    "sa-solver": SASolver,
    "er-sde": ERSDE,
}


def get_sampler(solver: str | Sampler) -> Sampler:
    """Resolve a sampler name (see :data:`SAMPLERS`; default settings) or pass a :class:`Sampler` through."""
    resolved = resolve_name(solver, SAMPLERS, Sampler, "solver",
                            " or pass a Sampler object such as DDIM(eta=1.0) or PFODE(method='rk4')")
    if resolved is not None:
        return resolved
    raise TypeError(f"solver must be a name or a Sampler object, got {type(solver).__name__}")
