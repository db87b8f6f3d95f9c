r"""Twisted sequential Monte Carlo for inpainting (the Twisted Diffusion Sampler, Wu et al. 2023): the particle
weights, the effective sample size, systematic resampling, and a sampler wrapper that proposes from a stochastic
sampler's own step with a guided data prediction and weights by the ratio of the two Gaussian kernels.

A stochastic sampler's step whose model call precedes its noise is affine in the noise,
``x_{k+1} = m_k(x_k, D) + c_k \odot \Delta W_k`` with ``\Delta W_k \sim N(0, |t_{k+1} - t_k| I)``: its kernel is
the Gaussian ``N(m_k, c_k^2 |t_{k+1} - t_k|)`` with independent coordinates. ``m_k`` (with the model's ``D`` and
with a guided one) and ``c_k`` come from the sampler's own ``step``, replayed with recorded data predictions and
zero or unit noise (as Cycle-SDE does in :func:`sdekit.editing.invert`), so no sampler formula is repeated here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ..diffusion.samplers.base import Sampler, SamplerContext, schedule_point

__all__ = ["effective_sample_size", "systematic_resample", "TwistedInpainting"]


def effective_sample_size(log_weights: torch.Tensor) -> torch.Tensor:
    r"""Kish's effective sample size ``(\sum_i w_i)^2 / \sum_i w_i^2`` of unnormalised log weights
    ``(..., particles)``, over the last dimension (``particles`` for equal weights, 1 for one nonzero weight).
    Computed from the normalised weights, so any common offset of the log weights cancels."""
    w = torch.softmax(log_weights, dim=-1)
    return 1.0 / (w * w).sum(-1)


def systematic_resample(weights: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Systematic resampling (Kitagawa 1996; Douc, Cappé & Moulines 2005, "Comparison of resampling schemes
    for particle filtering"): for normalised weights ``(..., n)`` one uniform ``u ~ U[0, 1)`` per row and the
    ``n`` points ``(j + u) / n``, ``j < n``; particle ``i`` is taken once for every point in
    ``[W_{i-1}, W_i)`` (``W`` the cumulative weights). Unbiased: particle ``i`` is taken ``n w_i`` times in
    expectation, and ``floor(n w_i)`` or ``ceil(n w_i)`` times always.

    Returns the ``(..., n)`` int64 indices (non-decreasing along the last dimension)."""
    n = weights.shape[-1]
    device = generator.device if generator is not None else weights.device
    u = torch.rand(weights.shape[:-1] + (1,), generator=generator, dtype=weights.dtype, device=device)
    points = (torch.arange(n, dtype=weights.dtype, device=weights.device) + u.to(weights.device)) / n
    cumulative = torch.cumsum(weights, dim=-1)
    cumulative = cumulative / cumulative[..., -1:]  # the last edge is exactly 1
    return torch.searchsorted(cumulative.contiguous(), points.contiguous(), right=True).clamp_(max=n - 1)


