"""The contract between the loop and the gradient strategies (``sdeint(..., adjoint=...)``).

:func:`~sdekit.core.integrate.sdeint` and :func:`~sdekit.core.integrate.odeint` check their arguments,
build the problem and the solver, and hand the solve to the strategy as an :class:`SDESolve` or an
:class:`ODESolve`; the strategy runs it (:meth:`AdjointStrategy.solve_sde`,
:meth:`AdjointStrategy.solve_ode`) so that gradients flow its way. This module imports no strategy, so
the loop depends on the contract only; the strategies themselves live in :mod:`sdekit.core.adjoint`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .sde import Problem
from .solvers.base import ODESolver, SDESolver

__all__ = ["AdjointStrategy", "SDESolve", "ODESolve", "check_strategy"]


@dataclass(frozen=True)
class SDESolve:
    """One checked ``sdeint`` call, as a strategy receives it.

    Attributes:
        problem: the checked SDE (state packed into one tensor); ``problem.sde`` is the user's object.
        solver: the resolved solver, compatible with the problem.
        y0: the packed initial state.
        ts: the output times (strictly monotone floats).
        dt, bm, adaptive, rtol, atol, dt_min, progress, max_steps: as passed to ``sdeint``.
    """

    problem: Problem
    solver: SDESolver
    y0: torch.Tensor
    ts: list[float]
    dt: float | None
    bm: Any
    adaptive: bool
    rtol: float
    atol: float
    dt_min: float | None
    progress: bool
    max_steps: int


@dataclass(frozen=True)
class ODESolve:
    """One checked ``odeint`` call, as a strategy receives it.

    Attributes:
        f: the user's function (where the strategies look for parameters).
        func: ``f`` on the packed state.
        solver: the resolved ODE solver.
        y0: the packed initial state.
        ts: the output times (strictly monotone floats).
        rtol, atol, dt, dt_min, progress, max_steps: as passed to ``odeint``.
    """

    f: Callable
    func: Callable
    solver: ODESolver
    y0: torch.Tensor
    ts: list[float]
    rtol: float
    atol: float
    dt: float | None
    dt_min: float | None
    progress: bool
    max_steps: int


_STRATEGIES = "None, Backprop(), Checkpointed(), ContinuousAdjoint() or ReversibleAdjoint()"


class AdjointStrategy:
    """Base class of the ``adjoint=`` strategies; see :mod:`sdekit.core.adjoint`.

    A strategy implements the solves it supports: ``sdeint`` calls :meth:`solve_sde` and ``odeint``
    calls :meth:`solve_ode` with the checked call; the base class supports neither.
    """

    params: tuple[torch.Tensor, ...] | None = None

    def solve_sde(self, task: SDESolve) -> torch.Tensor:
        """Run the SDE solve ``task`` so that gradients flow this strategy's way.

        Arguments:
            task: the checked ``sdeint`` call.

        Returns:
            The packed states at ``task.ts``, stacked: a tensor ``(len(task.ts), *task.y0.shape)``.

        Raises:
            TypeError when the strategy does not solve SDEs; ValueError when it does not apply to this
            solve (e.g. a method or adaptive stepping it cannot differentiate).
        """
        raise TypeError(f"adjoint={self!r} does not apply to sdeint; pass one of {_STRATEGIES}")

    def solve_ode(self, task: ODESolve) -> torch.Tensor:
        """Run the ODE solve ``task`` so that gradients flow this strategy's way.

        Arguments:
            task: the checked ``odeint`` call.

        Returns:
            The packed states at ``task.ts``, stacked: a tensor ``(len(task.ts), *task.y0.shape)``.

        Raises:
            TypeError when the strategy does not solve ODEs; ValueError when it does not apply to this
            solve.
        """
        raise TypeError(f"adjoint={self!r} does not apply to odeint; pass one of {_STRATEGIES}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def check_strategy(adjoint) -> AdjointStrategy:
    """``adjoint`` itself when it is a strategy object; a TypeError naming what fits otherwise."""
    if isinstance(adjoint, AdjointStrategy):
        return adjoint
    if isinstance(adjoint, type) and issubclass(adjoint, AdjointStrategy):
        raise TypeError(f"adjoint must be an instance, e.g. adjoint={adjoint.__name__}(); "
                        "got the class itself")
    raise TypeError(f"adjoint must be one of {_STRATEGIES}; got {adjoint!r}")
