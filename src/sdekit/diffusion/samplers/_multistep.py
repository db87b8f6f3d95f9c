r"""Shared pieces of the multistep samplers: phi functions, exact integrals of Lagrange polynomials
against exponential weights, the model-output history and the order schedule at the ends of the grid.

All coefficients are Python floats (float64) computed once per step from the grid; the tensors only see
scalar multiplications, so every sampler works in the dtype of the state.

Notation: ``lambda = log(alpha / sigma)``; a step runs from ``lambda_s`` to ``lambda_t = lambda_s + h``
(``h > 0``); ``u = lambda - lambda_t`` lies in ``[-h, 0]`` over the step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .base import SamplerContext, schedule_point

__all__ = ["phi", "exp_moments", "exp_lagrange_weights", "lagrange_integrals", "HistoryEntry", "push",
           "step_order", "check_order", "check_bool"]


def phi(k: int, z: float) -> float:
    r"""The exponential-integrator function ``phi_k(z) = sum_{j>=0} z^j / (j + k)!``
    (``phi_0 = e^z``, ``phi_{k+1}(z) = (phi_k(z) - 1/k!) / z``), accurate for every ``z``: the series
    for ``|z| <= 1`` (no cancellation), the recurrence above that.

    ``integral_0^h e^{-(h - v)} v^k / k! dv = h^{k+1} phi_{k+1}(-h)``.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if abs(z) <= 1.0:
        term = 1.0 / math.factorial(k)
        total = term
        for j in range(1, 40):
            term *= z / (j + k)
            total += term
            if abs(term) < 1e-18 * abs(total):
                break
        return total
    value = math.exp(z)
    for j in range(k):
        value = (value - 1.0 / math.factorial(j)) / z
    return value


def exp_moments(z: float, n: int) -> list[float]:
    r"""``m_k(z) = integral_0^1 e^{-z s} s^k ds`` for ``k = 0 .. n-1``, accurate for every finite ``z``.

    A convergent series for ``|z| <= 1``; above, the upward recurrence
    ``m_0 = -expm1(-z) / z``, ``m_k = (k m_{k-1} - e^{-z}) / z`` (stable there).
    """
    if abs(z) <= 1.0:
        out = []
        for k in range(n):
            term, total = 1.0, 1.0 / (k + 1)
            for j in range(1, 60):
                term *= -z / j
                add = term / (j + k + 1)
                total += add
                if abs(add) < 1e-18 * abs(total):
                    break
            out.append(total)
        return out
    e = math.exp(-z)
    out = [-math.expm1(-z) / z]
    for k in range(1, n):
        out.append((k * out[-1] - e) / z)
    return out


def _basis_matrix(nodes: list[float]) -> np.ndarray:
    """``A`` with ``l_j(v) = sum_k A[k, j] v^k`` the Lagrange basis on ``nodes``."""
    v = np.asarray(nodes, dtype=np.float64)
    vander = np.vander(v, N=len(v), increasing=True)  # V[i, k] = v_i^k
    return np.linalg.inv(vander)


def exp_lagrange_weights(nodes: list[float], h: float, c: float = 1.0) -> list[float]:
    r"""``w_j = integral_{-h}^0 e^{c u} l_j(u) du`` for the Lagrange basis ``l_j`` on ``nodes`` (values of
    ``u``), computed exactly: with ``u = h v``, ``w_j = h sum_k A_kj (-1)^k m_k(c h)`` (see
    :func:`exp_moments`), nodes scaled by ``h`` so the Vandermonde system stays well conditioned.

    Arguments:
        nodes: distinct interpolation points in ``u`` (any order; typically ``<= 0``).
        h: the step, ``h > 0`` and finite.
        c: rate of the exponential weight (``1`` for the probability-flow ODE in data prediction,
            ``1 + tau^2`` for SA-Solver, ``-1`` for noise prediction).
    """
    n = len(nodes)
    A = _basis_matrix([u / h for u in nodes])
    m = exp_moments(c * h, n)
    signed = np.array([(-1.0) ** k * m[k] for k in range(n)])
    return [float(h * w) for w in signed @ A]


