r"""SA-Solver, stochastic Adams methods (Xue et al. 2023, "SA-Solver: Stochastic Adams solver for fast
sampling of diffusion models", NeurIPS), data-prediction form."""

from __future__ import annotations

import math
import types
from collections.abc import Callable
from typing import Any

import torch

from .._utils import check_real
from ._multistep import (
    HistoryEntry,
    check_bool,
    check_order,
    exp_lagrange_weights,
    finite_prefix,
    push,
    step_order,
    step_points,
    steps_left,
)
from .base import Sampler, SamplerContext

__all__ = ["SASolver", "IntervalTau"]


def _vp_noise_level(t: float) -> float:
    """``sigma / alpha`` of the linear VP schedule (beta from 0.1 to 20, DDPM's) at ``t``."""
    return math.sqrt(math.expm1(0.1 * t + 0.5 * 19.9 * t * t))


class IntervalTau:
    r"""The default SA-Solver noise function: ``tau = eta`` inside a band of noise levels, 0 outside.

    The official code uses ``tau = eta`` for DDPM timesteps ``200 <= t <= 800`` (of 1000), i.e. for
    ``t`` in ``[0.2, 0.8]`` of the linear VP schedule. Written schedule-agnostically on the noise level
    ``s = sigma / alpha = e^{-lambda}`` that those times have, ``s`` in ``[0.720, 25.11]`` (by default),
    it gives the same band for that schedule and a comparable middle band (in log-SNR) for any other.

    Arguments:
        eta: the value inside the band (``>= 0``, default 1).
        s_min, s_max: the band of noise levels (default: the VP values above).

    Call: ``tau(s)`` for a noise level ``s`` (a float) returns a float.
    """

    def __init__(self, eta: float = 1.0, s_min: float | None = None, s_max: float | None = None) -> None:
        self.eta = check_real("eta", eta, nonnegative=True)
        self.s_min = _vp_noise_level(0.2) if s_min is None else check_real("s_min", s_min, nonnegative=True)
        self.s_max = _vp_noise_level(0.8) if s_max is None else check_real("s_max", s_max, positive=True)
        if not self.s_min <= self.s_max:
            raise ValueError(f"IntervalTau needs s_min <= s_max; got s_min={self.s_min}, s_max={self.s_max}")

    def __call__(self, s: float) -> float:
        return self.eta if self.s_min <= s <= self.s_max else 0.0

    def __repr__(self) -> str:
        return f"IntervalTau(eta={self.eta}, s_min={self.s_min:.4g}, s_max={self.s_max:.4g})"


