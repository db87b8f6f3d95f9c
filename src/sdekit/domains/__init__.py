"""Diffusion on constrained domains: reflected diffusion on boxes (Lou & Ermon 2023)."""

from ._box import Box
from ._kernel import SWITCH_SIGMA, reflected_kernel_score, reflected_log_kernel, reflected_perturb

__all__ = ["Box", "SWITCH_SIGMA", "reflected_log_kernel", "reflected_kernel_score", "reflected_perturb"]
