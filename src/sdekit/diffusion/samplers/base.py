"""The sampler interface: a stepper on a decreasing time grid, driven by the core's one time loop.

A sampler implements ``init(ctx, x)`` and ``step(ctx, k, t0, t1, x, state) -> (x1, state)`` for one
grid step from ``t0`` down to ``t1 < t0`` (``k`` is the step index into ``ctx.times``, so multistep
methods can lower their order at the ends), and declares

* ``order``: the convergence order of the method (global order for ODE samplers, weak order for
  stochastic ones);
* ``nfe_per_step``: model calls per step (``None`` when it varies, e.g. adaptive ODE solvers);
* ``stochastic``: whether ``step`` consumes Brownian increments ``ctx.noise(k, t0, t1)``;
* ``reverse_sde_tau2``: the reverse-time SDE family it discretises (for the continuous adjoint);
* ``noise_substeps``: into how many equal sub-intervals a stochastic sampler splits a grid step for its
  noise (default 1: it asks for the increment over the whole step, ``ctx.noise(k, t0, t1)``; ``m > 1``:
  it asks for the increments over the ``m`` sub-intervals between :func:`substep_edges`, e.g.
  :class:`~sdekit.diffusion.PredictorCorrector`). The noise sources of
  :func:`~sdekit.diffusion.sample` and :func:`~sdekit.diffusion.sample_sharded` serve exactly these
  intervals.

Samplers see the model only as the denoiser ``ctx.denoiser(x, t)`` (data prediction) and never loop
over time; :func:`~sdekit.diffusion.sample` resolves names, grids and noise and runs the loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import torch

from ..schedules import Schedule

__all__ = ["BrownianSource", "Sampler", "SamplerContext", "SampleInfo", "schedule_point", "substep_edges"]

#: a Brownian source ``bm(ta, tb) -> W(tb) - W(ta)`` (e.g. :class:`sdekit.BrownianPath`)
BrownianSource: TypeAlias = Callable[[float, float], torch.Tensor]


def substep_edges(t0: float, t1: float, m: int) -> list[float]:
    """The ``m + 1`` edges ``t0 + (j / m) (t1 - t0)``, ``j < m``, and ``t1`` of the equal sub-intervals of a
    grid step from ``t0`` to ``t1`` (the intervals a sampler with ``noise_substeps = m`` draws noise on)."""
    return [t0 + (j / m) * (t1 - t0) for j in range(m)] + [t1]


@dataclass
class SamplerContext:
    """What a sampler's ``init`` and ``step`` see.

    Attributes:
        denoiser: ``D(x, t)``, the data prediction (every call is one model evaluation).
        schedule: the :class:`~sdekit.diffusion.Schedule`.
        times: the grid, a list of Python floats, strictly decreasing.
        noise: ``noise(k, t0, t1)`` -> the Brownian increment ``W(t1) - W(t0)`` over grid step ``k``
            (shape of ``x``, variance ``|t1 - t0|``); ``None`` for deterministic samplers.
    """

    denoiser: Callable[[torch.Tensor, float], torch.Tensor]
    schedule: Schedule
    times: list[float]
    noise: Callable[[int, float, float], torch.Tensor] | None = None

    def increment(self, k: int, t0: float, t1: float) -> torch.Tensor:
        """The Brownian increment ``W(t1) - W(t0)`` for step ``k``, ``noise(k, t0, t1)``."""
        if self.noise is None:
            raise RuntimeError("this SamplerContext has no noise source (noise=None): only a sampler that declares "
                               "stochastic=True gets one")
        return self.noise(k, t0, t1)

    def normal(self, k: int, t0: float, t1: float) -> torch.Tensor:
        """A standard normal draw for step ``k``: the Brownian increment divided by ``sqrt|t1 - t0|``."""
        return self.increment(k, t0, t1) / math.sqrt(abs(t1 - t0))


@dataclass
class SampleInfo:
    """What :func:`~sdekit.diffusion.sample` reports with ``return_info=True``.

    Attributes:
        nfe: the number of model calls made (counted, not estimated).
        timesteps: the grid used, float64 ``(steps + 1,)``.
        solver: the sampler object.
        trajectory: ``(steps + 1, *x_T.shape)`` states at the grid times when ``return_trajectory=True``.
        adjoint_stats: with ``adjoint=AdjointDEIS(...)``, the
            :class:`~sdekit.diffusion.AdjointStats` of the gradient's backward pass (filled in when
            ``backward()`` runs); ``None`` otherwise.
        denoised: ``(steps + 1, *x_T.shape)`` denoising trajectory ``D(x_{t_k}, t_k)`` at the grid states when
            ``return_denoised=True`` (the denoiser's estimate of the final sample at each step).
    """

    nfe: int
    timesteps: torch.Tensor
    solver: Any
    trajectory: torch.Tensor | None = field(default=None, repr=False)
    adjoint_stats: Any = None
    denoised: torch.Tensor | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SchedulePoint:
    """Schedule coefficients at one time, as Python floats (float64)."""

    t: float
    alpha: float
    sigma: float
    log_snr: float


def schedule_point(schedule: Schedule, t: float) -> SchedulePoint:
    """``alpha``, ``sigma`` and ``lambda`` at ``t`` as floats (``lambda = +-inf`` where ``sigma`` or
    ``alpha`` vanish)."""
    a = float(schedule.alpha(t))
    s = float(schedule.sigma(t))
    if s == 0.0:
        lam = math.inf
    elif a == 0.0:
        lam = -math.inf
    else:
        lam = float(schedule.log_snr(t))
    return SchedulePoint(float(t), a, s, lam)


class Sampler:
    """Base class of samplers (see the module docstring for the contract)."""

    name: str = ""
    order: float = 1.0
    nfe_per_step: int | None = 1
    stochastic: bool = False
    noise_substeps: int = 1

    def init(self, ctx: SamplerContext, x: torch.Tensor) -> Any:
        """Initial sampler state (``()`` for one-step methods)."""
        return ()

    def step(self, ctx: SamplerContext, k: int, t0: float, t1: float, x: torch.Tensor,
             state: Any) -> tuple[torch.Tensor, Any]:
        """One step from ``t0`` to ``t1 < t0``; returns ``(x1, state)``."""
        raise NotImplementedError

    #: whether :meth:`invert` can rebuild a step's input from its output (AdjointDEIS then rebuilds the
    #: path backwards instead of storing it)
    invertible: bool = False

    @property
    def reverse_sde_tau2(self) -> float | None:
        r"""``tau^2`` of the reverse-time equation the sampler discretises,
        ``dx = [f x - (1 + tau^2)/2 g^2 grad log p_t] dt + tau g dW`` (0: the probability-flow ODE), or
        ``None`` when it is not of that family. The continuous adjoint
        (``AdjointDEIS(discretisation="continuous")``) needs it; the default transposed adjoint does not.
        Default: 0 for deterministic samplers, ``None`` for stochastic ones."""
        return None if self.stochastic else 0.0

    def invert(self, ctx: SamplerContext, k: int, t0: float, t1: float, x1: torch.Tensor, state1: Any,
               d1: torch.Tensor | None, *, tol: float, max_iter: int) -> tuple[torch.Tensor, Any] | None:
        """The input ``(x0, state0)`` of step ``k`` from its output ``(x1, state1)``, to ``tol`` in max norm,
        or ``None`` when that is not reached within ``max_iter`` model calls. ``d1`` is ``D(x1, t1)``
        when the caller has it (a starting guess). Only for samplers that declare ``invertible``."""
        raise NotImplementedError(f"{type(self).__name__} does not declare an inverse step")

    def nfe(self, steps: int) -> int | None:
        """Model calls for a grid of ``steps`` steps (``None`` if not known in advance)."""
        return None if self.nfe_per_step is None else steps * self.nfe_per_step

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
