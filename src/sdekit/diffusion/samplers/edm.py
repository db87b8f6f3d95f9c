r"""The EDM sampler: Heun's method with optional "churn" (Karras et al. 2022, "Elucidating the design space
of diffusion-based generative models", NeurIPS, Algorithm 2)."""

from __future__ import annotations

import math
from typing import Any

import torch

from .._utils import check_real
from ..sde import ProbabilityFlowODE
from .base import Sampler, SamplerContext, schedule_point

__all__ = ["EDMHeun"]


class EDMHeun(Sampler):
    r"""Karras et al.'s stochastic sampler (Algorithm 2) for any schedule.

    In the scaled variables ``y = x / alpha`` and ``s = sigma / alpha`` the probability-flow ODE is
    ``dy/ds = (y - D) / s`` (Karras et al. eq. 4 with ``s(t) = alpha``). Step ``i`` from ``s_i`` to
    ``s_{i+1}``:

    1. churn: if ``S_tmin <= s_i <= S_tmax``, ``gamma = min(S_churn / N, sqrt 2 - 1)`` (``N`` = steps),
       ``s_hat = (1 + gamma) s_i`` and ``y_hat = y_i + sqrt(s_hat^2 - s_i^2) S_noise z``
       (``z = dW / sqrt|dt|`` from the Brownian source; the model is then called at the time ``t_hat``
       whose noise level is ``s_hat``); otherwise ``s_hat = s_i``;
    2. Euler: ``d = (y_hat - D(y_hat, s_hat)) / s_hat``, ``y' = y_hat + (s_{i+1} - s_hat) d``;
    3. Heun correction (all steps but the last): ``d' = (y' - D(y', s_{i+1})) / s_{i+1}``,
       ``y_{i+1} = y_hat + (s_{i+1} - s_hat)(d + d') / 2``.

    The last step is an Euler step (Algorithm 2 does Heun unless ``s_{i+1} = 0``; here the last step is
    always Euler), so a grid of ``N`` steps costs exactly ``2N - 1`` model calls (:meth:`nfe`).
    ``S_churn = 0`` (default) is the deterministic second-order Heun method (Algorithm 1). A step that
    starts at ``alpha = 0`` (``s = inf``, e.g. ``LinearFlow`` at ``t = 1``) is Heun's method in ``t`` on the
    probability-flow ODE in ``x`` (finite there), without churn.

    Arguments:
        S_churn: total churn (``>= 0``, default 0).
        S_tmin, S_tmax: the band of noise levels ``s`` where churn applies (default ``[0, inf]``).
        S_noise: scale of the added noise (default 1; EDM uses 1.003-1.007 for some models).

    Declares order 2 (deterministic) or 1 (weak, with churn), ``nfe_per_step = None`` and
    ``nfe(steps) = 2 steps - 1``.
    """

    name = "heun"
    nfe_per_step = None

    def __init__(self, S_churn: float = 0.0, S_tmin: float = 0.0, S_tmax: float = math.inf,
                 S_noise: float = 1.0) -> None:
        self.S_churn = check_real("S_churn", S_churn, nonnegative=True)
        self.S_tmin = check_real("S_tmin", S_tmin, nonnegative=True)
        if isinstance(S_tmax, (int, float)) and S_tmax == math.inf:
            self.S_tmax = math.inf
        else:
            self.S_tmax = check_real("S_tmax", S_tmax, nonnegative=True)
        if not self.S_tmin <= self.S_tmax:
            raise ValueError(f"S_tmin must be <= S_tmax; got S_tmin={self.S_tmin}, S_tmax={self.S_tmax}")
        self.S_noise = check_real("S_noise", S_noise, nonnegative=True)
        self.stochastic = self.S_churn > 0
        self.order = 1.0 if self.stochastic else 2.0

    def nfe(self, steps: int) -> int:
        return 2 * steps - 1

    def step(self, ctx: SamplerContext, k: int, t0: float, t1: float, x: torch.Tensor,
             state: Any) -> tuple[torch.Tensor, Any]:
        sch = ctx.schedule
        last = k == len(ctx.times) - 2
        p0, p1 = schedule_point(sch, t0), schedule_point(sch, t1)
        s0, s1 = math.exp(-p0.log_snr), math.exp(-p1.log_snr)
        if math.isinf(s0):
            drift = ProbabilityFlowODE(ctx.denoiser, sch)
            v0 = drift(t0, x)
            x1 = x + (t1 - t0) * v0
            if last:
                return x1, state
            return x + (0.5 * (t1 - t0)) * (v0 + drift(t1, x1)), state
        t_hat, a_hat, s_hat, sig_hat = t0, p0.alpha, s0, p0.sigma
        gamma = 0.0
        if self.stochastic and self.S_tmin <= s0 <= self.S_tmax:
            gamma = min(self.S_churn / (len(ctx.times) - 1), math.sqrt(2.0) - 1.0)
        y = x / p0.alpha
        if gamma > 0:
            s_hat = s0 * (1.0 + gamma)
            t_hat = float(sch.t_of_log_snr(torch.tensor(-math.log(s_hat), dtype=torch.float64)))
            hat = schedule_point(sch, t_hat)
            a_hat, sig_hat = hat.alpha, hat.sigma
            y = y + (math.sqrt(s_hat**2 - s0**2) * self.S_noise) * ctx.normal(k, t0, t1)
        d_hat = ctx.denoiser(a_hat * y, t_hat)
        eps = (a_hat * y - a_hat * d_hat) / sig_hat                # (y - D) / s
        y1 = y + (s1 - s_hat) * eps
        if last:
            return p1.alpha * y1, state
        d1 = ctx.denoiser(p1.alpha * y1, t1)
        eps1 = (y1 - d1) / s1
        return p1.alpha * (y + (0.5 * (s1 - s_hat)) * (eps + eps1)), state

    def __repr__(self) -> str:
        return (f"EDMHeun(S_churn={self.S_churn}, S_tmin={self.S_tmin}, S_tmax={self.S_tmax}, "
                f"S_noise={self.S_noise})")
