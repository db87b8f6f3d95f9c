"""Samplers: steppers on a decreasing time grid over the denoiser contract, and ``sample``."""

from ._driver import sample
from .base import SampleInfo, Sampler, SamplerContext, schedule_point
from .ddim import DDIM
from .euler_maruyama import EulerMaruyama
from .pf_ode import PFODE
from .registry import SAMPLERS, get_sampler

__all__ = [
    "sample", "Sampler", "SampleInfo", "SamplerContext", "schedule_point", "DDIM", "EulerMaruyama", "PFODE",
    "SAMPLERS", "get_sampler",
]
