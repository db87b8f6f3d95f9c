"""Monte Carlo with SDEs.

Feynman–Kac estimates of parabolic Cauchy problems with variable-exponent coefficients, checked
against a Crank–Nicolson reference ("Stochastic representation of solutions for the parabolic Cauchy
problem with variable exponent coefficients"), and samplers for unnormalised densities: unadjusted,
underdamped and annealed Langevin, and the training-free multiscale samplers MultALMC / MultCDiff
("Sampling by averaging: A multiscale approach to score estimation"). Every sampler counts the target's
gradient evaluations so that comparisons are at equal budget.
"""

# public names are added module by module below (each import line lists its module's names)

__all__: list[str] = []

from .feynman_kac import (
    AntitheticBrownian,
    ControlVariate,
    DiscretisationBias,
    FeynmanKac,
    FeynmanKacEstimate,
    VariableExponentSDE,
    gbm_control,
    gbm_expectation,
    gbm_power_expectation,
)
from .langevin import (
    OBABO,
    ULA,
    ULMC,
    AnnealedLangevin,
    AnnealingSchedule,
    KineticLangevin,
    OverdampedLangevin,
    SampleResult,
)
from .multiscale import ConditionalTarget, GaussianNoise, MultALMC, MultCDiff, StudentTNoise
from .pde import CrankNicolsonResult, crank_nicolson, crank_nicolson_refined
from .targets import Funnel, Gaussian, GaussianMixture, LogisticRegression, Rings, StudentT, Target, as_target

__all__ += [
    "VariableExponentSDE", "FeynmanKac", "FeynmanKacEstimate", "AntitheticBrownian", "ControlVariate",
    "gbm_control", "gbm_expectation", "gbm_power_expectation", "DiscretisationBias",
    "crank_nicolson", "crank_nicolson_refined", "CrankNicolsonResult",
]

__all__ += [
    "Target", "as_target", "Gaussian", "GaussianMixture", "Rings", "Funnel", "StudentT", "LogisticRegression",
    "OverdampedLangevin", "KineticLangevin", "OBABO", "AnnealingSchedule", "SampleResult", "ULA", "ULMC",
    "AnnealedLangevin", "GaussianNoise", "StudentTNoise", "ConditionalTarget", "MultALMC", "MultCDiff",
]
