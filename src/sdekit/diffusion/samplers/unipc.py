r"""UniPC, the unified predictor–corrector (Zhao et al. 2023, "UniPC: A unified predictor-corrector
framework for fast sampling of diffusion models", NeurIPS), data-prediction form."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ._multistep import (
    HistoryEntry,
    check_bool,
    check_choice,
    check_order,
    finite_prefix,
    phi,
    push,
    step_order,
    step_points,
)
from .base import Sampler, SamplerContext

__all__ = ["UniPC"]


class UniPC(Sampler):
    r"""UniPC-p with the B(h) variants ``bh1`` (``B(h) = h``) and ``bh2`` (``B(h) = e^h - 1``).

    In data prediction, with ``h = lambda_t - lambda_s``, the last outputs ``D_0`` (at ``lambda_s``),
    ``D_{-i}`` (at ``lambda_{-i}``), ratios ``r_i = (lambda_{-i} - lambda_s) / h`` and differences
    ``Delta_i = (D_{-i} - D_0) / r_i`` (Zhao et al. 2023, Algorithm 2 / eq. 8, with ``hh = -h``):

    .. math:: \tilde x_t = \frac{\sigma_t}{\sigma_s} x_s + \alpha_t (1 - e^{-h}) D_0,\qquad
              x_t = \tilde x_t - \alpha_t B(hh) \sum_{i=1}^{p-1} a_i \Delta_i

    **UniP** (predictor, order ``p``): ``a`` solves ``R_{p-1} a = b_{p-1}``, ``R_{kl} = r_l^k``,
    ``b_k = hh\,\varphi_{k+2}(hh)\,(k+1)! / B(hh)`` (the order conditions; ``a = 1/2`` for ``p = 2``, as
    the official code). **UniC** (corrector, order ``p + 1``): after the model call at the predicted
    ``x_t`` (the one the next step needs anyway, so no extra evaluation), ``x_t`` is recomputed with one
    more difference ``Delta_t = D(x_t, t) - D_0`` (``r = 1``) and weights from the full ``p x p`` system
    (``1/2`` for ``p = 1``); the model output at the uncorrected point is reused for the corrected one.
    The state returned at the last grid time is the predictor's (no model call there), as the paper.

    ``phi_k`` are evaluated without cancellation for small ``h``. Orders rise over the first steps; with
    ``lower_order_final`` (default) they fall on the last ones: the predictor order is at most the
    number of steps left, on every grid (the official code's ``min(order, steps + 1 - step)``). A step
    with ``h = inf`` is the exact first-order step, without corrector.

    Arguments:
        predictor_order: ``p`` in 1..3 (default 2, the official default).
        variant: ``"bh2"`` (default) or ``"bh1"``.
        corrector: apply UniC (default True).
        lower_order_final: as :class:`~sdekit.diffusion.samplers.dpm_solver.DPMSolverPP` (default True).

    Declares ``order = p + 1`` with the corrector (``p`` without), one model call per step.
    """

    name = "unipc"
    nfe_per_step = 1

    def __init__(self, predictor_order: int = 2, *, variant: str = "bh2", corrector: bool = True,
                 lower_order_final: bool = True) -> None:
        self.predictor_order = check_order("predictor_order", predictor_order, 1, 3)
        self.variant = check_choice("variant", variant, ("bh1", "bh2"))
        self.corrector = check_bool("corrector", corrector)
        self.lower_order_final = check_bool("lower_order_final", lower_order_final)
        self.order = float(self.predictor_order + (1 if self.corrector else 0))

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
        finite = math.isfinite(h)
        avail = 1 + finite_prefix(hist) if finite else 1
        p = step_order(self.predictor_order, k, ctx, self.lower_order_final, avail)
        new_hist = push(hist, HistoryEntry(t0, p0.log_snr, d0), self.predictor_order)
        lin = p1.sigma / p0.sigma if p0.sigma > 0 else 0.0
        x_base = lin * x + (-p1.alpha * math.expm1(-h)) * d0
        if not finite:
            return x_base, (new_hist, None)
        hh = -h
        bh = hh if self.variant == "bh1" else math.expm1(hh)
        rks = [(e.log_snr - p0.log_snr) / h for e in hist[: p - 1]] + [1.0]
        diffs = [(e.value - d0) / r for e, r in zip(hist[: p - 1], rks)]
        R = np.array([[r**i for r in rks] for i in range(p)])
        b = np.array([hh * phi(i + 2, hh) * math.factorial(i + 1) / bh for i in range(p)])
        scale = p1.alpha * bh
        x1 = x_base
        if p >= 2:
            rho_p = [0.5] if p == 2 else np.linalg.solve(R[:-1, :-1], b[:-1]).tolist()
            for a, dd in zip(rho_p, diffs):
                x1 = x1 - (scale * a) * dd
        pending = None
        if self.corrector:
            rho_c = [0.5] if p == 1 else np.linalg.solve(R, b).tolist()
            base = x_base
            for a, dd in zip(rho_c[:-1], diffs):
                base = base - (scale * a) * dd
            # Delta_t = D_t - D_0:  x_t = base - scale rho_c[-1] (D_t - D_0)
            last = scale * rho_c[-1]
            pending = (base + last * d0, -last)
        return x1, (new_hist, pending)

    def __repr__(self) -> str:
        return (f"UniPC(predictor_order={self.predictor_order}, variant={self.variant!r}, "
                f"corrector={self.corrector}, lower_order_final={self.lower_order_final})")
