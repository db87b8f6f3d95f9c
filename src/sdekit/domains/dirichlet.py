r"""Dirichlet diffusion on the simplex: the Jacobi process per stick, stick-breaking, the Jacobi transition
density and its score, DDSM's training loss (:class:`DirichletScoreMatching`) and the reverse-time sampler with
time dilation (:func:`dirichlet_reverse_sample`) (Avdeyev et al. 2023,
"Dirichlet Diffusion Score Model for Biological Sequence Generation", ICML, arXiv 2305.10699;
official code jzhoulab/ddsm).

**Stick-breaking.** A point ``x`` of the ``K``-simplex and ``K - 1`` sticks ``v in [0, 1]^(K-1)`` are related by
``x_k = v_k prod_{j<k} (1 - v_j)`` (``k < K``), ``x_K = prod_{j<K} (1 - v_j)``. With independent
``v_k ~ Beta(1, K - k)`` the point ``x`` is flat-Dirichlet ``Dir(1, ..., 1)``.

**Jacobi process.** Per stick, ``dv = s/2 [a (1 - v) - b v] dt + sqrt(s v (1 - v)) dW`` (Ito), stationary law
``Beta(a, b)``. Its generator ``L = s/2 [(a - (a + b) v) d/dv + v (1 - v) d^2/dv^2]`` has the Jacobi polynomials
``P_n^{(b-1, a-1)}(2v - 1)`` as eigenfunctions with eigenvalues ``-lambda_n``,
``lambda_n = s/2 n (n - 1 + a + b)``, so the transition density is

    p_t(v | v0) = Beta(v; a, b) sum_{n>=0} exp(-lambda_n t) P_n(2 v0 - 1) P_n(2 v - 1) / d_n,
    d_n = int Beta(v; a, b) P_n(2v - 1)^2 dv
        = Gamma(n + a) Gamma(n + b) / ((2n + a + b - 1) Gamma(n + a + b - 1) n! B(a, b))   (d_0 = 1).

**Truncation and rounding.** The series is cut after ``order`` terms (default 200). The first dropped term is
at most about ``exp(-lambda_order t)`` times polynomial factors: at order 200 and ``s t >= 0.01`` that is
``exp(-200) ~ 1e-87`` against factors below ``1e35`` (``a, b <= 8``), so negligible; smaller ``s t`` needs
``order >= sqrt(400 / (s t))``. The alternating sum has an absolute rounding
floor in float64 that grows as ``s t`` shrinks when ``v0`` or ``v`` is near an endpoint (the terms grow like
``n^(2 max(a, b) - 1)`` before the exponential wins): for ``b = 8`` (the first stick of 9 categories) the
most negative value over ``v`` and ``v0`` in ``[0, 1]`` is ``-1.6e-11`` at ``s t = 0.05``, ``-1.2e-9`` at ``0.02``
and ``-4.5e-8`` at ``0.01`` (``b <= 3``: ``>= -1e-11`` at ``0.01``). Hence ``log p`` and the score are reliable
only where ``p`` is well above that floor (tested where ``p > 1e-6``, ``s t >= 0.05``); in the far tails they
are rounding noise. As in the paper (which precomputes order 1000 in float64), :class:`JacobiScoreTable`
precomputes the score from one-hot starts on a ``(log t, logit v)`` grid and interpolates it; its
density-weighted relative error is about ``1e-3`` (9 categories, 100 x 401 grid, ``t in [0.01, 1]``, built in
about 14 s on one core).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from ..core.sde import SDE
from ..core.solvers.sde_solvers import Euler

__all__ = [
    "SIMPLEX_ATOL", "stick_parameters", "stick_breaking", "inverse_stick_breaking", "JacobiDiffusion",
    "jacobi_polynomials", "jacobi_density", "jacobi_log_density", "jacobi_score", "JacobiScoreTable",
    "DIRICHLET_EPS", "JacobiReverseSDE", "one_hot_sticks", "dirichlet_reverse_sample", "DirichletScoreMatching",
]

SIMPLEX_ATOL = 1e-5
"""Tolerance for simplex points: every coordinate ``>= -SIMPLEX_ATOL`` and ``|sum - 1| <= SIMPLEX_ATOL``
(float32 sums of up to a few hundred coordinates stay well inside it)."""


def _check_K(K: int) -> int:
    if isinstance(K, bool) or not isinstance(K, int):
        raise TypeError(f"K must be an int, got {type(K).__name__}")
    if K < 2:
        raise ValueError(f"K (the number of categories) must be >= 2, got K={K}")
    return K


def stick_parameters(K: int, dtype: torch.dtype = torch.float64,
                     device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The Jacobi parameters ``a_k = 1``, ``b_k = K - k`` (``k = 1 .. K-1``) of the ``K - 1`` sticks, for which
    the stationary law of stick-breaking is the flat Dirichlet ``Dir(1, ..., 1)``.

    Returns:
        ``(a, b)``, each of shape ``(K - 1,)``.

    Raises:
        ValueError: ``K < 2``.
    """
    K = _check_K(K)
    a = torch.ones(K - 1, dtype=dtype, device=device)
    b = torch.arange(K - 1, 0, -1, dtype=dtype, device=device)
    return a, b


def stick_breaking(v: torch.Tensor) -> torch.Tensor:
    r"""Sticks to simplex points: ``x_k = v_k prod_{j<k} (1 - v_j)``, ``x_K = prod_j (1 - v_j)``.

    Arguments:
        v: ``(*batch, K - 1)`` sticks in ``[0, 1]`` (the endpoints are allowed: one-hot points have sticks
            ``0`` and ``1``).

    Returns:
        ``(*batch, K)`` points of the simplex.

    Raises:
        ValueError: ``v`` with an empty last dimension, NaN, or entries outside ``[0, 1]``.
    """
    if not isinstance(v, torch.Tensor):
        raise TypeError(f"v must be a tensor, got {type(v).__name__}")
    if v.dim() == 0 or v.shape[-1] < 1:
        raise ValueError(f"v must have shape (*batch, K - 1) with K >= 2, got shape {tuple(v.shape)}")
    bad = torch.isnan(v) | (v < 0) | (v > 1)
    if bool(bad.any()):
        raise ValueError(f"v (sticks) must lie in [0, 1]; got {v[bad].flatten()[:3].tolist()} at "
                         f"{int(bad.sum())} entries")
    rest = torch.cumprod(1 - v, dim=-1)
    before = torch.cat([torch.ones_like(v[..., :1]), rest[..., :-1]], dim=-1)
    return torch.cat([v * before, rest[..., -1:]], dim=-1)


