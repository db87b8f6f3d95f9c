"""Stochastic solvers: Euler-Maruyama, Milstein, stochastic Runge-Kutta (SRI2 / SRA1), Heun,
midpoint and reversible Heun."""

from __future__ import annotations

from dataclasses import dataclass

from .base import SDESolver


class Euler(SDESolver):
    """Euler-Maruyama, ``y1 = y0 + f dt + g dW`` (Ito).

    Strong order 0.5 (1.0 for additive noise), weak order 1.
    Reference: Kloeden & Platen, *Numerical Solution of Stochastic Differential Equations*, 1992, 10.2.
    """

    name = "euler"
    sde_type = "ito"
    strong_order = 0.5
    additive_strong_order = 1.0
    weak_order = 1.0

    def step(self, problem, t0, t1, y0, dW, state):
        return y0 + problem.f(t0, y0) * (t1 - t0) + problem.g_prod(t0, y0, dW), state


class Milstein(SDESolver):
    """Milstein's method for diagonal, scalar and additive noise.

    ``y1 = y0 + f dt + g dW + 1/2 (L g) (dW^2 - dt)`` (Ito) or ``... (dW^2)`` (Stratonovich), where
    ``L g = (dg/dy) g`` is formed by automatic differentiation, or, with ``derivative_free=True``,
    by the finite difference ``(g(y + g sqrt(dt)) - g(y)) / sqrt(dt)`` (Ito: ``y + f dt + g sqrt(dt)``).
    Strong order 1.0 under commutative noise. Diagonal noise means ``g_i`` depends on ``y_i`` only.
    Reference: Kloeden & Platen 1992, 10.3 and 11.1.
    """

    name = "milstein"
    noise_types = ("diagonal", "scalar", "additive")
    strong_order = 1.0
    weak_order = 1.0

    def __init__(self, sde_type: str = "ito", derivative_free: bool = False) -> None:
        if sde_type not in ("ito", "stratonovich"):
            raise ValueError(f"sde_type must be 'ito' or 'stratonovich', got {sde_type!r}")
        self.sde_type = sde_type
        self.derivative_free = bool(derivative_free)

    def __repr__(self) -> str:
        return f"Milstein(sde_type={self.sde_type!r}, derivative_free={self.derivative_free})"

    def step(self, problem, t0, t1, y0, dW, state):
        dt = t1 - t0
        v = dW**2 - dt if self.sde_type == "ito" else dW**2
        f = problem.f(t0, y0)
        if problem.noise_type == "additive":
            return y0 + f * dt + problem.g_prod(t0, y0, dW), state
        if self.derivative_free:
            g = problem.g(t0, y0)
            g_vec = g[..., 0] if problem.noise_type == "scalar" else g
            sqrt_dt = dt.sqrt()
            y_prime = y0 + g_vec * sqrt_dt
            if self.sde_type == "ito":
                y_prime = y_prime + f * dt
            g_prime = problem.g(t0, y_prime)
            correction = problem.prod(g_prime - g, v) / (2 * sqrt_dt)
            return y0 + f * dt + problem.prod(g, dW) + correction, state
        g_dW, correction = problem.gdg_prod(t0, y0, dW, 0.5 * v)
        return y0 + f * dt + g_dW + correction, state


@dataclass(frozen=True)
class SRKTableau:
    """A Rößler stochastic Runge-Kutta tableau (Rößler 2010, SIAM J. Numer. Anal. 48(3))."""

    name: str
    c0: tuple
    c1: tuple
    A0: tuple
    A1: tuple
    B0: tuple
    B1: tuple
    alpha: tuple
    beta1: tuple
    beta2: tuple
    beta3: tuple = ()
    beta4: tuple = ()

    @property
    def stages(self) -> int:
        return len(self.alpha)

    def validate(self) -> None:
        s = self.stages
        for name in ("c0", "c1", "beta1", "beta2"):
            if len(getattr(self, name)) != s:
                raise ValueError(f"tableau {self.name}: {name} must have {s} entries")
        for name in ("A0", "B0"):
            rows = getattr(self, name)
            if len(rows) != s or any(len(r) != i for i, r in enumerate(rows)):
                raise ValueError(f"tableau {self.name}: {name} must be strictly lower triangular ({s} rows)")
        if abs(sum(self.alpha) - 1.0) > 1e-12:
            raise ValueError(f"tableau {self.name}: alpha must sum to 1 (consistency)")


