"""The Euler-Heun method (Stratonovich)."""

from __future__ import annotations

from .sde_solvers import Heun


class EulerHeun(Heun):
    """Euler-Heun: an Euler step for the drift, the trapezoidal rule for the diffusion (Stratonovich).

    ``y' = y0 + g(t0, y0) dW``;
    ``y1 = y0 + f(t0, y0) dt + (g(t0, y0) + g(t1, y')) dW / 2``.

    One drift and two diffusion evaluations per step (cheaper than :class:`Heun`, which also
    averages the drift). Strong order 1.0 for commutative noise (diagonal, scalar, additive), 0.5 for
    general noise; weak order 1.

    Reference: Burrage, Burrage & Tian, "Numerical methods for strong solutions of stochastic
    differential equations: an overview", Proc. R. Soc. A 460, 2004 (section 5, the Euler-Heun
    method); Rümelin, "Numerical treatment of stochastic differential equations", SIAM J. Numer.
    Anal. 19(3), 1982.
    """

    name = "euler_heun"   # Heun's declarations: Stratonovich, the same orders per noise type

    def step(self, problem, t0, t1, y0, dW, state):
        g0 = problem.g_prod(t0, y0, dW)
        g1 = problem.g_prod(t1, y0 + g0, dW)
        return y0 + problem.f(t0, y0) * (t1 - t0) + 0.5 * (g0 + g1), state
