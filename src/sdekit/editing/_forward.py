"""The exact forward transitions of a schedule, and a sampler wrapper that overwrites a region after every
step (inpainting by replacement, SDE-Drag's reset outside the edited region)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch

from ..diffusion.samplers.base import Sampler, SamplerContext, schedule_point
from ..diffusion.schedules import Schedule

__all__ = ["diffuse", "transition", "Replacing"]


def _normal(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=device).to(x.device)


def diffuse(schedule: Schedule, x0: torch.Tensor, t: float, generator: torch.Generator | None = None
            ) -> torch.Tensor:
    r"""A draw of the forward marginal ``x_t = alpha(t) x_0 + sigma(t) z``, ``z ~ N(0, I)``, of the shape of
    ``x0`` (``(batch, *event)``)."""
    p = schedule_point(schedule, t)
    return p.alpha * x0 + p.sigma * _normal(x0, generator)


def transition(schedule: Schedule, x_s: torch.Tensor, s: float, t: float,
               generator: torch.Generator | None = None) -> torch.Tensor:
    r"""A draw of the forward transition from ``s`` to ``t > s``:
    ``x_t = (alpha_t / alpha_s) x_s + sqrt(sigma_t^2 - (alpha_t / alpha_s)^2 sigma_s^2) z``."""
    ps, pt = schedule_point(schedule, s), schedule_point(schedule, t)
    ratio = pt.alpha / ps.alpha
    std = math.sqrt(max(pt.sigma**2 - (ratio * ps.sigma) ** 2, 0.0))
    return ratio * x_s + std * _normal(x_s, generator)


class Replacing(Sampler):
    """Runs ``inner`` and, after every step to ``t1``, sets the region ``mask == 1`` to ``known(k + 1, t1)``.

    With ``rounds > 1`` (resampling, Lugmayr et al. 2022, RePaint) a step is repeated ``rounds`` times: after
    each but the last, the replaced state is carried back to ``t0`` by the forward transition and the step
    taken again from the start state's sampler state; repeats draw their sampler noise from ``generator``
    (the last round uses the Brownian source of :func:`~sdekit.diffusion.sample`). Model calls are counted by
    the driver as usual (``rounds`` times the inner sampler's)."""

    def __init__(self, inner: Sampler, mask: torch.Tensor, known: Callable[[int, float], torch.Tensor], *,
                 rounds: int = 1, generator: torch.Generator | None = None) -> None:
        self.inner, self.mask, self.known = inner, mask.bool(), known
        self.rounds, self.generator = rounds, generator
        self.name = f"replacing[{inner.name}]"
        self.order = inner.order
        self.stochastic = inner.stochastic
        self.noise_substeps = inner.noise_substeps
        self.nfe_per_step = None if inner.nfe_per_step is None else rounds * inner.nfe_per_step

    def init(self, ctx: SamplerContext, x: torch.Tensor) -> Any:
        return self.inner.init(ctx, x)

    def _fresh(self, ctx: SamplerContext, x: torch.Tensor) -> SamplerContext:
        def noise(k: int, t0: float, t1: float) -> torch.Tensor:
            return _normal(x, self.generator) * math.sqrt(abs(t1 - t0))

        return dataclasses.replace(ctx, noise=noise if self.inner.stochastic else None)

    def step(self, ctx: SamplerContext, k: int, t0: float, t1: float, x: torch.Tensor,
             state: Any) -> tuple[torch.Tensor, Any]:
        for r in range(self.rounds):
            last = r == self.rounds - 1
            x1, state1 = self.inner.step(ctx if last else self._fresh(ctx, x), k, t0, t1, x, state)
            x1 = torch.where(self.mask, self.known(k + 1, t1), x1)
            if not last:
                x = transition(ctx.schedule, x1, t1, t0, self.generator)
        return x1, state1

    def __repr__(self) -> str:
        return f"Replacing({self.inner!r}, rounds={self.rounds})"
