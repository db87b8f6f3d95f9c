r"""iPNDM, the improved pseudo numerical method (Zhang & Chen 2023, "Fast sampling of diffusion models with
exponential integrator", ICLR, appendix; the "iPNDM" baseline of Liu et al. 2022's PNDM with lower-order
warm start), used as the strong few-step baseline of GITS (Chen et al. 2024)."""

from __future__ import annotations

import math
from typing import Any

import torch

from ._multistep import HistoryEntry, check_bool, check_order, lagrange_integrals, push, step_points
from .base import Sampler, SamplerContext

__all__ = ["IPNDM"]

# Adams–Bashforth coefficients on a uniform grid, newest first.
_AB = {1: (1.0,), 2: (1.5, -0.5), 3: (23 / 12, -16 / 12, 5 / 12), 4: (55 / 24, -59 / 24, 37 / 24, -9 / 24)}


class IPNDM(Sampler):
    r"""Adams–Bashforth (order up to 4) on the probability-flow ODE written in the noise level.

    With the scaled state ``y = x / alpha`` and noise level ``s = sigma / alpha = e^{-lambda}``, the
    probability-flow ODE of every schedule is the EDM/VE form (Karras et al. 2022, eq. 4 with
    ``s(t) = alpha``)

    .. math:: \frac{dy}{ds} = \epsilon(y, s) = \frac{y - D}{s} = \frac{x - \alpha D}{\sigma},

    and iPNDM integrates it with the explicit Adams–Bashforth formula of order ``q`` on the last ``q``
    values ``eps_0, eps_{-1}, ...``: ``y_1 = y_0 + sum_j w_j eps_{-j}``, then ``x_1 = alpha_1 y_1``.
    Orders rise 1, 2, 3, 4 over the first steps (the warm start that makes PNDM "improved").

    * ``variable_step=True`` (default): ``w_j = int_{s_0}^{s_1} l_j(s) ds`` for the Lagrange basis on the
      actual noise levels, exact for any grid (Adams–Bashforth with variable steps; k-diffusion's
      ``ipndm_v``), order ``q`` on every grid;
    * ``variable_step=False``: the fixed coefficients ``(s_1 - s_0) b_j`` of the uniform-step formula,
      ``b = (55, -59, 37, -9)/24`` etc., as the official iPNDM and GITS code. They are order ``q`` only
      on grids uniform in ``s`` (e.g. ``Karras(rho=1)``); on other grids the mismatch of step sizes makes
      the method second order.

    The step is evaluated as ``y_1 = D_0 + s_1 eps_0 + sum_{j>=1} w_j (eps_{-j} - eps_0)`` (using
    ``sum_j w_j = s_1 - s_0``), which stays finite from ``alpha = 0`` (``s_0 = inf``, a first-order
    step equal to DDIM).

    Arguments:
        order: highest Adams–Bashforth order, 1 to 4 (default 4).
        variable_step: exact variable-step coefficients (default True) or the fixed uniform-step ones.

    Declares ``order`` = the order (on uniform-``s`` grids for ``variable_step=False``), one model call
    per step.
    """

    name = "ipndm"
    nfe_per_step = 1

    def __init__(self, order: int = 4, *, variable_step: bool = True) -> None:
        self.formula_order = check_order("order", order, 1, 4)  # int; `order`: the float
        self.order = float(self.formula_order)
        self.variable_step = check_bool("variable_step", variable_step)

    def step(self, ctx: SamplerContext, k: int, t0: float, t1: float, x: torch.Tensor,
             state: Any) -> tuple[torch.Tensor, Any]:
        p0, p1, h = step_points(ctx, t0, t1)
        d0 = ctx.denoiser(x, t0)
        eps0 = (x - p0.alpha * d0) / p0.sigma
        s0 = math.exp(-p0.log_snr)        # inf where alpha_0 = 0
        s1 = math.exp(-p1.log_snr)        # 0 where sigma_1 = 0
        hist = [e for e in state]
        usable = 0
        for e in hist:
            if not math.isfinite(math.exp(-e.log_snr)):
                break
            usable += 1
        q = min(self.formula_order, 1 + usable) if math.isfinite(s0) else 1
        y1 = d0 + s1 * eps0
        if q > 1:
            nodes = [s0] + [math.exp(-e.log_snr) for e in hist[: q - 1]]
            if self.variable_step:
                w = lagrange_integrals(nodes, s0, s1)
            else:
                w = [(s1 - s0) * b for b in _AB[q]]
            for wj, e in zip(w[1:], hist[: q - 1]):
                y1 = y1 + wj * (e.value - eps0)
        return p1.alpha * y1, push(state, HistoryEntry(t0, p0.log_snr, eps0), self.formula_order - 1)

    def __repr__(self) -> str:
        return f"IPNDM(order={self.formula_order}, variable_step={self.variable_step})"
