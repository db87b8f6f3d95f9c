"""Flows: methods that work on a trained flow's ODE.

Bespoke solvers (Shaul, Perez, Chen, Thabet, Pumarola, Lipman, "Bespoke Solvers for Generative Flow
Models", ICLR 2024): a scale-time transform of the flow's ODE and a base RK1 / RK2 step, learned for one
model and one budget of model calls, usable as a sampler with :func:`sdekit.diffusion.sample`.

MLE fine-tuning of reconstructions (Li, Ding, Li, Li, "Fine-Tuning Flow Matching via Maximum Likelihood
Estimation of Reconstructions", 2025): FT trains the field on the likelihood of its few-step reconstructions of
the data (:class:`ReconstructionMLE`); ResFT learns a contracting residual on top of the frozen field
(:class:`ResidualFlow`, :class:`ContractingResidual`).
"""

from .bespoke import BespokeSolver
from .finetune import (
    ContractingResidual,
    ReconstructionMLE,
    ResidualFlow,
    field_stiffness,
    flow_decode,
    flow_encode,
)

__all__ = ["BespokeSolver",
           "flow_encode", "flow_decode", "ReconstructionMLE", "ContractingResidual", "ResidualFlow",
           "field_stiffness"]