def _take(obj: Any, index: torch.Tensor, rows: int) -> Any:
    """``obj`` with every tensor whose first dimension is ``rows`` indexed by ``index`` along it (tuples, lists
    and dataclasses searched recursively): a sampler state follows its resampled particles."""
    if isinstance(obj, torch.Tensor):
        return obj[index] if obj.dim() > 0 and obj.shape[0] == rows else obj
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # NamedTuple
        return type(obj)(*(_take(v, index, rows) for v in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(_take(v, index, rows) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: _take(getattr(obj, f.name), index, rows)
                                           for f in dataclasses.fields(obj) if f.init})
    return obj


class _Outputs:
    """Serves recorded denoiser outputs in order (no model call): a sampler step replayed with other outputs."""

    def __init__(self, outputs: list[torch.Tensor]) -> None:
        self.it = iter(outputs)

    def __call__(self, x: torch.Tensor, t: float) -> torch.Tensor:
        try:
            return next(self.it)
        except StopIteration:
            raise ValueError("the solver's step made more model calls than when it was recorded; twisted SMC needs "
                             "steps whose model calls do not depend on the denoiser's values (one-step or "
                             "multistep samplers: DDIM(eta=1.0), 'sde-dpm++2m', ...)") from None


class TwistedInpainting(Sampler):
    r"""The Twisted Diffusion Sampler for inpainting (Wu, Trippe, Naesseth, Blei & Cunningham 2023, "Practical
    and asymptotically exact conditional sampling in diffusion models", NeurIPS 2023, arXiv 2306.17775,
    algorithm 1 with the inpainting twist of section 3.3) around a stochastic ``inner`` sampler whose step
    makes one model call before its noise.

    The state is ``(batch * particles, *event)`` (row ``b`` owns particles ``b * particles ..``). With the
    twisting functions ``\tilde p_k(y | x) = N\big(y;\, D_m(x, t_k),\, r_k^2\big)`` over the known coordinates
    (``D_m`` the denoiser there, ``r_k = \sigma_k / \alpha_k``; ``\tilde p_n(y | x) = N(y; x_m / \alpha_n,
    r_n^2)`` at the last time), step ``k`` (``t_k \to t_{k+1}``):

    1. evaluates ``D(x_k, t_k)`` and ``g_k = \nabla_{x_k} \log \tilde p_k(y | x_k)`` (one model call and its
       backward pass), completes the previous step's weight
       ``w \leftarrow w\, \tilde p_k(y | x_k)\, p(x_k | x_{k-1}) / \big(\tilde p_{k-1}(y | x_{k-1})\,
       \tilde q(x_k | x_{k-1})\big)`` (``w = \tilde p_0(y | x_0)`` at the first step) and resamples a row
       (systematic) when its ESS falls below ``ess_threshold * particles``;
    2. proposes from the twisted kernel: the inner step with the guided data prediction
       ``\tilde D = D + (\sigma_k^2 / \alpha_k)\, g_k`` (Tweedie's formula for ``E[x_0 | x_k, y]``), which
       shares the model kernel's covariance ``c_k^2 |t_{k+1} - t_k|``, so ``p / \tilde q`` is a ratio of two
       Gaussians with the means of the inner step with ``D`` and with ``\tilde D``.

    The sampler's history (multistep samplers) keeps the unguided ``D``, so ``p`` is the model's own chain.
    The weighted particles target ``p_\theta(x_n)\, \tilde p_n(y | x_n)``: the model's law at ``t_n`` given
    the known coordinates up to the noise ``r_n`` (``sigma / alpha`` at the last time), exactly as the number
    of particles grows, whatever the step count (Wu et al., theorem 1). After the run ``log_weights`` holds
    the final ``(batch, particles)`` log weights."""

    def __init__(self, inner: Sampler, mask: torch.Tensor, y: torch.Tensor, *, batch: int, particles: int,
                 ess_threshold: float, generator: torch.Generator | None = None) -> None:
        self.inner = inner
        self.mask = mask.bool()
        self.y = y  # (batch * particles, *event), the known data (zeros on the unknown region)
        self.batch, self.particles, self.ess_threshold = batch, particles, ess_threshold
        self.generator = generator
        self.name = f"tds[{inner.name}]"
        self.order = inner.order
        self.stochastic = True
        self.noise_substeps = 1
        self.nfe_per_step = inner.nfe_per_step
        self.log_weights: torch.Tensor | None = None
        self.resampled = 0
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None  # (log p/q of the last move, log twist)

    def init(self, ctx: SamplerContext, x: torch.Tensor) -> Any:
        self.log_weights = torch.zeros(self.batch, self.particles, dtype=x.dtype, device=x.device)
        self.resampled, self._pending = 0, None
        return self.inner.init(ctx, x)

    def _per_particle(self, v: torch.Tensor) -> torch.Tensor:
        return v.reshape(self.batch, self.particles, -1).sum(-1)

    def _log_twist(self, mean: torch.Tensor, r: float) -> torch.Tensor:
        known = self.mask.expand_as(mean)
        z = torch.where(known, (self.y - mean) / r, torch.zeros_like(mean))
        return self._per_particle(-0.5 * z * z)  # the constant -log r cancels between particles

    def _reweight(self, logw: torch.Tensor, twist: torch.Tensor) -> torch.Tensor:
        if self._pending is None:
            return logw + twist
        move, twist_prev = self._pending
        return logw + twist - twist_prev + move

    def _resample(self, logw: torch.Tensor, tensors: list[Any]) -> tuple[torch.Tensor, list[Any]]:
        low = effective_sample_size(logw) < self.ess_threshold * self.particles
        if not bool(low.any()):
            return logw, tensors
        rows = self.batch * self.particles
        idx = systematic_resample(torch.softmax(logw, dim=-1), self.generator).to(logw.device)
        base = torch.arange(self.batch, device=logw.device)[:, None] * self.particles
        keep = torch.arange(self.particles, device=logw.device)[None, :]
        flat = (torch.where(low[:, None], idx, keep) + base).reshape(-1)
        self.resampled += int(low.sum())
        return torch.where(low[:, None], torch.zeros_like(logw), logw), [_take(v, flat, rows) for v in tensors]

    def step(self, ctx: SamplerContext, k: int, t0: float, t1: float, x: torch.Tensor,
             state: Any) -> tuple[torch.Tensor, Any]:
        p0 = schedule_point(ctx.schedule, t0)
        if p0.alpha > 0:
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                d = ctx.denoiser(xg, t0)
                twist = self._log_twist(d, p0.sigma / p0.alpha)
                (grad,) = torch.autograd.grad(twist.sum(), xg)
            d, twist, shift = d.detach(), twist.detach(), p0.sigma**2 / p0.alpha
        else:  # alpha = 0 (pure noise): the twist is flat, nothing to guide
            d = ctx.denoiser(x, t0)
            twist = torch.zeros(self.batch, self.particles, dtype=x.dtype, device=x.device)
            grad, shift = torch.zeros_like(d), 0.0
        logw = self.log_weights if self.log_weights is not None else torch.zeros_like(twist)
        logw = self._reweight(logw, twist)
        logw, (x, state, d, grad, flat_twist) = self._resample(logw, [x, state, d, grad, twist.reshape(-1)])
        twist = flat_twist.reshape(self.batch, self.particles)
        guided = d + shift * grad

        def constant(value: torch.Tensor | float):
            return lambda k_, a, b: value if isinstance(value, torch.Tensor) else torch.full_like(x, value)

        mean, state1 = self.inner.step(dataclasses.replace(ctx, denoiser=_Outputs([d]), noise=constant(0.0)),
                                       k, t0, t1, x, state)
        mean_g, _ = self.inner.step(dataclasses.replace(ctx, denoiser=_Outputs([guided]), noise=constant(0.0)),
                                    k, t0, t1, x, state)
        unit, _ = self.inner.step(dataclasses.replace(ctx, denoiser=_Outputs([guided]), noise=constant(1.0)),
                                  k, t0, t1, x, state)
        scale = unit - mean_g
        if bool((scale == 0).any()):
            raise ValueError(f"solver {self.inner!r} puts no noise on step {k} ({t0} -> {t1}); twisted SMC needs a "
                             "reverse kernel with positive variance (end the grid where sigma > 0)")
        x1 = mean_g + scale * ctx.increment(k, t0, t1)
        var = scale * scale * abs(t1 - t0)
        move = self._per_particle(((x1 - mean_g) ** 2 - (x1 - mean) ** 2) / (2 * var))
        self.log_weights = logw - logw.max(dim=-1, keepdim=True).values
        self._pending = (move, twist)
        if k == len(ctx.times) - 2:  # the last step: the final twist N(y; x_m / alpha_n, r_n^2), no model call
            p1 = schedule_point(ctx.schedule, t1)
            final = self._log_twist(x1 / p1.alpha, p1.sigma / p1.alpha)
            logw = self._reweight(self.log_weights, final)
            self.log_weights = logw - logw.max(dim=-1, keepdim=True).values
            self._pending = None
        return x1, state1

    def __repr__(self) -> str:
        return (f"TwistedInpainting({self.inner!r}, particles={self.particles}, "
                f"ess_threshold={self.ess_threshold})")
