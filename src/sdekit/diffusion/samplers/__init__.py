"""Samplers: steppers on a decreasing time grid over the denoiser contract, and ``sample``."""

from ._driver import sample
from .base import SampleInfo, Sampler, SamplerContext, schedule_point
from .ddim import DDIM
from .deis import DEIS
from .dpm_solver import DPMSolverPP, SDEDPMSolverPP
from .edm import EDMHeun
from .er_sde import ERSDE, NoiseScale
from .euler_maruyama import EulerMaruyama
from .ipndm import IPNDM
from .pc import PredictorCorrector
from .pf_ode import PFODE
from .registry import SAMPLERS, get_sampler
from .sa_solver import IntervalTau, SASolver
from .unipc import UniPC

__all__ = [
    "sample", "Sampler", "SampleInfo", "SamplerContext", "schedule_point", "DDIM", "EulerMaruyama", "PFODE",
    "SAMPLERS", "get_sampler", "DPMSolverPP", "SDEDPMSolverPP", "DEIS", "IPNDM", "UniPC", "EDMHeun",
    "PredictorCorrector", "SASolver", "IntervalTau", "ERSDE", "NoiseScale",
]