# SRI2 (Rößler 2010, Table 5.2 "SRI2W1"-type for diagonal / scalar noise), (det. order 3, strong 1.5).
SRI2 = SRKTableau(
    name="SRI2",
    c0=(0.0, 1.0, 0.5, 0.0),
    c1=(0.0, 0.25, 1.0, 0.25),
    A0=((), (1.0,), (0.25, 0.25), (0.0, 0.0, 0.0)),
    A1=((), (0.25,), (1.0, 0.0), (0.0, 0.0, 0.25)),
    B0=((), (0.0,), (1.0, 0.5), (0.0, 0.0, 0.0)),
    B1=((), (-0.5,), (1.0, 0.0), (2.0, -1.0, 0.5)),
    alpha=(1 / 6, 1 / 6, 2 / 3, 0.0),
    beta1=(-1.0, 4 / 3, 2 / 3, 0.0),
    beta2=(1.0, -4 / 3, 1 / 3, 0.0),
    beta3=(2.0, -4 / 3, -2 / 3, 0.0),
    beta4=(-2.0, 5 / 3, -2 / 3, 1.0),
)

# SRA1 (Rößler 2010, additive noise), (det. order 2, strong 1.5).
SRA1 = SRKTableau(
    name="SRA1",
    c0=(0.0, 0.75),
    c1=(1.0, 0.0),
    A0=((), (0.75,)),
    A1=((), (0.0,)),
    B0=((), (1.5,)),
    B1=((), (0.0,)),
    alpha=(1 / 3, 2 / 3),
    beta1=(1.0, 0.0),
    beta2=(-1.0, 1.0),
)


class SRK(SDESolver):
    """Stochastic Runge-Kutta of strong order 1.5 (Ito): Rößler's SRI2 for diagonal and scalar
    noise, SRA1 for additive noise. Uses the space-time Levy area ``U = int (W - W(t0)) ds``.

    Reference: A. Rößler, "Runge-Kutta methods for the strong approximation of solutions of
    stochastic differential equations", SIAM J. Numer. Anal. 48(3), 2010.
    """

    name = "srk"
    sde_type = "ito"
    noise_types = ("diagonal", "scalar", "additive")
    strong_order = 1.5
    additive_strong_order = 1.5
    weak_order = 1.5
    levy_area = True

    def __init__(self, diagonal_tableau: SRKTableau = SRI2, additive_tableau: SRKTableau = SRA1) -> None:
        diagonal_tableau.validate()
        additive_tableau.validate()
        self.diagonal_tableau = diagonal_tableau
        self.additive_tableau = additive_tableau

    def step(self, problem, t0, t1, y0, dW, state):
        I_k, I_k0 = dW
        if problem.noise_type == "additive":
            return self._additive(problem, t0, t1, y0, I_k, I_k0), state
        return self._diagonal(problem, t0, t1, y0, I_k, I_k0), state

    def _diagonal(self, problem, t0, t1, y0, I_k, I_k0):
        tab = self.diagonal_tableau
        dt = t1 - t0
        sqrt_dt = dt.sqrt()
        I_kk = (I_k**2 - dt) * 0.5
        I_kkk = (I_k**3 - 3 * dt * I_k) / 6
        I_k0_dt = I_k0 / dt
        scalar = problem.noise_type == "scalar"
        fs, gs = [], []
        y1 = y0
        for s in range(tab.stages):
            H0, H1 = y0, y0
            for j in range(s):
                if tab.A0[s][j]:
                    H0 = H0 + (tab.A0[s][j] * dt) * fs[j]
                if tab.B0[s][j]:
                    H0 = H0 + tab.B0[s][j] * gs[j] * I_k0_dt
                if tab.A1[s][j]:
                    H1 = H1 + (tab.A1[s][j] * dt) * fs[j]
                if tab.B1[s][j]:
                    H1 = H1 + tab.B1[s][j] * gs[j] * sqrt_dt
            f = problem.f(t0 + tab.c0[s] * dt, H0)
            g = problem.g(t0 + tab.c1[s] * dt, H1)
            fs.append(f)
            gs.append(g[..., 0] if scalar else g)
            weight = tab.beta1[s] * I_k + tab.beta2[s] * I_kk / sqrt_dt + tab.beta3[s] * I_k0_dt
            weight = weight + tab.beta4[s] * I_kkk / dt
            if tab.alpha[s]:
                y1 = y1 + (tab.alpha[s] * dt) * f
            y1 = y1 + problem.prod(g, weight)
        return y1

    def _additive(self, problem, t0, t1, y0, I_k, I_k0):
        tab = self.additive_tableau
        dt = t1 - t0
        I_k0_dt = I_k0 / dt
        fs = []
        y1 = y0
        for i in range(tab.stages):
            H0 = y0
            for j in range(i):
                if tab.A0[i][j]:
                    H0 = H0 + (tab.A0[i][j] * dt) * fs[j]
                if tab.B0[i][j]:
                    H0 = H0 + problem.g_prod(t0 + tab.c1[j] * dt, y0, tab.B0[i][j] * I_k0_dt)
            f = problem.f(t0 + tab.c0[i] * dt, H0)
            fs.append(f)
            weight = tab.beta1[i] * I_k + tab.beta2[i] * I_k0_dt
            y1 = y1 + (tab.alpha[i] * dt) * f + problem.g_prod(t0 + tab.c1[i] * dt, y0, weight)
        return y1