def lagrange_integrals(nodes: list[float], a: float, b: float) -> list[float]:
    r"""``integral_a^b l_j(x) dx`` for the Lagrange basis on ``nodes``, exactly (Gauss–Legendre with
    enough points for the polynomial degree), in coordinates centred and scaled on ``[a, b]``."""
    n = len(nodes)
    mid, half = 0.5 * (a + b), 0.5 * (b - a)
    scaled = [(x - mid) / half for x in nodes]
    g, w = np.polynomial.legendre.leggauss(max(1, (n + 1) // 2 + 1))
    out = []
    for j in range(n):
        lj = np.ones_like(g)
        for i in range(n):
            if i != j:
                lj *= (g - scaled[i]) / (scaled[j] - scaled[i])
        out.append(float(half * np.dot(w, lj)))
    return out


@dataclass(frozen=True)
class HistoryEntry:
    """One past model evaluation: the time, its log-SNR and the data prediction (or another output)."""

    t: float
    log_snr: float
    value: torch.Tensor


def push(history: tuple, entry: HistoryEntry, keep: int) -> tuple:
    """A new history tuple with ``entry`` first and at most ``keep`` entries (never mutated in place, so the
    core loop can replay a step from a saved state)."""
    return (entry,) + tuple(history[: max(keep - 1, 0)])


def finite_prefix(history: tuple) -> int:
    """How many of the newest entries have a finite log-SNR (an ``alpha = 0`` point cannot be a node)."""
    n = 0
    for e in history:
        if not math.isfinite(e.log_snr):
            break
        n += 1
    return n


def steps_left(k: int, ctx: SamplerContext, lower_order_final: bool) -> int | None:
    """The cap ``lower_order_final`` puts on the order of step ``k`` (0-based): the number of steps left,
    ``steps - k``, on every grid, so the last step is first order and the one before at most second (the
    official DPM-Solver and UniPC code, ``step_order = min(order, steps + 1 - step)``; Lu et al. 2022,
    DPM-Solver++, section 5). ``None`` (no cap) when ``lower_order_final`` is off.

    The cap does not depend on the number of steps (diffusers applies it below 15 steps only): the last
    step of a grid ending near ``t = 0`` is long in log-SNR whatever the count (``VP``'s uniform grid to
    ``t_min = 1e-3``: 3.1 against 0.7 for the one before at 15 steps), and a high-order
    extrapolation over it throws samples off the data.
    """
    return len(ctx.times) - 1 - k if lower_order_final else None


def step_order(order: int, k: int, ctx: SamplerContext, lower_order_final: bool, available: int) -> int:
    """The order used at step ``k``: at most ``order``, at most the ``available`` usable past outputs, and
    at most :func:`steps_left` under ``lower_order_final``."""
    p = min(order, max(available, 1))
    cap = steps_left(k, ctx, lower_order_final)
    if cap is not None:
        p = min(p, cap)
    return max(p, 1)


def step_points(ctx: SamplerContext, t0: float, t1: float):
    """Schedule points at both ends of a step and ``h = lambda_1 - lambda_0`` (``inf`` where ``sigma_1 = 0``
    or ``alpha_0 = 0``)."""
    p0, p1 = schedule_point(ctx.schedule, t0), schedule_point(ctx.schedule, t1)
    return p0, p1, p1.log_snr - p0.log_snr


def check_order(name: str, value: object, lo: int, hi: int) -> int:
    """An int in ``[lo, hi]`` or a ValueError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an int in [{lo}, {hi}], got {value!r}")
    return value


def check_bool(name: str, value: object) -> bool:
    """A bool or a TypeError naming the argument."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def check_choice(name: str, value, choices) -> str:
    """One of ``choices`` or a ValueError naming the argument."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value
