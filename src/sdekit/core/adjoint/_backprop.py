"""Backpropagation through every step: the solve of ``adjoint=None``, as a strategy object."""

from __future__ import annotations

import torch

from ..integrate import run_ode, run_sde
from ..strategy import AdjointStrategy, ODESolve, SDESolve


class Backprop(AdjointStrategy):
    """Backpropagate through every solver step (the same as ``adjoint=None``).

    The gradient is the exact derivative of the discrete solve; memory grows linearly with the
    number of steps (every step's intermediate values are kept for the backward pass).
    """

    def solve_sde(self, task: SDESolve) -> torch.Tensor:
        return run_sde(task)

    def solve_ode(self, task: ODESolve) -> torch.Tensor:
        return run_ode(task)
