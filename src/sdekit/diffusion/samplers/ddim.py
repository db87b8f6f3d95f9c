r"""DDIM (Song, Meng & Ermon 2021, "Denoising diffusion implicit models", eq. 12), for any schedule."""

from __future__ import annotations

import math
from typing import Any

import torch

from .._utils import check_real
from .base import Sampler, SamplerContext, schedule_point


class DDIM(Sampler):
    r"""DDIM, written with the data prediction ``D`` and the log-SNR step ``h = lambda_1 - lambda_0``:

    .. math:: x_1 = \alpha_1 D + \sqrt{\sigma_1^2 - \sigma_\eta^2}\,\hat\epsilon + \sigma_\eta z,\qquad
              \hat\epsilon = \frac{x_0 - \alpha_0 D}{\sigma_0},\qquad
              \sigma_\eta = \eta\,\sigma_1\sqrt{1 - e^{-2h}}.

    ``eta = 0`` is the deterministic sampler, a first-order exponential integrator of the
    probability-flow ODE, ``x_1 = (sigma_1/sigma_0) x_0 - alpha_1 (e^{-h} - 1) D`` (the first-order
    DPM-Solver++, Lu et al. 2022, "DPM-Solver++", eq. 8). ``sigma_eta`` is the posterior standard
    deviation of ``q(x_1 | x_0, D)`` times ``eta`` (DDIM eq. 16 for any ``alpha``, ``sigma``); ``eta = 1``
    is ancestral DDPM sampling. ``z = dW / sqrt|t_1 - t_0|`` comes from the Brownian source.

    Arguments:
        eta: stochasticity, ``eta >= 0`` (default 0).

    Order 1 (weak order 1 for ``eta > 0``), one model call per step.
    """

    name = "ddim"
    order = 1.0
    nfe_per_step = 1

    def __init__(self, eta: float = 0.0) -> None:
        self.eta = check_real("eta", eta, nonnegative=True)
        self.stochastic = self.eta > 0

    def coefficients(self, p0, p1) -> tuple[float, float, float]:
        """``(c_x, c_d, c_z)`` of the step ``x_1 = c_x x_0 + c_d D(x_0, t_0) + c_z z`` between the schedule
        points ``p0`` and ``p1`` (``c_z = 0`` for ``eta = 0``); AdjointDEIS-1 transposes this step."""
        h = p1.log_snr - p0.log_snr
        if not self.stochastic:
            return p1.sigma / p0.sigma, -p1.alpha * math.expm1(-h), 0.0
        sigma_eta = self.eta * p1.sigma * math.sqrt(-math.expm1(-2.0 * h))
        keep = math.sqrt(max(p1.sigma**2 - sigma_eta**2, 0.0))
        return keep / p0.sigma, p1.alpha - keep * p0.alpha / p0.sigma, sigma_eta

    @property
    def reverse_sde_tau2(self) -> float:
        """``eta^2``: DDIM with ``eta`` discretises the reverse-time equation with ``tau = eta``."""
        return self.eta**2

    @property
    def invertible(self) -> bool:
        """Deterministic DDIM steps can be inverted (:meth:`invert`)."""
        return not self.stochastic

    def invert(self, ctx, k, t0, t1, x1, state1, d1, *, tol, max_iter):
        r"""The input of a deterministic step from its output: the root of
        ``F(x) = c_x x + c_d D(x, t_0) - x_1``, started from a DDIM step backwards from ``x_1`` (with
        ``d1 = D(x_1, t_1)``, or ``x_1`` itself), by the iteration ``x <- x - w F(x)`` with the per-sample
        Barzilai–Borwein step ``w = <s, s> / <s, y>`` (``s``, ``y`` the last changes of ``x`` and ``F``; the
        first ``w = 1 / c_x`` is the plain fixed-point step ``x <- (x_1 - c_d D(x)) / c_x``). The Jacobian
        ``c_x I + c_d D_x`` is symmetric positive definite for an exact denoiser (``D_x`` is a posterior
        covariance times ``alpha / sigma^2``), so the error in ``x`` is at most ``|F| / c_x``: the iteration
        stops when ``max |F| / c_x <= tol``; when the residual stagnates (five iterations without a 10% gain:
        the rounding floor of the dtype, or no contraction) or after ``max_iter`` model calls it returns the
        best iterate if its residual is within ``100 tol``, and ``None`` otherwise or when ``F`` turns
        non-finite."""
        p0, p1 = schedule_point(ctx.schedule, t0), schedule_point(ctx.schedule, t1)
        c_x, c_d, _ = self.coefficients(p0, p1)
        if self.stochastic or not (c_x > 0 and math.isfinite(c_x) and math.isfinite(c_d)):
            return None
        x = x1
        if d1 is not None:
            b_x, b_d, _ = self.coefficients(p1, p0)
            if math.isfinite(b_x) and math.isfinite(b_d):
                x = b_x * x1 + b_d * d1
        dims = tuple(range(1, x1.dim()))
        w = 1.0 / c_x
        x_prev: torch.Tensor | None = None
        f_prev: torch.Tensor | None = None
        best, best_x, residuals = math.inf, x, []
        for i in range(max_iter):
            f = c_x * x + c_d * ctx.denoiser(x, t0) - x1
            residual = float(f.abs().max()) / c_x
            if not math.isfinite(residual):
                return None
            if residual <= tol:
                return x, state1
            if residual < best:
                best, best_x = residual, x
            residuals.append(best)
            # stagnation (the dtype's rounding floor, or no contraction): five iterations without a 10% gain
            if i >= 8 and residuals[-1] > 0.9 * residuals[-6]:
                break
            if x_prev is not None and f_prev is not None:
                s, y = x - x_prev, f - f_prev
                ss = (s * s).sum(dims, keepdim=True) if dims else s * s
                sy = (s * y).sum(dims, keepdim=True) if dims else s * y
                # BB step where the curvature along s is positive; the plain step elsewhere
                w = (ss / sy).where(sy > 0, 1.0 / c_x)
            x_prev, f_prev = x, f
            x = x - w * f
        # the best iterate if it is within 100 tol (the caller's check of the rebuilt x_T decides)
        return (best_x, state1) if best <= 100.0 * tol else None

    def step(self, ctx: SamplerContext, k: int, t0: float, t1: float, x: torch.Tensor,
             state: Any) -> tuple[torch.Tensor, Any]:
        p0, p1 = schedule_point(ctx.schedule, t0), schedule_point(ctx.schedule, t1)
        d = ctx.denoiser(x, t0)
        c_x, c_d, c_z = self.coefficients(p0, p1)
        x1 = c_x * x + c_d * d
        return (x1 + c_z * ctx.normal(k, t0, t1) if self.stochastic else x1), state

    def __repr__(self) -> str:
        return f"DDIM(eta={self.eta})"
