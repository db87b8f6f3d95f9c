"""The log-ODE midpoint method with space-time Levy area (Stratonovich)."""

from __future__ import annotations

import torch

from .._autodiff import jvp
from .base import SDESolver


class LogODE(SDESolver):
    """Log-ODE midpoint: one midpoint step of the ODE driven by the step's log-signature.

    Over a step of length ``h`` with increment ``W`` and space-time Levy area
    ``H = U / h - W / 2`` (``U = int (W_s - W_t0) ds``), the solution is approximated by the flow of

        dz/ds = f(z) h + g(z) W + sum_{k,l} (D g_l)(z) g_k(z) A_kl,     s in [0, 1],

    where ``A_kl = H_k W_l - W_k H_l`` is the conditional expectation of the Levy area given
    ``(W, H)`` (Davie's approximation without its random term; Foster, Lyons & Oberhauser 2020).
    This ODE is solved by one midpoint step: the drift and diffusion at
    ``y' = y0 + (f h + g W) / 2``, plus the Lie-bracket term there. The bracket term vanishes for
    commutative noise (diagonal, scalar, additive), where the method is the stochastic midpoint
    rule; for general noise it reduces the error constant, not the order.

    Strong order 1.0 for commutative noise, 0.5 for general noise (no method built on ``W`` and
    ``H`` alone does better: Clark & Cameron 1980); weak order 1. Needs ``g`` itself (not only
    ``g_prod``) for general noise.

    References: Castell & Gaines, "An efficient approximation method for stochastic differential
    equations by means of the exponential Lie series", Math. Comput. Simul. 38, 1995; Foster, Lyons &
    Oberhauser, "An optimal polynomial approximation of Brownian motion", SIAM J. Numer. Anal. 58(3),
    2020.
    """

    name = "log_ode"
    sde_type = "stratonovich"
    strong_order = 0.5
    additive_strong_order = 1.0
    weak_order = 1.0
    levy_area = True

    def order_for(self, noise_type: str) -> float:
        return 0.5 if noise_type == "general" else 1.0

    def step(self, problem, t0, t1, y0, dW, state):
        W, U = dW
        dt = t1 - t0
        half = 0.5 * dt
        y_mid = y0 + problem.f(t0, y0) * half + 0.5 * problem.g_prod(t0, y0, W)
        t_mid = t0 + half
        y1 = y0 + problem.f(t_mid, y_mid) * dt
        if problem.noise_type != "general":
            return y1 + problem.g_prod(t_mid, y_mid, W), state
        H = U / dt - 0.5 * W
        A = H.unsqueeze(-1) * W.unsqueeze(-2) - W.unsqueeze(-1) * H.unsqueeze(-2)  # (*S, m, m)
        with torch.enable_grad():
            y = y_mid if y_mid.requires_grad else y_mid.detach().requires_grad_(True)
            g = problem.g(t_mid, y)  # (*S, d, m)
            gA = torch.matmul(g, A)  # column l: sum_k g_k A_kl
            keep = torch.is_grad_enabled()
            bracket = sum(jvp(g[..., col], y, gA[..., col], create_graph=keep) for col in range(g.shape[-1]))
        y1 = y1 + problem.prod(g, W) + bracket
        return y1, state
