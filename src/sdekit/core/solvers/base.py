"""Solver interfaces. A solver is an ``init``/``step`` pair that declares what it can do; the time
loop lives in :mod:`sdekit.core.integrate` and nowhere else."""

from __future__ import annotations

from typing import Any

import torch


class SDESolver:
    """Base class of SDE solvers.

    Class attributes (capabilities, checked once at the ``sdeint`` boundary):
        name: registry name.
        sde_type: ``"ito"`` or ``"stratonovich"``: the calculus the scheme converges to. With
            additive noise both coincide and any solver is accepted.
        noise_types: the noise types the scheme supports.
        strong_order: strong order for general members of the supported noise types.
        additive_strong_order: strong order for additive noise.
        weak_order: weak order.
        levy_area: whether the step needs the space-time Levy area (``dW`` is then ``(dW, U)``).
    """

    name: str = ""
    sde_type: str = "ito"
    noise_types: tuple[str, ...] = ("diagonal", "scalar", "additive", "general")
    strong_order: float = 0.5
    additive_strong_order: float | None = None
    weak_order: float = 1.0
    levy_area: bool = False

    def order_for(self, noise_type: str) -> float:
        """The strong order on problems of ``noise_type``."""
        if noise_type == "additive" and self.additive_strong_order is not None:
            return self.additive_strong_order
        return self.strong_order

    def init(self, problem, t0: torch.Tensor, y0: torch.Tensor) -> Any:
        """Extra solver state carried between steps (``()`` for one-step methods)."""
        return ()

    def step(self, problem, t0: torch.Tensor, t1: torch.Tensor, y0: torch.Tensor, dW, state):
        """One step from ``t0`` to ``t1``; returns ``(y1, state)``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ODESolver:
    """Base class of ODE solvers: ``step(f, t0, t1, y0, state) -> (y1, error | None, state)``.

    Attributes:
        name: registry name.
        order: order of the solution.
        error_order: order of the embedded error estimate (``None``: not adaptive).
    """

    name: str = ""
    order: int = 1
    error_order: int | None = None

    @property
    def adaptive(self) -> bool:
        return self.error_order is not None

    def init(self, f, t0, y0) -> Any:
        return ()

    def step(self, f, t0, t1, y0, state):
        raise NotImplementedError
