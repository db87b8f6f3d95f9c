r"""DPM-Solver++ (Lu et al. 2022, "DPM-Solver++: Fast solver for guided sampling of diffusion probabilistic
models", arXiv:2211.01095): multistep exponential integrators of the probability-flow ODE in data
prediction, and the SDE variant SDE-DPM-Solver++(2M)."""

from __future__ import annotations

import math
from typing import Any

import torch

from .._utils import check_real
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

__all__ = ["DPMSolverPP", "SDEDPMSolverPP"]


class DPMSolverPP(Sampler):
    r"""Multistep DPM-Solver++ of order 2 ("2M", Lu et al. 2022, Algorithm 2) or 3 ("3M", the official
    code's ``multistep_dpm_solver_third_update``).

    The probability-flow ODE in data prediction has the exact solution over a step
    ``lambda_s -> lambda_t = lambda_s + h`` (``lambda = log(alpha / sigma)``)

    .. math:: x_t = \frac{\sigma_t}{\sigma_s} x_s + \sigma_t \int_{\lambda_s}^{\lambda_t} e^{\lambda}
              D(x_\lambda, \lambda)\,d\lambda
              = \frac{\sigma_t}{\sigma_s} x_s + \alpha_t \sum_{k\ge 0} h^{k+1}\varphi_{k+1}(-h)\,
              D^{(k)}(\lambda_s),

    with ``phi_k(z) = sum_j z^j / (j + k)!``. The multistep methods replace the derivatives by backward
    differences of the last data predictions ``D_0, D_{-1}, D_{-2}`` (at ``lambda_0 = lambda_s``,
    ``lambda_{-1}``, ``lambda_{-2}``; ``h_0 = lambda_0 - lambda_{-1}``, ``h_1 = lambda_{-1} - lambda_{-2}``,
    ``r_0 = h_0 / h``, ``r_1 = h_1 / h``):

    * order 1 (DDIM): ``x_t = (sigma_t / sigma_s) x_s + alpha_t (1 - e^{-h}) D_0``;
    * 2M: ``D_0`` replaced by ``(1 + 1/(2 r_0)) D_0 - 1/(2 r_0) D_{-1}`` (eq. 18 / Algorithm 2);
    * 3M: with ``E_0 = (D_0 - D_{-1}) / r_0``, ``E_1 = (D_{-1} - D_{-2}) / r_1``,
      ``D_1 = E_0 + r_0 (E_0 - E_1) / (r_0 + r_1)`` (``= h P'(lambda_0)``) and
      ``D_2 = (E_0 - E_1) / (r_0 + r_1)`` (``= h^2 P''(lambda_0) / 2`` for the quadratic ``P`` through the
      three predictions),
      ``x_t = (sigma_t/sigma_s) x_s + alpha_t [h phi_1(-h) D_0 + h phi_2(-h) D_1 + 2 h phi_3(-h) D_2]``.
      The Taylor term of ``D''`` needs the factor 2 on ``D_2``: the official code's coefficient
      ``phi_2/h - 1/2 = -h phi_3(-h)`` (without it) leaves a local error ``h^3 D''/12``, i.e. a
      second-order method, which the convergence test of this package measures; here the method is
      third order.

    The ``phi`` functions are evaluated without cancellation for small ``h``. The first steps use lower
    orders (not enough history); with ``lower_order_final`` the last steps do too: the order is at most the
    number of steps left (the last step first order, the one before at most second), on every grid, as the
    official code (``min(order, steps + 1 - step)``; Lu et al., section 5). This matters at any step count:
    the last step of a grid that ends near ``t = 0`` is long in log-SNR, and an extrapolation of order 2 or
    3 over it lands off the data. A step with
    ``h = inf`` (``sigma = 0`` at its end or ``alpha = 0`` at its start) is the exact first-order step.

    Arguments:
        order: 2 (default) or 3 (1 is DDIM).
        lower_order_final: cap the order of each step at the number of steps left, whatever the number of
            steps (default True, as the official code; diffusers applies it below 15 steps only). False:
            the full order up to the last step.

    Declares ``order`` = the order, one model call per step.
    """

    name = "dpm++"
    nfe_per_step = 1

    def __init__(self, order: int = 2, *, lower_order_final: bool = True) -> None:
        self.formula_order = check_order("order", order, 1, 3)  # int; `order`: the float
        self.order = float(self.formula_order)
        self.lower_order_final = check_bool("lower_order_final", lower_order_final)
        self.name = {1: "dpm++1", 2: "dpm++2m", 3: "dpm++3m"}[self.formula_order]

    def step(self, ctx: SamplerContext, k: int, t0: float, t1: float, x: torch.Tensor,
             state: Any) -> tuple[torch.Tensor, Any]:
        p0, p1, h = step_points(ctx, t0, t1)
        d0 = ctx.denoiser(x, t0)
        finite = math.isfinite(h)
        avail = 1 + finite_prefix(state) if finite else 1
        p = step_order(self.formula_order, k, ctx, self.lower_order_final, avail)
        lin = p1.sigma / p0.sigma if p0.sigma > 0 else 0.0
        if p == 1:
            x1 = lin * x + (-p1.alpha * math.expm1(-h)) * d0
        elif p == 2:
            r0 = (p0.log_snr - state[0].log_snr) / h
            dbar = (1.0 + 0.5 / r0) * d0 - (0.5 / r0) * state[0].value
            x1 = lin * x + (-p1.alpha * math.expm1(-h)) * dbar
        else:
            lam_1, lam_2 = state[0].log_snr, state[1].log_snr
            r0, r1 = (p0.log_snr - lam_1) / h, (lam_1 - lam_2) / h
            e0 = (d0 - state[0].value) / r0
            e1 = (state[0].value - state[1].value) / r1
            d1 = e0 + (r0 / (r0 + r1)) * (e0 - e1)
            d2 = (e0 - e1) / (r0 + r1)
            a = p1.alpha * h
            x1 = lin * x + (a * phi(1, -h)) * d0 + (a * phi(2, -h)) * d1 + (2.0 * a * phi(3, -h)) * d2
        return x1, push(state, HistoryEntry(t0, p0.log_snr, d0), self.formula_order - 1)

    def init(self, ctx: SamplerContext, x: torch.Tensor) -> Any:
        return ()

    def __repr__(self) -> str:
        return f"DPMSolverPP(order={self.formula_order}, lower_order_final={self.lower_order_final})"


