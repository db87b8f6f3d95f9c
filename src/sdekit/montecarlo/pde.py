r"""Crank–Nicolson reference for the variable-exponent Cauchy problem (Avci 2025, arXiv 2511.00773):

    u_t = sigma^2 / 2 x^{2 q(x)} u_xx + mu x^{p(x)} u_x - V(x) u   on (0, inf) x (0, T],   u(., 0) = f.

**In y = ln x.** With ``u(x, t) = w(ln x, t)``: ``u_x = w_y / x`` and ``u_xx = (w_yy - w_y) / x^2``, so

    w_t = a(y) (w_yy - w_y) + b(y) w_y - V(e^y) w,   a = sigma^2 / 2 e^{2 (q - 1) y},   b = mu e^{(p - 1) y},

(the paper's transformed equation; for ``p = q = 1`` constant coefficients, uniformly parabolic).

**The scheme.** A uniform grid ``y_j = y_lo + j h`` (``j = 0..n_y``), central differences
(``w_yy ~ (w_{j+1} - 2 w_j + w_{j-1}) / h^2``, ``w_y ~ (w_{j+1} - w_{j-1}) / (2 h)``: second order), and
Crank–Nicolson in time (``(I - k/2 L) w^{n+1} = (I + k/2 L) w^n``, second order), one tridiagonal solve
per step (:func:`scipy.linalg.solve_banded`), float64. The first ``rannacher`` steps are each replaced by
two implicit Euler half steps (Rannacher 1984), which damps the high frequencies of a non-smooth ``f``
and keeps second order. Output times are stepped onto exactly (equal steps of at most ``dt`` between
consecutive times) and the solution is read off at ``ln x`` by a cubic spline in ``y`` (fourth order, so
it does not spoil the scheme's order).

**Boundary conditions.** The problem lives on the whole line in ``y``; the grid truncates it to
``[y_lo, y_hi]`` (default ``[ln min x - 6, ln max x + 6]``, i.e. ``x`` from ``e^-6 min x`` to ``e^6 max x``)
with Dirichlet values ``w(y_b, t) = f(e^{y_b}) e^{-V(e^{y_b}) t}``: the solution for a process frozen at the
boundary point, accurate where ``f`` is flat far out (``f in C_b^2`` decaying or levelling off, as the
paper's ``f``) and the paths from the query points rarely get there; the truncation error is checked by
widening the bounds (the benchmark reports it). An exact solution can be imposed instead (``boundary``).

**Its own error.** :func:`crank_nicolson_refined` solves on ``levels`` grids, each halving ``h`` and ``dt``
with the bounds fixed, and reports the finest solution, the Richardson estimate of its error
``|u_{h/2} - u_h| / 3`` (second order) and the observed order ``log2(|u_h - u_{h/2}| / |u_{h/2} - u_{h/4}|)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.interpolate import CubicSpline
from scipy.linalg import solve_banded

from ._checks import as_function, check_count, check_number, check_points, check_times, evaluate
from .feynman_kac import VariableExponentSDE

__all__ = ["crank_nicolson", "crank_nicolson_refined", "CrankNicolsonResult"]


@dataclass(frozen=True)
class CrankNicolsonResult:
    """The result of :func:`crank_nicolson_refined`; tensors ``(len(t), len(x))``, float64.

    Attributes:
        u: the solution on the finest grid.
        error: the Richardson estimate of its error, ``|u_finest - u_previous| / 3``.
        order: the observed order from the last three levels (``nan`` where the differences are at
            rounding level); ``None`` with fewer than three levels.
        levels: the solutions of every level, coarse to fine.
        n_y, dt: of the finest grid.
    """

    u: torch.Tensor
    error: torch.Tensor
    order: torch.Tensor | None
    levels: list[torch.Tensor]
    n_y: int
    dt: float


def _check_sde(sde) -> VariableExponentSDE:
    if not isinstance(sde, VariableExponentSDE):
        raise TypeError("sde must be a VariableExponentSDE (its coefficients define the PDE), "
                        f"got {type(sde).__name__}")
    return sde


def crank_nicolson(sde: VariableExponentSDE, f: Callable, x, t, *, V: Callable | float = 0.0, n_y: int = 1000,
                   dt: float = 1e-2, y_bounds: tuple[float, float] | None = None, rannacher: int = 2,
                   boundary: Callable | None = None) -> torch.Tensor:
    """Solve the variable-exponent Cauchy problem of ``sde`` by Crank–Nicolson in ``y = ln x``.

    Arguments:
        sde: the :class:`~sdekit.montecarlo.VariableExponentSDE` whose ``mu, sigma, p, q`` define the PDE.
        f: the initial datum, a callable acting pointwise on ``x`` (float64 tensors).
        x: query points ``(n_x,)`` in ``(0, inf)``.
        t: one time or increasing times ``> 0``.
        V: the potential ``>= 0``, a pointwise callable or a number.
        n_y: grid intervals in ``y`` (``n_y + 1`` nodes, ``h = (y_hi - y_lo) / n_y``).
        dt: the largest time step.
        y_bounds: ``(y_lo, y_hi)`` in ``y = ln x``; default ``(ln min x - 6, ln max x + 6)``; must contain
            ``ln x`` for every query point with at least two grid cells to spare.
        rannacher: number of start-up steps done as two implicit Euler half steps each (``0``: plain CN).
        boundary: ``boundary(x_b, t) -> tensor (2,)``, the solution at the two boundary points ``x_b``
            (a float64 tensor ``(2,)``) at time ``t``; default ``f(x_b) exp(-V(x_b) t)``.

    Returns:
        ``u(x, t)`` as a float64 tensor ``(len(t), n_x)``.

    Raises:
        TypeError / ValueError naming the argument: points outside ``(0, inf)`` or the bounds, times not
        positive and increasing, ``V < 0`` or non-finite ``f`` / ``V`` / coefficients on the grid.
    """
    sde = _check_sde(sde)
    x = check_points("x", x).double()
    ts = check_times("t", t)
    n_y = check_count("n_y", n_y, minimum=4)
    dt = check_number("dt", dt, positive=True)
    rannacher = check_count("rannacher", rannacher, minimum=0)
    Vf = as_function("V", V)
    logx = torch.log(x)
    if y_bounds is None:
        lo, hi = float(logx.min()) - 6.0, float(logx.max()) + 6.0
    else:
        if not isinstance(y_bounds, (tuple, list)) or len(y_bounds) != 2:
            raise TypeError(f"y_bounds must be a pair (y_lo, y_hi), got {y_bounds!r}")
        lo, hi = check_number("y_bounds[0]", y_bounds[0]), check_number("y_bounds[1]", y_bounds[1])
    h = (hi - lo) / n_y
    if not (lo + 2 * h <= float(logx.min()) and float(logx.max()) <= hi - 2 * h):
        raise ValueError(f"y_bounds=({lo:.4g}, {hi:.4g}) must contain ln x = [{float(logx.min()):.4g}, "
                         f"{float(logx.max()):.4g}] with two grid cells to spare (h={h:.3g})")
    y = torch.linspace(lo, hi, n_y + 1, dtype=torch.float64)
    xs = torch.exp(y)
    a, b = sde.log_coefficients(y)
    for name, c in (("a = sigma^2/2 e^{2(q-1)y}", a), ("b = mu e^{(p-1)y}", b)):
        if not bool(torch.isfinite(c).all()):
            raise ValueError(f"the PDE coefficient {name} is not finite on the grid y in [{lo:.4g}, {hi:.4g}]: "
                             "narrow y_bounds")
    Vy = evaluate("V", Vf, xs, sign="nonnegative").numpy()
    w = evaluate("f", f, xs).numpy().copy()
    a_, b_ = a.numpy(), b.numpy()
    lower = a_ / h**2 - (b_ - a_) / (2 * h)
    diag = -2 * a_ / h**2 - Vy
    upper = a_ / h**2 + (b_ - a_) / (2 * h)
    lower, diag, upper = lower[1:-1], diag[1:-1], upper[1:-1]  # interior rows j = 1..n_y-1
    xb = xs[[0, -1]]
    if boundary is None:
        fb, Vb = w[[0, -1]].copy(), Vy[[0, -1]].copy()

        def edge(s: float) -> np.ndarray:
            return fb * np.exp(-Vb * s)
    else:
        if not callable(boundary):
            raise TypeError(f"boundary must be a callable boundary(x_b, t) or None, got {type(boundary).__name__}")

        def edge(s: float) -> np.ndarray:
            out = torch.as_tensor(boundary(xb, s), dtype=torch.float64).reshape(-1)
            if out.numel() != 2 or not bool(torch.isfinite(out).all()):
                raise ValueError(f"boundary(x_b, t) must return 2 finite values, got {out}")
            return out.numpy()

    bands: dict[tuple[float, float], np.ndarray] = {}

    def banded(theta: float, k: float) -> np.ndarray:
        key = (theta, k)
        if key not in bands:
            ab = np.zeros((3, n_y - 1))
            ab[0, 1:] = -theta * k * upper[:-1]
            ab[1] = 1.0 - theta * k * diag
            ab[2, :-1] = -theta * k * lower[1:]
            bands[key] = ab
        return bands[key]

    def step(w: np.ndarray, s: float, k: float, theta: float) -> np.ndarray:
        Lw = lower * w[:-2] + diag * w[1:-1] + upper * w[2:]
        rhs = w[1:-1] + (1.0 - theta) * k * Lw
        g1 = edge(s + k)
        rhs[0] += theta * k * lower[0] * g1[0]
        rhs[-1] += theta * k * upper[-1] * g1[1]
        out = np.empty_like(w)
        out[1:-1] = solve_banded((1, 1), banded(theta, k), rhs, check_finite=False)
        out[0], out[-1] = g1
        return out

    out = []
    s, done = 0.0, 0
    for target in ts:
        n = max(1, math.ceil((target - s) / dt - 1e-9))
        k = (target - s) / n
        for j in range(n):
            t0 = s + j * k
            if done < rannacher:
                w = step(w, t0, 0.5 * k, 1.0)
                w = step(w, t0 + 0.5 * k, 0.5 * k, 1.0)
            else:
                w = step(w, t0, k, 0.5)
            done += 1
        s = target
        out.append(CubicSpline(y.numpy(), w)(logx.numpy()))
    return torch.from_numpy(np.stack(out))


def crank_nicolson_refined(sde: VariableExponentSDE, f: Callable, x, t, *, V: Callable | float = 0.0,
                           n_y: int = 500, dt: float = 2e-2, levels: int = 3,
                           y_bounds: tuple[float, float] | None = None, rannacher: int = 2,
                           boundary: Callable | None = None) -> CrankNicolsonResult:
    """:func:`crank_nicolson` on ``levels`` grids (``n_y, 2 n_y, ...`` intervals and ``dt, dt/2, ...``
    steps, the same ``y_bounds``), with the Richardson error estimate of the finest solution and the
    observed order (see the module docstring). Arguments as :func:`crank_nicolson` (``n_y`` and ``dt`` of the
    coarsest level)."""
    levels = check_count("levels", levels, minimum=2)
    n_y = check_count("n_y", n_y, minimum=4)
    dt = check_number("dt", dt, positive=True)
    x = check_points("x", x).double()
    if y_bounds is None:
        logx = torch.log(x)
        y_bounds = (float(logx.min()) - 6.0, float(logx.max()) + 6.0)
    us = [crank_nicolson(sde, f, x, t, V=V, n_y=n_y * 2**i, dt=dt / 2**i, y_bounds=y_bounds, rannacher=rannacher,
                         boundary=boundary) for i in range(levels)]
    error = (us[-1] - us[-2]).abs() / 3.0
    order = None
    if levels >= 3:
        d1, d2 = (us[-3] - us[-2]).abs(), (us[-2] - us[-1]).abs()
        order = torch.where(d2 > 1e-14, torch.log2(d1 / d2.clamp_min(1e-300)), torch.full_like(d1, float("nan")))
    return CrankNicolsonResult(u=us[-1], error=error, order=order, levels=us, n_y=n_y * 2 ** (levels - 1),
                               dt=dt / 2 ** (levels - 1))
