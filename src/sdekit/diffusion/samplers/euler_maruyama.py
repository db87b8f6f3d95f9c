r"""Euler-Maruyama on the reverse-time SDE (Song et al. 2021, "Score-based generative modeling through
SDEs", eq. 6 and the ``EulerMaruyamaPredictor`` of its code)."""

from __future__ import annotations

from typing import Any

import torch

from .base import Sampler, SamplerContext, schedule_point


class EulerMaruyama(Sampler):
    r"""Euler-Maruyama on the reverse SDE ``dx = [f x - g^2 score] dt + g dW`` from ``t_0`` down to ``t_1``:

    .. math:: x_1 = x_0 + \big(f(t_0) x_0 - g(t_0)^2 s\big)(t_1 - t_0) + g(t_0)\,\Delta W,\qquad
              s = \frac{\alpha_0 D(x_0, t_0) - x_0}{\sigma_0^2},

    with ``Delta W = W(t_1) - W(t_0)`` from the Brownian source (the convention of :func:`sdekit.sdeint`
    on decreasing times, so this equals ``sdeint(ReverseSDE(D, schedule), ..., method="euler")`` on the
    same path). Weak order 1, one model call per step. The last step adds noise too: pass
    ``denoise_final=True`` to :func:`~sdekit.diffusion.sample` for the usual final denoising.

    Where ``alpha(t_0) = 0`` (the start of :class:`~sdekit.diffusion.LinearFlow` and of
    :class:`~sdekit.diffusion.CosineVP` with ``t_max=1``) the reverse SDE is singular: ``f`` and ``g^2``
    are infinite, so no Euler step exists. There the state carries no information about the data,
    and the step is the exact reverse transition (the DDPM posterior in the limit ``alpha_0 -> 0``):
    ``x_1 = alpha_1 D(x_0, t_0) + sigma_1 Delta W / sqrt|t_1 - t_0|`` (the same Brownian increment,
    normalised).
    """

    name = "euler-maruyama"
    order = 1.0
    nfe_per_step = 1
    stochastic = True

    @property
    def reverse_sde_tau2(self) -> float:
        """1: the reverse diffusion SDE."""
        return 1.0

    def step(self, ctx: SamplerContext, k: int, t0: float, t1: float, x: torch.Tensor,
             state: Any) -> tuple[torch.Tensor, Any]:
        s = ctx.schedule
        p0 = schedule_point(s, t0)
        d = ctx.denoiser(x, t0)
        if p0.alpha == 0.0:
            p1 = schedule_point(s, t1)
            return p1.alpha * d + p1.sigma * ctx.normal(k, t0, t1), state
        score = (p0.alpha * d - x) / p0.sigma**2
        f0, g20 = float(s.f(t0)), float(s.g2(t0))
        drift = f0 * x - g20 * score
        return x + drift * (t1 - t0) + (g20**0.5) * ctx.increment(k, t0, t1), state