class SASolver(Sampler):
    r"""SA-Solver: stochastic Adams–Bashforth predictor and Adams–Moulton corrector.

    It solves the family of reverse SDEs with the data marginals (Xue et al. 2023, eq. 6)

    .. math:: dx = \big[f x - \tfrac{1 + \tau^2}{2} g^2 \nabla\log p_t\big] dt + \tau g\, d\bar W,

    whose solution over a step ``lambda_s -> lambda_t = lambda_s + h`` with ``tau`` constant on the step
    is, in data prediction (``u = lambda - lambda_t``, ``c = 1 + tau^2``),

    .. math:: x_t = \frac{\sigma_t}{\sigma_s} e^{-\tau^2 h} x_s
              + \alpha_t c \int_{-h}^{0} e^{c u} D(x_u, u)\,du + \sigma_t\sqrt{1 - e^{-2\tau^2 h}}\,\xi.

    * **predictor** of order ``p``: ``D`` replaced by the Lagrange polynomial through the last ``p``
      predictions (nodes ``lambda_s, lambda_{-1}, ...``);
    * **corrector** of order ``c_o``: after the model call at the predicted ``x_t`` (which the next step
      needs anyway: one model call per step), ``x_t`` is recomputed from the same ``x_s`` and the SAME
      ``xi`` with the polynomial through ``lambda_t`` and the last ``c_o - 1`` nodes; the model output
      at the uncorrected point is reused for the corrected one. The last grid point is not corrected
      (no model call there), as the official code.

    The weights ``alpha_t c int_{-h}^0 e^{cu} l_j(u) du`` are computed exactly (closed-form moments
    ``int e^{c u} u^k du`` in variables centred on ``lambda_t`` and scaled by ``h``, not the official
    code's monomials in absolute ``lambda``, which lose digits). ``tau`` is taken at the noise level
    ``s = sigma/alpha`` of the step's start and held for the step (predictor and its corrector).
    Orders rise over the first steps (``p <= steps done + 1``, ``c_o <= steps done + 2``); with
    ``lower_order_final`` (default) they fall on the last ones, on every grid (``p <= steps left``,
    ``c_o <= steps left + 1``, as diffusers' ``SASolverScheduler``). ``xi = dW / sqrt|dt|``
    comes from the Brownian source.

    ``tau = 0`` is a deterministic multistep ODE solver of order ``p`` (no corrector) or
    ``min(c_o, p + 1)``; with ``tau > 0`` the method converges with weak order 1 (the paper's bound
    ``O(tau_max h + h^p)``).

    Arguments:
        predictor_order: ``p`` in 1..4 (default 3, the official default).
        corrector_order: ``c_o`` in 0..4 (default 4, the official default; 0: no corrector).
        tau: a float (constant) or a callable ``tau(s) -> float`` of the noise level ``s = sigma/alpha``;
            default :class:`IntervalTau` with ``eta``.
        eta: the band value of the default ``tau`` (default 1; ignored when ``tau`` is given).
        lower_order_final: as :class:`~sdekit.diffusion.samplers.dpm_solver.DPMSolverPP` (default True).

    Declares ``order`` as above (1 when stochastic), one model call per step.
    """

    name = "sa-solver"
    nfe_per_step = 1

    def __init__(self, predictor_order: int = 3, corrector_order: int = 4, *,
                 tau: float | Callable | None = None, eta: float = 1.0,
                 lower_order_final: bool = True) -> None:
        self.predictor_order = check_order("predictor_order", predictor_order, 1, 4)
        self.corrector_order = check_order("corrector_order", corrector_order, 0, 4)
        self.lower_order_final = check_bool("lower_order_final", lower_order_final)
        if tau is None:
            self.tau = IntervalTau(eta)
            constant = self.tau.eta == 0
        elif callable(tau):
            self.tau = tau
            constant = False
        else:
            self.tau = check_real("tau", tau, nonnegative=True)
            constant = self.tau == 0
        self.stochastic = not constant
        if self.stochastic:
            self.order = 1.0
        elif self.corrector_order == 0:
            self.order = float(self.predictor_order)
        else:
            self.order = float(min(self.corrector_order, self.predictor_order + 1))

    def _tau(self, log_snr: float) -> float:
        if not callable(self.tau):
            return self.tau
        value = self.tau(math.exp(-log_snr))
        return check_real("tau(s)", value, nonnegative=True)

    def init(self, ctx: SamplerContext, x: torch.Tensor) -> Any:
        return ((), None)

    def step(self, ctx: SamplerContext, k: int, t0: float, t1: float, x: torch.Tensor,
             state: Any) -> tuple[torch.Tensor, Any]:
        hist, pending = state
        p0, p1, h = step_points(ctx, t0, t1)
        d0 = ctx.denoiser(x, t0)
        if pending is not None:
            base, coef = pending
            x = base + coef * d0
        entry = HistoryEntry(t0, p0.log_snr, d0)
        new_hist = push(hist, entry, max(self.predictor_order, self.corrector_order - 1))
        tau = self._tau(p0.log_snr)
        tau2 = tau * tau
        c = 1.0 + tau2
        finite = math.isfinite(h)
        avail = 1 + finite_prefix(hist) if finite else 1
        p = step_order(self.predictor_order, k, ctx, self.lower_order_final, avail)
        co = min(self.corrector_order, avail + 1) if finite else 0
        cap = steps_left(k, ctx, self.lower_order_final)
        if cap is not None:
            co = min(co, cap + 1)
        decay = math.exp(-tau2 * h) if tau2 > 0 else 1.0
        lin = p1.sigma / p0.sigma * decay if p0.sigma > 0 and decay > 0 else 0.0
        x1 = lin * x
        if tau2 > 0 and p1.sigma > 0:
            x1 = x1 + (p1.sigma * math.sqrt(-math.expm1(-2.0 * tau2 * h))) * ctx.normal(k, t0, t1)
        base = x1
        nodes = (entry,) + hist
        if p == 1:
            x1 = x1 + (-p1.alpha * math.expm1(-c * h)) * d0
        else:
            w = exp_lagrange_weights([e.log_snr - p1.log_snr for e in nodes[:p]], h, c)
            for wj, e in zip(w, nodes[:p]):
                x1 = x1 + (p1.alpha * c * wj) * e.value
        pending = None
        if co >= 1:
            cnodes = [0.0] + [e.log_snr - p1.log_snr for e in nodes[: co - 1]]
            w = exp_lagrange_weights(cnodes, h, c)
            for wj, e in zip(w[1:], nodes[: co - 1]):
                base = base + (p1.alpha * c * wj) * e.value
            pending = (base, p1.alpha * c * w[0])
        return x1, (new_hist, pending)

    def __repr__(self) -> str:
        return (f"SASolver(predictor_order={self.predictor_order}, corrector_order={self.corrector_order}, "
                f"tau={_describe(self.tau)}, lower_order_final={self.lower_order_final})")


def _describe(tau) -> str:
    # Plain functions by name, never by address, so reprs (and test ids) are stable across processes.
    if isinstance(tau, types.FunctionType):
        return f"<function {tau.__qualname__}>"
    return repr(tau)