class Heun(SDESolver):
    """Stochastic Heun (trapezoidal predictor-corrector), Stratonovich.

    Strong order 1.0 for commutative noise (diagonal, scalar, additive), 0.5 for general noise.
    Reference: Rümelin, "Numerical treatment of stochastic differential equations", SIAM J. Numer.
    Anal. 19(3), 1982.
    """

    name = "heun"
    sde_type = "stratonovich"
    strong_order = 0.5
    additive_strong_order = 1.0
    weak_order = 1.0

    def order_for(self, noise_type: str) -> float:
        return 0.5 if noise_type == "general" else 1.0

    def step(self, problem, t0, t1, y0, dW, state):
        dt = t1 - t0
        f0 = problem.f(t0, y0)
        g0 = problem.g_prod(t0, y0, dW)
        y_pred = y0 + f0 * dt + g0
        f1 = problem.f(t1, y_pred)
        g1 = problem.g_prod(t1, y_pred, dW)
        return y0 + 0.5 * ((f0 + f1) * dt + g0 + g1), state


class Midpoint(SDESolver):
    """Stochastic midpoint method, Stratonovich; orders as :class:`Heun`.

    Reference: Burrage, Burrage & Tian, "Numerical methods for strong solutions of stochastic
    differential equations: an overview", Proc. R. Soc. A 460, 2004.
    """

    name = "midpoint"
    sde_type = "stratonovich"
    strong_order = 0.5
    additive_strong_order = 1.0
    weak_order = 1.0

    def order_for(self, noise_type: str) -> float:
        return 0.5 if noise_type == "general" else 1.0

    def step(self, problem, t0, t1, y0, dW, state):
        dt = t1 - t0
        half = 0.5 * dt
        y_mid = y0 + problem.f(t0, y0) * half + 0.5 * problem.g_prod(t0, y0, dW)
        t_mid = t0 + half
        return y0 + problem.f(t_mid, y_mid) * dt + problem.g_prod(t_mid, y_mid, dW), state


class ReversibleHeun(SDESolver):
    """Reversible Heun, Stratonovich: algebraically reversible, one drift and one diffusion
    evaluation per step.

    ``z1 = 2 y0 - z0 + f(z0) dt + g(z0) dW``;
    ``y1 = y0 + (f(z0) + f(z1)) dt / 2 + (g(z0) + g(z1)) dW / 2``.
    Strong order 0.5 (1.0 for additive noise). The state ``(f, g, z)`` can be inverted exactly,
    which the reversible adjoint uses.

    Reference: Kidger, Foster, Li & Lyons, "Efficient and accurate gradients for neural SDEs",
    NeurIPS 2021.
    """

    name = "reversible_heun"
    sde_type = "stratonovich"
    strong_order = 0.5
    additive_strong_order = 1.0
    weak_order = 1.0

    def init(self, problem, t0, y0):
        return problem.f(t0, y0), problem.g(t0, y0), y0

    def step(self, problem, t0, t1, y0, dW, state):
        f0, g0, z0 = state
        dt = t1 - t0
        z1 = 2 * y0 - z0 + f0 * dt + problem.prod(g0, dW)
        f1, g1 = problem.f(t1, z1), problem.g(t1, z1)
        y1 = y0 + (f0 + f1) * (0.5 * dt) + problem.prod(g0 + g1, 0.5 * dW)
        return y1, (f1, g1, z1)

    def inverse_step(self, problem, t0, t1, y1, dW, state1):
        """Recover ``(y0, state0)`` from ``(y1, state1)`` exactly (up to rounding): the step from ``t0``
        to ``t1`` run backwards, with one drift and one diffusion evaluation. The one implementation of
        the inverse: :class:`~sdekit.core.adjoint.ReversibleAdjoint` rebuilds the path with it."""
        f1, g1, z1 = state1
        dt = t1 - t0
        # The recurrence run backwards: 2 y1 - z1 - f1 dt - g1 dW equals z0 exactly.
        z0 = 2 * y1 - z1 - f1 * dt - problem.prod(g1, dW)
        f0, g0 = problem.f(t0, z0), problem.g(t0, z0)
        y0 = y1 - (f0 + f1) * (0.5 * dt) - problem.prod(g0 + g1, 0.5 * dW)
        return y0, (f0, g0, z0)