def _check_simplex(x: torch.Tensor, atol: float) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a tensor, got {type(x).__name__}")
    if x.dim() == 0 or x.shape[-1] < 2:
        raise ValueError(f"x must have shape (*batch, K) with K >= 2 categories, got shape {tuple(x.shape)}")
    if bool(torch.isnan(x).any()):
        raise ValueError("x must not contain NaN")
    if bool((x < -atol).any()):
        raise ValueError(f"x must lie in the simplex: found a coordinate {float(x.min()):.3g} < 0 "
                         f"(tolerance {atol:g})")
    err = (x.sum(-1) - 1).abs()
    if bool((err > atol).any()):
        raise ValueError(f"x must sum to 1 over its last dimension: found a sum off by {float(err.max()):.3g} "
                         f"(tolerance {atol:g})")


def inverse_stick_breaking(x: torch.Tensor, atol: float = SIMPLEX_ATOL) -> torch.Tensor:
    r"""Simplex points to sticks: ``v_k = x_k / (1 - sum_{j<k} x_j)``, clamped to ``[0, 1]``.

    Where the remaining length ``1 - sum_{j<k} x_j`` is zero (after the category of a one-hot point) the stick
    is undefined; it is set to ``0`` (the convention used here for one-hot data).

    Arguments:
        x: ``(*batch, K)`` simplex points.
        atol: tolerance of the simplex check (default :data:`SIMPLEX_ATOL`).

    Returns:
        ``(*batch, K - 1)`` sticks.

    Raises:
        ValueError: ``K < 2``, a coordinate below ``-atol`` or a sum off 1 by more than ``atol``.
    """
    _check_simplex(x, atol)
    x = x.clamp(min=0)
    remaining = 1 - torch.cumsum(x, dim=-1)[..., :-2]
    remaining = torch.cat([torch.ones_like(x[..., :1]), remaining], dim=-1)
    tiny = torch.finfo(x.dtype).eps * 4
    v = torch.where(remaining > tiny, x[..., :-1] / remaining.clamp(min=tiny), torch.zeros_like(remaining))
    return v.clamp(0, 1)