class SDEDPMSolverPP(Sampler):
    r"""SDE-DPM-Solver++(2M) (Lu et al. 2022, DPM-Solver++, appendix; the ``sde-dpmsolver++`` algorithm of
    the official code and ``dpmpp_2m_sde`` of k-diffusion), a multistep exponential integrator of the
    reverse SDE family ``dx = [f x - (1 + eta)/2 g^2 score] dt + sqrt(eta) g dW`` (all with the data
    marginals; ``eta = 1`` is the reverse diffusion SDE, ``eta = 0`` the probability-flow ODE). With
    ``c = 1 + eta``, its exact solution over a step with the data prediction frozen is

    .. math:: x_t = \frac{\sigma_t}{\sigma_s} e^{-\eta h} x_s + \alpha_t (1 - e^{-c h}) D_0
              + \sigma_t \sqrt{1 - e^{-2 \eta h}}\, z,

    and the second-order multistep correction adds, with ``D_1 = (D_0 - D_{-1}) / r_0``,
    ``r_0 = h_{prev} / h``,

    * ``solver_type="midpoint"`` (the paper's form, default): ``alpha_t (1 - e^{-c h}) D_1 / 2``;
    * ``solver_type="heun"``: the exact integral of the linear extrapolation,
      ``alpha_t c h phi_2(-c h) D_1`` (``= alpha_t (1 - (1 - e^{-ch})/(ch)) D_1``).

    ``z = dW / sqrt|dt|`` comes from the Brownian source. First step (and, with ``lower_order_final``, the
    last, on every grid) first order.

    Arguments:
        eta: noise scale ``eta >= 0`` (default 1, the reverse SDE); 0 gives a deterministic 2M-type ODE
            solver.
        solver_type: ``"midpoint"`` (default) or ``"heun"``.
        lower_order_final: as :class:`DPMSolverPP`.

    Declares order 1 (weak order of the stochastic method; the multistep correction improves the drift
    part only) or 2 for ``eta = 0``; one model call per step.
    """

    name = "sde-dpm++2m"
    nfe_per_step = 1

    def __init__(self, eta: float = 1.0, *, solver_type: str = "midpoint",
                 lower_order_final: bool = True) -> None:
        self.eta = check_real("eta", eta, nonnegative=True)
        self.solver_type = check_choice("solver_type", solver_type, ("midpoint", "heun"))
        self.lower_order_final = check_bool("lower_order_final", lower_order_final)
        self.stochastic = self.eta > 0
        self.order = 1.0 if self.stochastic else 2.0

    @property
    def reverse_sde_tau2(self) -> float:
        """``eta``: SDE-DPM-Solver++ discretises the reverse-time equation with ``tau^2 = eta``."""
        return self.eta

    def step(self, ctx: SamplerContext, k: int, t0: float, t1: float, x: torch.Tensor,
             state: Any) -> tuple[torch.Tensor, Any]:
        p0, p1, h = step_points(ctx, t0, t1)
        d0 = ctx.denoiser(x, t0)
        finite = math.isfinite(h)
        avail = 1 + finite_prefix(state) if finite else 1
        p = step_order(2, k, ctx, self.lower_order_final, avail)
        c = 1.0 + self.eta
        decay = math.exp(-self.eta * h) if self.eta > 0 else 1.0
        lin = p1.sigma / p0.sigma * decay if p0.sigma > 0 and decay > 0 else 0.0
        w0 = -p1.alpha * math.expm1(-c * h)
        x1 = lin * x + w0 * d0
        if p == 2:
            r0 = (p0.log_snr - state[0].log_snr) / h
            d1 = (d0 - state[0].value) / r0
            w1 = 0.5 * w0 if self.solver_type == "midpoint" else p1.alpha * c * h * phi(2, -c * h)
            x1 = x1 + w1 * d1
        if self.stochastic and p1.sigma > 0:
            x1 = x1 + (p1.sigma * math.sqrt(-math.expm1(-2.0 * self.eta * h))) * ctx.normal(k, t0, t1)
        return x1, push(state, HistoryEntry(t0, p0.log_snr, d0), 1)

    def __repr__(self) -> str:
        return (f"SDEDPMSolverPP(eta={self.eta}, solver_type={self.solver_type!r}, "
                f"lower_order_final={self.lower_order_final})")
