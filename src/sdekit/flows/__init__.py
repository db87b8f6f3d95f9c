"""Flows: methods that work on a trained flow's ODE.

Bespoke solvers (Shaul, Perez, Chen, Thabet, Pumarola, Lipman, "Bespoke Solvers for Generative Flow
Models", ICLR 2024): a scale-time transform of the flow's ODE and a base RK1 / RK2 step, learned for one
model and one budget of model calls, usable as a sampler with :func:`sdekit.diffusion.sample`.
"""

from .bespoke import BespokeSolver

__all__ = ["BespokeSolver"]