class JacobiDiffusion(SDE):
    r"""The Jacobi diffusion ``dv = s/2 [a (1 - v) - b v] dt + sqrt(s v (1 - v)) dW`` per coordinate, as a core
    SDE (diagonal noise, Ito): ``sdekit.sdeint(JacobiDiffusion(a, b), v0, ts, method="euler", dt=...)`` runs it.

    The stationary law is ``Beta(a, b)``; with :func:`stick_parameters` the sticks of a ``K``-category state
    ``v: (*batch, K - 1)`` give the flat Dirichlet after stick-breaking.

    A discretisation may step outside ``[0, 1]`` by ``O(dt)`` (the noise vanishes at the ends): the diffusion
    coefficient uses ``max(v (1 - v), 0)``, so outside the interval only the drift acts, and it points back
    in for ``a, b > 0``; clamp the solution to ``[0, 1]`` before using it as sticks.

    Arguments:
        a, b: positive parameters, numbers or tensors broadcastable against the state (e.g. ``(K - 1,)``).
        speed: ``s > 0`` (``1``, or ``2 / (a + b)`` for DDSM's speed balancing).

    Raises:
        ValueError: non-positive ``a``, ``b`` or ``speed``.
    """

    def __init__(self, a: float | torch.Tensor, b: float | torch.Tensor, speed: float | torch.Tensor = 1.0) -> None:
        super().__init__(noise_type="diagonal", sde_type="ito")
        for name, value in (("a", a), ("b", b), ("speed", speed)):
            t = torch.as_tensor(value, dtype=torch.float64)
            if not bool(torch.isfinite(t).all()) or bool((t <= 0).any()):
                raise ValueError(f"{name} must be positive and finite, got {t.tolist()}")
        self.a, self.b, self.speed = a, b, speed

    def _cast(self, value, v: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(value, dtype=v.dtype, device=v.device)

    def f(self, t, v: torch.Tensor) -> torch.Tensor:
        a, b, speed = (self._cast(x, v) for x in (self.a, self.b, self.speed))
        return 0.5 * speed * (a * (1 - v) - b * v)

    def g(self, t, v: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(self._cast(self.speed, v) * (v * (1 - v)).clamp(min=0))


def _params(a, b, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a = torch.as_tensor(a, dtype=torch.float64, device=like.device)
    b = torch.as_tensor(b, dtype=torch.float64, device=like.device)
    if bool((a <= 0).any()) or bool((b <= 0).any()):
        raise ValueError(f"a and b must be positive, got a={a.tolist()}, b={b.tolist()}")
    return a, b


def _jacobi_iter(order: int, alpha, beta, x: torch.Tensor) -> Iterator[torch.Tensor]:
    """Yields ``P_0, ..., P_{order-1}`` of ``P_n^{(alpha, beta)}(x)`` (broadcast tensors), one at a time."""
    prev, cur = torch.zeros_like(x), torch.ones_like(x)
    ab, a2b2 = alpha + beta, alpha ** 2 - beta ** 2
    for n in range(order):
        yield cur
        if n == 0:
            prev, cur = cur, (alpha + 1) + (ab + 2) * (x - 1) / 2
        else:
            m = n + 1
            c = 2 * m + ab
            num = (c - 1) * (c * (c - 2) * x + a2b2) * cur - 2 * (m + alpha - 1) * (m + beta - 1) * c * prev
            prev, cur = cur, num / (2 * m * (m + ab) * (c - 2))


def jacobi_polynomials(order: int, alpha: torch.Tensor | float, beta: torch.Tensor | float,
                       x: torch.Tensor) -> torch.Tensor:
    r"""``P_n^{(alpha, beta)}(x)`` for ``n = 0 .. order - 1`` by the three-term recurrence (float64,
    differentiable), with ``alpha, beta > -1`` broadcastable against ``x``.

    Returns:
        ``(order, *broadcast shape)``.
    """
    x = torch.as_tensor(x, dtype=torch.float64)
    alpha = torch.as_tensor(alpha, dtype=torch.float64, device=x.device)
    beta = torch.as_tensor(beta, dtype=torch.float64, device=x.device)
    x, alpha, beta = torch.broadcast_tensors(x, alpha, beta)
    return torch.stack(list(_jacobi_iter(order, alpha, beta, x)))


def _series(v, v0, t, a, b, speed, order, derivative: bool):
    """The polynomial series ``S``, ``log Beta(v; a, b)`` and, with ``derivative``, ``dS/dv`` and
    ``d/dv log Beta``; summed term by term (memory of one term, not ``order`` of them)."""
    v = torch.as_tensor(v, dtype=torch.float64)
    v0 = torch.as_tensor(v0, dtype=torch.float64, device=v.device)
    t = torch.as_tensor(t, dtype=torch.float64, device=v.device)
    a, b = _params(a, b, v)
    speed = torch.as_tensor(speed, dtype=torch.float64, device=v.device)
    for name, val, lo, hi in (("v", v, 0.0, 1.0), ("v0", v0, 0.0, 1.0)):
        if bool(torch.isnan(val).any()) or bool((val < lo).any()) or bool((val > hi).any()):
            raise ValueError(f"{name} must lie in [0, 1], got values in [{float(val.min()):.3g}, "
                             f"{float(val.max()):.3g}]")
    if bool((t <= 0).any()) or bool((speed <= 0).any()):
        raise ValueError(f"t and speed must be positive, got t in [{float(t.min()):.3g}, {float(t.max()):.3g}]")
    if isinstance(order, bool) or not isinstance(order, int) or order < 2:
        raise ValueError(f"order must be an int >= 2, got {order!r}")
    # the coefficients depend on (a, b, speed) only: computed for all n at their (small) shape
    lgam = torch.lgamma
    a_, b_, speed_ = torch.broadcast_tensors(a, b, speed)
    n_all = torch.arange(1, order, dtype=torch.float64, device=v.device).reshape(-1, *([1] * a_.dim()))
    log_beta_small = lgam(a_) + lgam(b_) - lgam(a_ + b_)
    log_d_all = (lgam(n_all + a_) + lgam(n_all + b_) - torch.log(2 * n_all + a_ + b_ - 1)
                 - lgam(n_all + a_ + b_ - 1) - lgam(n_all + 1) - log_beta_small)
    lam_all = 0.5 * speed_ * n_all * (n_all - 1 + a_ + b_)
    v, v0, t, a, b, speed = torch.broadcast_tensors(v, v0, t, a, b, speed)
    alpha, beta = b - 1, a - 1
    log_beta_ab = lgam(a) + lgam(b) - lgam(a + b)
    x, x0 = 2 * v - 1, 2 * v0 - 1
    s = torch.zeros_like(v)
    ds = torch.zeros_like(v) if derivative else None
    dp_iter = _jacobi_iter(order - 1, alpha + 1, beta + 1, x) if derivative else None
    for n, (p0, p) in enumerate(zip(_jacobi_iter(order, alpha, beta, x0), _jacobi_iter(order, alpha, beta, x))):
        if n == 0:
            s = s + p0 * p
            continue
        coef = torch.exp(-lam_all[n - 1] * t - log_d_all[n - 1]) * p0
        s = s + coef * p
        if ds is not None and dp_iter is not None:
            # d/dv P_n^{(al, be)}(2v - 1) = (n + al + be + 1) P_{n-1}^{(al+1, be+1)}(2v - 1)
            ds = ds + coef * (n + alpha + beta + 1) * next(dp_iter)
    log_w = (a - 1) * torch.log(v) + (b - 1) * torch.log1p(-v) - log_beta_ab
    log_w = torch.where((a == 1) & (v == 0), -log_beta_ab, log_w)
    log_w = torch.where((b == 1) & (v == 1), -log_beta_ab, log_w)
    if ds is None:
        return s, log_w, None, None
    return s, log_w, ds, (a - 1) / v - (b - 1) / (1 - v)


def jacobi_density(v: torch.Tensor, v0: torch.Tensor, t: torch.Tensor | float, a: torch.Tensor | float,
                   b: torch.Tensor | float, speed: torch.Tensor | float = 1.0, order: int = 200) -> torch.Tensor:
    r"""The transition density ``p_t(v | v0)`` of :class:`JacobiDiffusion` from its Jacobi-polynomial series
    (module docstring; float64; the truncated sum is returned as is, so it may be negative by rounding where
    the truncation is not accurate).

    Arguments:
        v, v0: values in ``[0, 1]``; t: times ``> 0``; a, b: positive parameters; speed: ``s > 0``; all
            broadcast together.
        order: number of series terms (default 200: truncation negligible for ``s t >= 0.01``).

    Returns:
        the density, float64, of the broadcast shape.

    Raises:
        ValueError: ``v`` or ``v0`` outside ``[0, 1]``, non-positive ``t``, ``a``, ``b``, ``speed``, or
            ``order < 2``.
    """
    s, log_w, _, _ = _series(v, v0, t, a, b, speed, order, derivative=False)
    return torch.exp(log_w) * s


def jacobi_log_density(v, v0, t, a, b, speed=1.0, order: int = 200) -> torch.Tensor:
    r"""``log p_t(v | v0)`` (see :func:`jacobi_density`); the series is floored at ``1e-300`` before the log."""
    s, log_w, _, _ = _series(v, v0, t, a, b, speed, order, derivative=False)
    return log_w + torch.log(s.clamp(min=1e-300))


def jacobi_score(v, v0, t, a, b, speed=1.0, order: int = 200) -> torch.Tensor:
    r"""The score ``d/dv log p_t(v | v0) = (a - 1)/v - (b - 1)/(1 - v) + S'(v) / S(v)`` with ``S`` the
    polynomial series of :func:`jacobi_density` (its derivative through
    ``d/dx P_n^{(al,be)} = (n + al + be + 1)/2 P_{n-1}^{(al+1, be+1)}``), for ``v`` in the open interval.

    Raises:
        ValueError: as :func:`jacobi_density`, and ``v`` at an endpoint (where the score is infinite unless
            the parameter there is 1).
    """
    v = torch.as_tensor(v, dtype=torch.float64)
    if bool(((v <= 0) | (v >= 1)).any()):
        raise ValueError("v must lie in the open interval (0, 1) for the score")
    s, _, ds, dlog_w = _series(v, v0, t, a, b, speed, order, derivative=True)
    assert ds is not None and dlog_w is not None
    return dlog_w + ds / s



class JacobiScoreTable:
    r"""The score of the Jacobi transition density from a one-hot start (``v0 in {0, 1}``), precomputed once on
    a grid and interpolated: DDSM's approach (the paper precomputes order 1000 in float64).

    The table holds ``g = d/du log p_t(v | v0)`` in logit coordinates ``u = log(v / (1 - v))``, which equals
    ``v (1 - v) d/dv log p`` (the quantity DDSM's loss weights by) and stays bounded at the ends, on a grid
    ``log t`` uniform in ``[log t_min, log t_max]`` and ``u`` uniform in ``[-u_max, u_max]``; queries are
    bilinear in ``(log t, u)``, with ``u`` clamped to the grid (``u_max = 11.5`` is DDSM's ``v`` clamp
    ``1e-5``). Cells where the density is within 100 times the series' float64 rounding floor (the far tails at
    small ``t``, see the module docstring) carry the value of the nearest resolved cell along ``u``.

    Arguments:
        a, b: ``(k,)`` positive stick parameters (e.g. :func:`stick_parameters`). speed: ``s > 0``.
        t_min, t_max: time range (``0 < t_min < t_max``). num_t, num_u: grid sizes. u_max: logit range.
        order: series terms (see :func:`jacobi_density`).

    Attributes:
        table: ``(2, k, num_t, num_u)`` the scaled score (float64). density: the same shape, the density
            ``p_t(v | v0)`` on the grid, zero where it is not resolved (used by
            :class:`DirichletScoreMatching` to draw ``v``). log_t, u: the grid.

    Raises:
        ValueError: bad parameters or ranges.
    """

    def __init__(self, a: torch.Tensor, b: torch.Tensor, speed: float = 1.0, t_min: float = 0.01,
                 t_max: float = 1.0, num_t: int = 100, num_u: int = 401, u_max: float = 11.5,
                 order: int = 200) -> None:
        a = torch.as_tensor(a, dtype=torch.float64).reshape(-1)
        b = torch.as_tensor(b, dtype=torch.float64).reshape(-1)
        if a.shape != b.shape:
            raise ValueError(f"a and b must have the same length, got {tuple(a.shape)} and {tuple(b.shape)}")
        if not 0 < t_min < t_max:
            raise ValueError(f"need 0 < t_min < t_max, got t_min={t_min}, t_max={t_max}")
        if num_t < 2 or num_u < 2 or u_max <= 0:
            raise ValueError(f"need num_t >= 2, num_u >= 2, u_max > 0; got {num_t}, {num_u}, {u_max}")
        self.a, self.b, self.speed = a, b, float(speed)
        self.log_t = torch.linspace(math.log(t_min), math.log(t_max), num_t, dtype=torch.float64)
        self.u = torch.linspace(-u_max, u_max, num_u, dtype=torch.float64)
        v = torch.sigmoid(self.u)
        shape = (2, len(a), num_t, num_u)
        v0 = torch.tensor([0.0, 1.0], dtype=torch.float64).reshape(2, 1, 1, 1).expand(shape)
        t = self.log_t.exp().reshape(1, 1, -1, 1).expand(shape)
        vv = v.reshape(1, 1, 1, -1).expand(shape)
        s, log_w, ds, dlog_w = _series(vv, v0, t, a.reshape(1, -1, 1, 1), b.reshape(1, -1, 1, 1), self.speed,
                                       order, derivative=True)
        assert ds is not None and dlog_w is not None
        g = vv * (1 - vv) * (dlog_w + ds / s)
        density = torch.exp(log_w) * s
        floor = (-density).clamp(min=0).amax(-1, keepdim=True)                    # rounding floor per (v0, k, t)
        resolved = density > torch.maximum(100 * floor, torch.full_like(floor, 1e-12))
        # nearest resolved cell along u: forward fill then backward fill of the resolved values
        idx = torch.arange(num_u).expand(shape)
        fwd = torch.where(resolved, idx, torch.full_like(idx, -1)).cummax(-1).values
        bwd = torch.where(resolved, idx, torch.full_like(idx, num_u)).flip(-1).cummin(-1).values.flip(-1)
        use_fwd = (fwd >= 0) & ((bwd >= num_u) | (idx - fwd <= bwd - idx))
        nearest = torch.where(use_fwd, fwd, bwd).clamp(0, num_u - 1)
        self.table = torch.gather(g, -1, nearest)                                 # (2, k, num_t, num_u)
        self.resolved = resolved
        # the density on the grid (zero where unresolved), for forward sampling (DirichletScoreMatching)
        self.density = torch.where(resolved, density, torch.zeros_like(density))

    def scaled_score(self, v: torch.Tensor, v0: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        r"""``v (1 - v) d/dv log p_t(v | v0)`` interpolated from the table.

        Arguments:
            v: ``(..., k)`` sticks in ``[0, 1]``; v0: ``(..., k)`` starting sticks, each 0 or 1; t: times in
                ``[t_min, t_max]``, broadcastable against ``v`` (e.g. ``t[:, None]``).

        Returns:
            ``(..., k)`` in the dtype of ``v``.

        Raises:
            ValueError: ``v`` outside ``[0, 1]``, ``v0`` not in ``{0, 1}``, ``t`` outside the table's range,
                a last dimension other than ``k``.
        """
        k = len(self.a)
        if v.shape[-1] != k:
            raise ValueError(f"v must have last dimension {k} (the sticks), got shape {tuple(v.shape)}")
        if bool(((v < 0) | (v > 1) | torch.isnan(v)).any()):
            raise ValueError("v must lie in [0, 1]")
        if bool(((v0 != 0) & (v0 != 1)).any()):
            raise ValueError("v0 must be 0 or 1 (one-hot starts); the table covers no other start")
        t = torch.as_tensor(t, dtype=torch.float64, device=v.device)
        log_t = t.log()
        lo, hi = float(self.log_t[0]), float(self.log_t[-1])
        if bool(((log_t < lo - 1e-12) | (log_t > hi + 1e-12)).any()):
            raise ValueError(f"t must lie in [{math.exp(lo):.4g}, {math.exp(hi):.4g}] (the table's range), got "
                             f"[{float(t.min()):.4g}, {float(t.max()):.4g}]")
        if self.table.device != v.device:
            self.table = self.table.to(v.device)
        table = self.table
        num_t, num_u = table.shape[-2:]
        vd = v.to(torch.float64).clamp(1e-300, 1 - 1e-16)
        u = torch.log(vd) - torch.log1p(-vd)
        ft = ((log_t - lo) / (hi - lo) * (num_t - 1)).clamp(0, num_t - 1)
        fu = ((u - float(self.u[0])) / float(self.u[-1] - self.u[0]) * (num_u - 1)).clamp(0, num_u - 1)
        ft, fu = torch.broadcast_tensors(ft, fu)
        i0 = ft.floor().long().clamp(max=num_t - 2)
        j0 = fu.floor().long().clamp(max=num_u - 2)
        wt, wu = ft - i0, fu - j0
        stick = torch.arange(k, device=v.device).expand_as(i0)
        start = v0.to(torch.long).expand_as(i0)

        def at(i, j):
            return table[start, stick, i, j]

        out = ((1 - wt) * ((1 - wu) * at(i0, j0) + wu * at(i0, j0 + 1))
               + wt * ((1 - wu) * at(i0 + 1, j0) + wu * at(i0 + 1, j0 + 1)))
        return out.to(v.dtype)

    def score(self, v: torch.Tensor, v0: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        r"""``d/dv log p_t(v | v0)`` = :meth:`scaled_score` ``/ (v (1 - v))`` (``v`` in the open interval)."""
        return self.scaled_score(v, v0, t) / (v * (1 - v))


DIRICHLET_EPS = 1e-6
r"""Default clamp of :func:`dirichlet_reverse_sample`: every stick is kept in ``[eps, 1 - eps]`` after every step
(``1e-6`` is resolved in float64 and float32 alike: ``1 - 1e-6`` is ``0.999999`` to 7 digits in float32)."""


class JacobiReverseSDE(SDE):
    r"""The reverse-time Jacobi SDE of the sticks as a core SDE, to be run by ``sdekit.sdeint`` with **decreasing**
    times (the core flips time, so its solvers step forward in ``-t``).

    For the forward Ito SDE ``dv = f(v) dt + g(v) dW`` with ``f = s/2 [a (1 - v) - b v]`` and state-dependent
    ``g(v)^2 = s v (1 - v)``, the time reversal (Anderson 1982; the Fokker-Planck equation with the diffusion
    term written as ``1/2 d^2/dv^2 (g^2 p)``) is, in forward-time coefficients,

        dv = [f(v) - (g^2)'(v) - g(v)^2 d/dv log p_t(v)] dt + g(v) dW,   (g^2)' = s (1 - 2 v),

    run from ``t = T`` down to ``t_min``. This is DDSM's sampler step
    ``v += s [1/2 (a (1 - v) - b v) - (1 - 2 v) - v (1 - v) score] (-dt) + sqrt(dt s v (1 - v)) z``.
    The ``(g^2)'`` term is the one a constant-``g`` reverse SDE does not have.

    The coefficients are evaluated at the state clamped to ``[eps, 1 - eps]`` (the solver used by
    :func:`dirichlet_reverse_sample` also clamps the state after every step). Sticks where ``known`` is true
    have zero drift and diffusion, so they keep their initial value.

    **Time dilation** (DDSM's ``time_dilation``): with ``dilation = c`` the drift is multiplied by ``c`` and the
    diffusion by ``sqrt(c)``, so a step that moves the score's clock by ``dt`` moves the state as the undilated
    SDE would over ``c dt``: the reverse process spends ``c`` times longer at each noise level (it is the SDE in
    the clock ``tau = c t``, with the score still evaluated at ``t``). ``c = 1`` is the plain reverse SDE.

    Arguments:
        score: ``score(v, t) -> (*batch, K - 1)``, the score ``d/dv log p_t`` of the sticks (stick space, one
            entry per stick), called with ``v`` of the state's shape and a 0-dim tensor ``t``.
        K: number of categories (the sticks use :func:`stick_parameters`).
        speed: ``s > 0``. eps: the clamp, in ``(0, 0.5)``.
        known: optional bool tensor broadcastable against the state: sticks held fixed.
        dilation: ``c >= 1`` (see above; default 1).

    Raises:
        ValueError: ``K < 2``, ``speed <= 0``, ``eps`` outside ``(0, 0.5)``, ``dilation < 1``; at a call, a score of
            the wrong shape.
    """

    def __init__(self, score, K: int, speed: float = 1.0, eps: float = DIRICHLET_EPS,
                 known: torch.Tensor | None = None, dilation: float = 1.0) -> None:
        super().__init__(noise_type="diagonal", sde_type="ito")
        if not callable(score):
            raise TypeError(f"score must be a callable score(v, t), got {type(score).__name__}")
        K = _check_K(K)
        if not (isinstance(speed, (int, float)) and math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be a positive finite number, got {speed!r}")
        if not (isinstance(eps, (int, float)) and 0 < eps < 0.5):
            raise ValueError(f"eps must lie in (0, 0.5), got {eps!r}")
        if isinstance(dilation, bool) or not (isinstance(dilation, (int, float)) and math.isfinite(dilation)
                                               and dilation >= 1):
            raise ValueError(f"dilation must be a finite number >= 1, got {dilation!r}")
        self.score, self.K, self.speed, self.eps, self.known = score, K, float(speed), float(eps), known
        self.dilation = float(dilation)
        self.a, self.b = stick_parameters(K)

    def _free(self, out: torch.Tensor) -> torch.Tensor:
        if self.known is None:
            return out
        return torch.where(self.known.to(out.device), torch.zeros_like(out), out)

    def f(self, t, v: torch.Tensor) -> torch.Tensor:
        vc = v.clamp(self.eps, 1 - self.eps)
        t = torch.as_tensor(t, dtype=v.dtype, device=v.device)
        sc = self.score(vc, t)
        if not isinstance(sc, torch.Tensor) or sc.shape != v.shape:
            raise ValueError(f"score must return a tensor of the sticks' shape {tuple(v.shape)} (*batch, K - 1 = "
                             f"{self.K - 1}), got {tuple(sc.shape) if isinstance(sc, torch.Tensor) else type(sc)}")
        a, b = self.a.to(v), self.b.to(v)
        s = self.speed
        drift = 0.5 * s * (a * (1 - vc) - b * vc) - s * (1 - 2 * vc) - s * vc * (1 - vc) * sc.to(v.dtype)
        if self.dilation != 1.0:
            drift = self.dilation * drift
        return self._free(drift)

    def g(self, t, v: torch.Tensor) -> torch.Tensor:
        vc = v.clamp(self.eps, 1 - self.eps)
        return self._free(torch.sqrt(self.dilation * self.speed * vc * (1 - vc)))


class _ClampedEuler(Euler):
    """Euler-Maruyama followed by a clamp of the state to ``[eps, 1 - eps]`` (elementwise)."""

    name = "clamped_euler"

    def __init__(self, eps: float) -> None:
        self.eps = eps

    def step(self, problem, t0, t1, y0, dW, state):
        y1, state = super().step(problem, t0, t1, y0, dW, state)
        return y1.clamp(self.eps, 1 - self.eps), state


def one_hot_sticks(category: torch.Tensor, K: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    r"""The sticks of the one-hot vertex of ``category`` (``0 .. K - 1``): ``0`` before it, ``1`` at it, and ``0``
    after it (undefined there; the convention of :func:`inverse_stick_breaking`). The last category has all sticks
    ``0``.

    Returns:
        ``(*category.shape, K - 1)``.
    """
    K = _check_K(K)
    category = torch.as_tensor(category)
    if bool(((category < 0) | (category >= K)).any()):
        raise ValueError(f"category must lie in [0, {K - 1}], got values in [{int(category.min())}, "
                         f"{int(category.max())}]")
    idx = torch.arange(K - 1, device=category.device)
    return (idx == category.unsqueeze(-1)).to(dtype)


def dirichlet_reverse_sample(score, K: int, batch_shape: tuple[int, ...] | torch.Size, *, t_max: float = 10.0,
                             t_min: float = 0.01, steps: int = 200, speed: float = 1.0, eps: float = DIRICHLET_EPS,
                             known: torch.Tensor | None = None, seed: int | None = None,
                             dtype: torch.dtype = torch.float64, device: torch.device | str | None = None,
                             dilation: int = 1, denoise_last: bool = False) -> torch.Tensor:
    r"""Reverse-time sampling of Dirichlet diffusion (DDSM): sticks drawn from the stationary law
    ``Beta(1, K - k)`` at ``t_max`` (the flat Dirichlet), then :class:`JacobiReverseSDE` run by ``sdekit.sdeint``
    (Euler-Maruyama on a fixed grid geometric in ``t`` from ``t_max`` to ``t_min``, ``steps`` steps, through the
    core's time loop; the solver clamps every stick to ``[eps, 1 - eps]`` after every step, so states stay
    strictly inside the simplex). By default the last step is a full stochastic step; with ``denoise_last`` it is
    the drift (mean) step only, as DDSM's sampler ("the last step uses the mean").

    **Time dilation** (``dilation = c``, DDSM's ``time_dilation``): the grid has ``c * steps`` steps (``c *
    steps + 1`` times, geometric from ``t_max`` to ``t_min``) and every step moves the state by ``c`` times its
    length in the score's clock (:class:`JacobiReverseSDE` with ``dilation=c``): each state step is as long as
    an undilated step of ``steps``, and the process runs ``c`` times longer in total, which biases the samples
    towards regions of high density (the paper's 9x9 Sudoku: 94.7% valid at ``c = 1``, 100% at ``c = 8``).
    ``c = 1`` with ``denoise_last=False`` is the plain sampler (bit for bit the same draws).

    **Speed.** ``speed`` is DDSM's speed factor ``s``: it scales the drift and the diffusion of every stick
    while the score is evaluated at the unscaled time; a value other than the training speed is a heuristic
    (a faster process whose score is read off the clock of the trained one).

    **Conditional sampling.** ``known`` (an integer tensor of shape ``batch_shape``, ``-1`` for free entries,
    otherwise the known category) fixes entries: their sticks are set to the **exact one-hot** sticks
    (:func:`one_hot_sticks`) clamped to ``[eps, 1 - eps]`` and held there at every step (zero drift and
    diffusion: DDSM's mask clamp), not to samples of the forward process. The score sees the fixed entries at
    those values.

    Arguments:
        score: ``score(v, t) -> (*batch_shape, K - 1)`` in stick space (``d/dv log p_t`` per stick).
        K: number of categories. batch_shape: shape of the batch (e.g. ``(n,)`` or ``(n, cells)``).
        t_max, t_min: ``0 < t_min < t_max``. steps: number of steps (``>= 1``). speed: ``s``.
        eps: the clamp, in ``(0, 0.5)`` (default :data:`DIRICHLET_EPS`).
        known: optional known categories. seed: seeds the initial sticks and the Brownian increments.
        dilation: int ``c >= 1`` (see above). denoise_last: take the last step without noise.

    Returns:
        ``(*batch_shape, K)`` simplex points (stick-breaking of the final sticks).

    Raises:
        ValueError: bad ``K``, ``t_min``/``t_max``, ``steps``, ``speed``, ``eps`` or ``dilation``; ``known`` of
            the wrong shape or out of range; a score of the wrong shape.
    """
    from ..core.brownian import BrownianGrid
    from ..core.integrate import sdeint

    K = _check_K(K)
    if not (isinstance(eps, (int, float)) and 0 < eps < 0.5):
        raise ValueError(f"eps must lie in (0, 0.5), got {eps!r}")
    if not (isinstance(t_min, (int, float)) and isinstance(t_max, (int, float)) and 0 < t_min < t_max
            and math.isfinite(t_max)):
        raise ValueError(f"need 0 < t_min < t_max (finite), got t_min={t_min!r}, t_max={t_max!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if isinstance(dilation, bool) or not isinstance(dilation, int) or dilation < 1:
        raise ValueError(f"dilation must be an int >= 1 (the factor on the number of steps), got {dilation!r}")
    shape = tuple(batch_shape) + (K - 1,)
    a, b = stick_parameters(K, dtype=dtype, device=device)
    gen = torch.Generator(device="cpu")
    if seed is not None:
        gen.manual_seed(seed)
    else:
        gen.seed()
    u = torch.rand(shape, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
    v0 = 1 - u ** (1 / b)                                   # Beta(1, b) by inversion
    mask = None
    if known is not None:
        known = torch.as_tensor(known, device=v0.device)
        if tuple(known.shape) != tuple(batch_shape):
            raise ValueError(f"known must have shape batch_shape={tuple(batch_shape)}, got {tuple(known.shape)}")
        if bool(((known < -1) | (known >= K)).any()):
            raise ValueError(f"known must hold -1 (free) or a category in [0, {K - 1}]")
        is_known = known >= 0
        fixed = one_hot_sticks(known.clamp(min=0), K, dtype=dtype).to(v0.device)
        mask = is_known.unsqueeze(-1).expand(shape)
        v0 = torch.where(mask, fixed, v0)
    v0 = v0.clamp(eps, 1 - eps)
    sde = JacobiReverseSDE(score, K, speed=speed, eps=eps, known=mask, dilation=dilation)
    n = steps * dilation
    ts = torch.logspace(math.log10(t_max), math.log10(t_min), n + 1, dtype=torch.float64)
    ts[0], ts[-1] = t_max, t_min
    noisy = ts[:-1] if denoise_last else ts
    bm_seed = int(torch.randint(0, 2 ** 62, (1,), generator=gen))
    if len(noisy) > 1:
        grid = noisy.to(dtype)                              # the Brownian grid at the solver's (rounded) times
        bm = BrownianGrid(grid.to(torch.float64), shape, seed=bm_seed, dtype=dtype, device=device)
        v = sdeint(sde, v0, grid, method=_ClampedEuler(eps), dt=t_max - t_min, bm=bm)[-1]
    else:
        v = v0
    if denoise_last:
        t0 = torch.as_tensor(float(ts[-2]), dtype=dtype, device=v.device)
        v = (v + sde.f(t0, v) * float(ts[-1] - ts[-2])).clamp(eps, 1 - eps)
    return stick_breaking(v)


class DirichletScoreMatching:
    r"""DDSM's training loss (Avdeyev et al. 2023, section 3.2 and appendix; official ``sudoku/train_sudoku.py``):
    score matching of the sticks against the exact Jacobi transition score from one-hot data, with
    time-dependent normalisation and importance-sampled time,

    .. math:: L = E_{i \sim q}\, E_{x_0}\, E_{v \sim p_{t_i}(\cdot \mid v_0(x_0))}
              \Big[\frac{1}{w(t_i)^\gamma}\,\mathrm{mean}_{\text{cells, sticks}}\,
              v (1 - v) \big(\hat s_\theta(v, t_i) - \partial_v \log p_{t_i}(v \mid v_0)\big)^2\Big],
              \qquad q_i \propto w(t_i)^\gamma,

    with :math:`w(t) = E[v (1 - v) (\partial_v \log p_t(v \mid v_0))^2]` (the mean over the data's sticks of
    the expected squared target, normalised to mean 1 over the time grid). With ``gamma = 1`` (the default, as
    in the paper's description) the estimate is unbiased for the **uniform** average over the grid of the
    unnormalised loss, with the times where the loss is large drawn more often; ``gamma = 0`` draws times
    uniformly without weights.

    **Forward sampling.** Times are the grid of a :class:`JacobiScoreTable` (``num_t`` points geometric in
    ``[t_min, t_max]``; DDSM also trains on a fixed grid of 400 times). The noisy sticks are drawn from the
    **exact** transition density of that table (the Jacobi series in float64, not an SDE simulation): the
    density in logit coordinates ``u`` is integrated by the trapezoid rule on the ``u`` grid, inverted on
    ``levels`` equally spaced probability levels and interpolated linearly, so ``v`` is drawn by the inverse CDF
    (truncated to the grid's ``v in [sigmoid(-u_max), sigmoid(u_max)] = [1e-5, 1 - 1e-5]``, DDSM's clamp). The
    official code instead presamples ``1e5`` paths per time by Euler-Maruyama (200 substeps per tick) and
    differentiates the series at them; drawing from the series itself avoids the discretisation bias of the
    paths. The target score at the drawn ``v`` is the table's, interpolated along ``u`` at the grid time.
    Stick starts follow :func:`one_hot_sticks` (``1`` at the category, ``0`` elsewhere, also after it).

    **Weights.** ``w(t_i) = sum_k sum_{v0 in {0,1}} P(v0_k = v0) I(v0, k, t_i) / (K - 1)`` with
    ``I = int p_t(v | v0) v (1 - v) score^2 dv`` computed by the same quadrature on the table, and
    ``P(v0_k = 1) = pi_k`` for category probabilities ``pi`` (default uniform, as for Sudoku digits).

    Arguments:
        K: number of categories.
        table: a :class:`JacobiScoreTable` of ``K - 1`` sticks with :func:`stick_parameters` (built from the
            following arguments if ``None``: about 1 s for ``K = 4``, 15 s for ``K = 9`` on one core).
        speed, t_min, t_max, num_t, num_u, order: the table's settings when it is built here.
        category_probs: ``(K,)`` probabilities of the categories in the data (default uniform).
        importance: ``gamma >= 0`` (default 1).
        levels: probability levels of the inverse CDF (default 2049).

    Call: ``loss(model, x0, generator=None, model_kwargs=None)`` with ``x0: (batch, *cells)`` integer categories
    ``0 .. K - 1`` and ``model(v, t, **model_kwargs) -> (batch, *cells, K - 1)`` the stick score, where
    ``v: (batch, *cells, K - 1)`` (model dtype) and ``t: (batch,)``. Usable as ``loss_fn`` of
    :class:`sdekit.train.Trainer` (integer data are passed through unchanged).

    Attributes:
        times: ``(num_t,)`` float64 time grid. raw_weights: ``(num_t,)`` unnormalised ``w``. weights: ``w`` with
        mean 1. probs: the time-sampling probabilities ``q``.

    Raises:
        TypeError / ValueError: bad ``K``, ``importance``, ``levels``, ``category_probs`` (wrong shape,
            negative, or not summing to one), a table for another ``K``; at a call, non-integer or
            out-of-range ``x0``, a model output of the wrong shape.
    """

    def __init__(self, K: int, table: JacobiScoreTable | None = None, *, speed: float = 1.0, t_min: float = 0.01,
                 t_max: float = 5.0, num_t: int = 100, num_u: int = 401, order: int = 200,
                 category_probs: torch.Tensor | None = None, importance: float = 1.0, levels: int = 2049) -> None:
        K = _check_K(K)
        if isinstance(importance, bool) or not (isinstance(importance, (int, float)) and math.isfinite(importance)
                                                and importance >= 0):
            raise ValueError(f"importance (gamma) must be a finite number >= 0, got {importance!r}")
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 3:
            raise ValueError(f"levels must be an int >= 3, got {levels!r}")
        a, b = stick_parameters(K)
        if table is None:
            table = JacobiScoreTable(a, b, speed=speed, t_min=t_min, t_max=t_max, num_t=num_t, num_u=num_u,
                                     order=order)
        if not isinstance(table, JacobiScoreTable):
            raise TypeError(f"table must be a JacobiScoreTable, got {type(table).__name__}")
        if table.a.shape != a.shape or not (torch.equal(table.a, a) and torch.equal(table.b, b)):
            raise ValueError(f"table must hold the K - 1 = {K - 1} sticks of stick_parameters(K={K}), got a table of "
                             f"a={table.a.tolist()}, b={table.b.tolist()}")
        if category_probs is None:
            pi = torch.full((K,), 1.0 / K, dtype=torch.float64)
        else:
            pi = torch.as_tensor(category_probs, dtype=torch.float64)
            if pi.shape != (K,) or bool(torch.isnan(pi).any()) or bool((pi < 0).any()):
                raise ValueError(f"category_probs must be {K} non-negative probabilities, got {pi.tolist()}")
            if abs(float(pi.sum()) - 1) > 1e-6:
                raise ValueError(f"category_probs must sum to one, got sum {float(pi.sum()):.6g}")
        self.K, self.table, self.importance, self.category_probs = K, table, float(importance), pi
        self.times = table.log_t.exp()
        u = table.u
        du = float(u[1] - u[0])
        vg = torch.sigmoid(u)
        vv = vg * (1 - vg)
        q = table.density * vv                                                   # density in u: (2, k, T, U)
        cum = torch.cat([torch.zeros_like(q[..., :1]), torch.cumsum(0.5 * (q[..., 1:] + q[..., :-1]) * du, -1)],
                        -1)
        mass = cum[..., -1:]
        cdf = cum / mass
        # expected squared scaled target: int q g^2 / (v (1 - v)) du / mass
        integrand = q * table.table ** 2 / vv
        second = (0.5 * (integrand[..., 1:] + integrand[..., :-1]) * du).sum(-1) / mass[..., 0]   # (2, k, T)
        p1 = pi[:-1].reshape(-1, 1)                                              # P(v0_k = 1)
        self.raw_weights = ((1 - p1) * second[0] + p1 * second[1]).mean(0)      # (T,)
        self.weights = self.raw_weights / self.raw_weights.mean()
        pw = self.weights ** self.importance
        self.probs = pw / pw.sum()
        # inverse CDF on equally spaced levels, linear in u between the grid's CDF values
        r = torch.linspace(0, 1, levels, dtype=torch.float64).expand(*cdf.shape[:-1], levels).contiguous()
        # the first cell with cdf > r below the median and with cdf >= r above it (the same where the CDF rises;
        # at the levels 0 and 1 they give the ends of the support, not of the grid)
        cdf = cdf.contiguous()
        j = torch.where(r < 0.5, torch.searchsorted(cdf, r, right=True), torch.searchsorted(cdf, r))
        j = j.clamp(1, len(u) - 1)
        c0, c1 = torch.gather(cdf, -1, j - 1), torch.gather(cdf, -1, j)
        frac = ((r - c0) / (c1 - c0).clamp(min=1e-300)).clamp(0, 1)
        self.quantiles = u[0] + (j - 1 + frac) * du                              # (2, k, T, levels) in u

    def perturb(self, x0: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        r"""Draws the time index ``i ~ q``, the noisy sticks ``v ~ p_{t_i}(. | v0(x0))`` and the target.

        Arguments:
            x0: ``(batch, *cells)`` integer categories. generator: a CPU generator (seeded draws).

        Returns:
            ``(v, t, score, index)``: ``v: (batch, *cells, K - 1)`` float64 in ``[1e-5, 1 - 1e-5]``, ``t: (batch,)``
            float64 times, ``score: (batch, *cells, K - 1)`` the target ``d/dv log p_t(v | v0)`` (float64), and
            ``index: (batch,)`` the time indices.
        """
        if not isinstance(x0, torch.Tensor):
            raise TypeError(f"x0 must be a tensor of integer categories, got {type(x0).__name__}")
        if x0.dtype.is_floating_point or x0.is_complex() or x0.dtype == torch.bool:
            raise TypeError(f"x0 must hold integer categories 0 .. {self.K - 1}, got dtype {x0.dtype}")
        if x0.dim() < 1 or x0.shape[0] < 1:
            raise ValueError(f"x0 must have shape (batch, *cells) with batch >= 1, got {tuple(x0.shape)}")
        if bool(((x0 < 0) | (x0 >= self.K)).any()):
            raise ValueError(f"x0 must hold categories in 0 .. {self.K - 1}, got values in {int(x0.min())} .. "
                             f"{int(x0.max())}")
        batch = x0.shape[0]
        x0 = x0.cpu()
        index = torch.multinomial(self.probs, batch, replacement=True, generator=generator)
        start = one_hot_sticks(x0, self.K).long()                               # (batch, *cells, k)
        k = self.K - 1
        r = torch.rand(start.shape, generator=generator, dtype=torch.float64)
        stick = torch.arange(k).expand_as(start)
        ti = index.reshape(-1, *([1] * (start.dim() - 1))).expand_as(start)
        levels = self.quantiles.shape[-1]
        f = r * (levels - 1)
        m0 = f.floor().long().clamp(max=levels - 2)
        w = f - m0
        u = (1 - w) * self.quantiles[start, stick, ti, m0] + w * self.quantiles[start, stick, ti, m0 + 1]
        grid = self.table.u
        num_u = len(grid)
        fu = ((u - float(grid[0])) / float(grid[1] - grid[0])).clamp(0, num_u - 1)
        j0 = fu.floor().long().clamp(max=num_u - 2)
        wu = fu - j0
        tab = self.table.table
        g = (1 - wu) * tab[start, stick, ti, j0] + wu * tab[start, stick, ti, j0 + 1]
        v = torch.sigmoid(u)
        return v, self.times[index], g / (v * (1 - v)), index

    def __call__(self, model, x0: torch.Tensor, generator: torch.Generator | None = None,
                 model_kwargs: dict | None = None) -> torch.Tensor:
        device = x0.device if isinstance(x0, torch.Tensor) else None
        v, t, score, index = self.perturb(x0, generator)
        dtype = next((p.dtype for p in model.parameters()), torch.float32) if isinstance(model, torch.nn.Module) \
            else torch.float32
        vm, tm = v.to(device=device, dtype=dtype), t.to(device=device, dtype=dtype)
        pred = model(vm, tm, **(model_kwargs or {}))
        if not isinstance(pred, torch.Tensor) or pred.shape != vm.shape:
            got = tuple(pred.shape) if isinstance(pred, torch.Tensor) else type(pred).__name__
            raise ValueError(f"model must return the stick score of shape {tuple(vm.shape)} (batch, *cells, "
                             f"K - 1 = {self.K - 1}), got {got}")
        vv = (v * (1 - v)).to(pred)
        err = vv * (pred - score.to(pred)) ** 2
        per_sample = err.reshape(err.shape[0], -1).mean(-1)
        weight = (self.weights[index] ** -self.importance).to(pred)
        return (per_sample * weight).mean()

    def __repr__(self) -> str:
        return (f"DirichletScoreMatching(K={self.K}, t in [{float(self.times[0]):.3g}, {float(self.times[-1]):.3g}] "
                f"({len(self.times)} times), importance={self.importance})")
