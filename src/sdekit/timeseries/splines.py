"""Cubic control paths over irregular, NaN-holed time series (the neural CDE / stable neural SDE input).

A series is ``values: (*B, L, C)`` observed at ``times: (L,)`` (shared) or ``(*B, L)`` (per series),
strictly increasing, with ``NaN`` marking a missing observation. Every path is stored the way neural CDE
codes store it: one cubic per interval of the full grid,

    X(t) = a_k + b_k s + c_k s^2 + d_k s^3,   s = t - t_k,   t in [t_k, t_{k+1}],

so that evaluating ``X(t)`` and ``dX/dt`` at a solver time costs one ``searchsorted`` and a gather, and
everything is differentiable in the values (and in the times).

* :func:`natural_cubic_spline`: per series and channel, the natural cubic spline (``X'' = 0`` at both
  ends) through the *observed* points of that channel (Kidger et al., "Neural controlled differential
  equations for irregular time series", NeurIPS 2020). Before the first and after the last observation
  the channel holds its first / last observed value (those points become knots), so the path is C^2 on the
  whole grid. On complete data it is exactly ``scipy.interpolate.CubicSpline(bc_type="natural")``.
* :func:`hermite_cubic_spline`: missing values filled by linear interpolation in time (held constant
  before the first / after the last observation), then the C^1 cubic Hermite spline whose derivative at
  knot ``k`` is the backward difference ``(x_k - x_{k-1}) / (t_k - t_{k-1})`` (``k = 0``: the forward
  one); Morrill et al., "Neural CDEs for online prediction tasks" (2021). Causal: ``X`` on
  ``[t_k, t_{k+1}]`` depends on observations up to ``t_{k+1}`` only.
* :func:`control_path`: the input of the stable neural SDEs (Oh, Lim, Kim, ICLR 2024): the channels
  ``[t, x_1..x_C, n_1..n_C]`` (time, values, cumulative count of observations per channel), then one of
  the two splines.
"""

from __future__ import annotations

import torch

__all__ = ["CubicPath", "natural_cubic_spline", "hermite_cubic_spline", "control_path", "check_series"]


class CubicPath:
    """A batched piecewise-cubic path ``X: [t_0, t_{L-1}] -> R^C``; see the module docstring.

    Arguments:
        times: knots, ``(L,)`` shared by the batch or ``(*B, L)``, strictly increasing, ``L >= 2``.
        coeffs: ``(*B, L - 1, C, 4)``: ``(a, b, c, d)`` of each interval in ``s = t - t_k``.

    ``evaluate(t)`` and ``derivative(t)`` take a float or a 0-d tensor (every series at the same time, as
    inside an SDE solve) and return ``(*B, C)``. Outside ``[t_0, t_{L-1}]`` the first / last cubic is
    extended. :meth:`pack` / :meth:`unpack` store a path as one tensor ``(*B, L, 1 + 4 C)`` (times, then
    the coefficients; the last row's coefficients are zero), the form a data set of paths is kept in.
    """

    def __init__(self, times: torch.Tensor, coeffs: torch.Tensor) -> None:
        if not isinstance(times, torch.Tensor) or not isinstance(coeffs, torch.Tensor):
            raise TypeError(f"times and coeffs must be tensors, got {type(times).__name__}, {type(coeffs).__name__}")
        if coeffs.dim() < 3 or coeffs.shape[-1] != 4:
            raise ValueError(f"coeffs must have shape (*B, L - 1, C, 4), got {tuple(coeffs.shape)}")
        L = coeffs.shape[-3] + 1
        if times.shape[-1] != L or (times.dim() > 1 and times.shape[:-1] != coeffs.shape[:-3]):
            raise ValueError(f"times must have shape ({L},) or {(*coeffs.shape[:-3], L)} to match coeffs "
                             f"{tuple(coeffs.shape)}, got {tuple(times.shape)}")
        self.times = times
        self.coeffs = coeffs

    @property
    def channels(self) -> int:
        """Number of channels ``C``."""
        return self.coeffs.shape[-2]

    @property
    def batch_shape(self) -> torch.Size:
        """``B`` of ``(*B, L - 1, C, 4)``."""
        return self.coeffs.shape[:-3]

    def _piece(self, t) -> tuple[torch.Tensor, torch.Tensor]:
        """Coefficients ``(*B, C, 4)`` of the interval holding ``t`` and ``s = t - t_k`` (broadcastable)."""
        times = self.times
        t = torch.as_tensor(t, dtype=times.dtype, device=times.device)
        if t.dim() != 0:
            raise ValueError(f"t must be a float or a 0-d tensor, got shape {tuple(t.shape)}")
        last = times.shape[-1] - 2
        if times.dim() == 1:
            k = int(torch.searchsorted(times.detach(), t.detach().reshape(1), right=True)[0]) - 1
            k = min(max(k, 0), last)
            return self.coeffs[..., k, :, :], (t - times[k]).reshape(1)
        tt = t.detach().expand(*times.shape[:-1], 1).contiguous()
        k = (torch.searchsorted(times.detach().contiguous(), tt, right=True) - 1).clamp(0, last)  # (*B, 1)
        start = times.gather(-1, k)  # (*B, 1)
        index = k[..., None, None].expand(*k.shape[:-1], 1, *self.coeffs.shape[-2:])
        piece = self.coeffs.gather(-3, index).squeeze(-3)  # (*B, C, 4)
        return piece, t - start

    def evaluate(self, t) -> torch.Tensor:
        """``X(t)``: ``(*B, C)``."""
        p, s = self._piece(t)
        return p[..., 0] + s * (p[..., 1] + s * (p[..., 2] + s * p[..., 3]))

    def derivative(self, t) -> torch.Tensor:
        """``dX/dt (t)``: ``(*B, C)``."""
        p, s = self._piece(t)
        return p[..., 1] + s * (2 * p[..., 2] + 3 * s * p[..., 3])

    def pack(self) -> torch.Tensor:
        """One tensor ``(*B, L, 1 + 4 C)``: the times (broadcast to the batch), then ``coeffs`` flattened."""
        B, (L1, C) = self.batch_shape, self.coeffs.shape[-3:-1]
        flat = self.coeffs.reshape(*B, L1, 4 * C)
        flat = torch.cat([flat, flat.new_zeros(*B, 1, 4 * C)], -2)
        times = self.times.to(flat.dtype).expand(*B, L1 + 1)
        return torch.cat([times[..., None], flat], -1)

    @classmethod
    def unpack(cls, packed: torch.Tensor) -> CubicPath:
        """The inverse of :meth:`pack`."""
        if not isinstance(packed, torch.Tensor) or packed.dim() < 2 or (packed.shape[-1] - 1) % 4:
            got = tuple(packed.shape) if isinstance(packed, torch.Tensor) else type(packed).__name__
            raise ValueError(f"packed must be a tensor (*B, L, 1 + 4 C), got {got}")
        C = (packed.shape[-1] - 1) // 4
        coeffs = packed[..., :-1, 1:].reshape(*packed.shape[:-2], packed.shape[-2] - 1, C, 4)
        return cls(packed[..., 0], coeffs)


# --------------------------------------------------------------------------------------------------
# checks
def check_series(values: torch.Tensor, times: torch.Tensor | None = None, *, name: str = "values",
                 allow_nan: bool = True) -> torch.Tensor:
    """Check a batch of series and return its times, ``(L,)`` or ``(*B, L)``.

    Arguments:
        values: ``(*B, L, C)`` floating, ``NaN`` = missing (when ``allow_nan``); ``inf`` is refused.
        times: ``(L,)`` or ``(*B, L)``, strictly increasing and finite; ``None``: ``linspace(0, 1, L)``.

    Raises:
        TypeError: not a floating tensor. ValueError: fewer than 3 dimensions, ``L < 2``, times of another
            length or with NaN, times not strictly increasing (the first offending pair is named), ``NaN``
            when not allowed, ``inf`` anywhere, or a series / channel with every value missing.
    """
    if not isinstance(values, torch.Tensor) or not values.is_floating_point():
        got = f"tensor of dtype {values.dtype}" if isinstance(values, torch.Tensor) else type(values).__name__
        raise TypeError(f"{name} must be a floating tensor (*B, L, C) with NaN for missing values, got {got}")
    if values.dim() < 3:
        raise ValueError(f"{name} must have shape (*B, L, C) (batch, length, channels), got {tuple(values.shape)}")
    L = values.shape[-2]
    if L < 2:
        raise ValueError(f"{name} must hold at least 2 time points (shape (*B, L, C) with L >= 2), got L = {L}")
    if torch.isinf(values).any():
        raise ValueError(f"{name} contains inf; only NaN is a missing-value marker")
    nan = torch.isnan(values)
    if nan.any() and not allow_nan:
        first = tuple(int(i) for i in nan.nonzero()[0])
        raise ValueError(f"{name} contains NaN (first at index {first}) where missing values are not allowed")
    empty = nan.all(-2)  # (*B, C)
    if empty.any():
        where = tuple(int(i) for i in empty.nonzero()[0])
        raise ValueError(f"{name} has a series with every value missing (series, channel) = {where}: "
                         "a path needs at least one observation per channel; drop the series or fill the channel")
    if times is None:
        return torch.linspace(0, 1, L, dtype=values.dtype, device=values.device)
    if not isinstance(times, torch.Tensor):
        times = torch.as_tensor(times, dtype=values.dtype, device=values.device)
    if not times.is_floating_point():
        times = times.to(values.dtype)
    if times.shape != (L,) and times.shape != values.shape[:-1]:
        raise ValueError(f"times must have shape ({L},) or {tuple(values.shape[:-1])} to match {name} "
                         f"{tuple(values.shape)}, got {tuple(times.shape)}")
    if not torch.isfinite(times).all():
        raise ValueError("times must be finite (NaN is a marker for values, not for times)")
    steps = times[..., 1:] - times[..., :-1]
    bad = steps <= 0
    if bad.any():
        idx = tuple(int(i) for i in bad.nonzero()[0])
        k = idx[-1]
        at = idx[:-1]
        raise ValueError(f"times must be strictly increasing; got times{list(at) if at else ''}[{k + 1}] = "
                         f"{float(times[(*at, k + 1)]):g} <= times[{k}] = {float(times[(*at, k)]):g}")
    return times.to(values.dtype)


def _rows(values: torch.Tensor, times: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(*B, L, C)`` values and ``(L,)`` / ``(*B, L)`` times as rows ``(R, L)``, ``R = prod(B) * C``."""
    B, (L, C) = values.shape[:-2], values.shape[-2:]
    v = values.movedim(-1, -2).reshape(-1, L)
    t = times.expand(*B, L)[..., None, :].expand(*B, C, L).reshape(-1, L)
    return v, t


def _from_rows(coeffs: torch.Tensor, batch: torch.Size, C: int) -> torch.Tensor:
    """``(R, L - 1, 4)`` back to ``(*B, L - 1, C, 4)``."""
    L1 = coeffs.shape[-2]
    return coeffs.reshape(*batch, C, L1, 4).movedim(-3, -2)


def _fill_ends(v: torch.Tensor, observed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hold the first / last observed value of each row before / after it; those points become observed."""
    L = v.shape[-1]
    idx = torch.arange(L, device=v.device).expand_as(v)
    first = torch.where(observed, idx, L).amin(-1, keepdim=True)
    last = torch.where(observed, idx, -1).amax(-1, keepdim=True)
    v_first, v_last = v.gather(-1, first), v.gather(-1, last)
    v = torch.where(idx < first, v_first, torch.where(idx > last, v_last, v))
    return v, observed | (idx < first) | (idx > last)


def _linear_fill(v: torch.Tensor, t: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """Missing values by linear interpolation in time between the neighbouring observations of each row."""
    L = v.shape[-1]
    idx = torch.arange(L, device=v.device).expand_as(v)
    prev = torch.where(observed, idx, -1).cummax(-1).values.clamp(min=0)
    nxt = torch.where(observed, idx, L).flip(-1).cummin(-1).values.flip(-1).clamp(max=L - 1)
    tp, tn = t.gather(-1, prev), t.gather(-1, nxt)
    vp, vn = v.gather(-1, prev), v.gather(-1, nxt)
    gap = tn - tp
    w = torch.where(gap > 0, (t - tp) / torch.where(gap > 0, gap, torch.ones_like(gap)), torch.zeros_like(gap))
    return torch.where(observed, v, vp + w * (vn - vp))


# --------------------------------------------------------------------------------------------------
# natural cubic spline
def _thomas(lower: torch.Tensor, diag: torch.Tensor, upper: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """Solve tridiagonal systems ``(R, n)`` (no pivoting: the spline systems are diagonally dominant)."""
    n = diag.shape[-1]
    c_prime, d_prime = [upper[:, 0] / diag[:, 0]], [rhs[:, 0] / diag[:, 0]]
    for i in range(1, n):
        denom = diag[:, i] - lower[:, i] * c_prime[-1]
        c_prime.append(upper[:, i] / denom)
        d_prime.append((rhs[:, i] - lower[:, i] * d_prime[-1]) / denom)
    x = [d_prime[-1]]
    for i in range(n - 2, -1, -1):
        x.append(d_prime[i] - c_prime[i] * x[-1])
    return torch.stack(x[::-1], -1)


def _natural_rows(v: torch.Tensor, t: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """Coefficients ``(R, L - 1, 4)`` of the natural spline through the observed points of each row."""
    R, L = v.shape
    v, observed = _fill_ends(v, observed)
    # observed points first, in time order; padding gets finite, increasing dummy knots and identity rows
    order = torch.sort((~observed).to(torch.uint8), dim=-1, stable=True).indices
    n = observed.sum(-1, keepdim=True)  # (R, 1), >= 1
    pos = torch.arange(L, device=v.device).expand(R, L)
    valid = pos < n
    tc = t.gather(-1, order)
    t_last = tc.gather(-1, (n - 1).clamp(min=0))
    tc = torch.where(valid, tc, t_last + (pos - n + 1).to(t.dtype))
    yc = torch.where(valid, v.gather(-1, order), torch.zeros_like(v))
    h = tc[:, 1:] - tc[:, :-1]  # (R, L - 1), positive
    slope = (yc[:, 1:] - yc[:, :-1]) / h
    interior = (pos >= 1) & (pos <= n - 2)  # rows of the second-derivative system that are equations
    zero = torch.zeros(R, 1, dtype=v.dtype, device=v.device)
    h_left = torch.cat([zero, h], -1)  # h_{j-1}
    h_right = torch.cat([h, zero], -1)  # h_j
    s_left = torch.cat([zero, slope], -1)
    s_right = torch.cat([slope, zero], -1)
    one = torch.ones_like(v)
    lower = torch.where(interior, h_left, 0 * one)
    upper = torch.where(interior, h_right, 0 * one)
    diag = torch.where(interior, 2 * (h_left + h_right), one)
    rhs = torch.where(interior, 6 * (s_right - s_left), 0 * one)
    M = _thomas(lower, diag, upper, rhs)  # second derivatives at the compressed knots, (R, L)
    # the compressed piece j holding each full-grid interval [t_k, t_{k+1}]
    j = (torch.searchsorted(tc.detach().contiguous(), t[:, :-1].detach().contiguous(), right=True) - 1)
    j = torch.minimum(j.clamp(min=0), (n - 2).clamp(min=0))
    tj, tj1 = tc.gather(-1, j), tc.gather(-1, j + 1)
    yj, yj1 = yc.gather(-1, j), yc.gather(-1, j + 1)
    Mj, Mj1 = M.gather(-1, j), M.gather(-1, j + 1)
    hj = tj1 - tj
    x = t[:, :-1]
    p, q = tj1 - x, x - tj
    value = (Mj * p ** 3 + Mj1 * q ** 3) / (6 * hj) + (yj / hj - Mj * hj / 6) * p + (yj1 / hj - Mj1 * hj / 6) * q
    slope_x = (-Mj * p ** 2 + Mj1 * q ** 2) / (2 * hj) - (yj / hj - Mj * hj / 6) + (yj1 / hj - Mj1 * hj / 6)
    second = (Mj * p + Mj1 * q) / hj
    third = (Mj1 - Mj) / hj
    return torch.stack([value, slope_x, second / 2, third / 6], -1)


def natural_cubic_spline(values: torch.Tensor, times: torch.Tensor | None = None) -> CubicPath:
    """The natural cubic spline of each series and channel through its observed points.

    Arguments:
        values: ``(*B, L, C)``, ``NaN`` = missing; every (series, channel) needs one observation.
        times: ``(L,)`` or ``(*B, L)`` strictly increasing (default ``linspace(0, 1, L)``).

    Returns:
        A :class:`CubicPath` over the full grid. Per channel, with observed knots
        ``tau_0 < ... < tau_{n-1}`` (after holding the first / last observation constant towards the ends)
        and ``h_j = tau_{j+1} - tau_j``, the second derivatives ``M_j`` solve
        ``h_{j-1} M_{j-1} + 2 (h_{j-1} + h_j) M_j + h_j M_{j+1} = 6 (slope_j - slope_{j-1})``,
        ``M_0 = M_{n-1} = 0`` (a batched Thomas solve), and each piece is re-expanded around the grid
        knots it covers. Differentiable in ``values`` and ``times``.

    Raises:
        TypeError / ValueError: see :func:`check_series`.
    """
    times = check_series(values, times)
    v, t = _rows(values, times)
    observed = ~torch.isnan(v)
    v = torch.where(observed, v, torch.zeros_like(v))
    coeffs = _natural_rows(v, t, observed)
    return CubicPath(times, _from_rows(coeffs, values.shape[:-2], values.shape[-1]))


def hermite_cubic_spline(values: torch.Tensor, times: torch.Tensor | None = None) -> CubicPath:
    """The C^1 cubic Hermite spline with backward-difference derivatives (causal).

    Missing values are first filled by linear interpolation in time (constant before the first and after
    the last observation). With ``m_k = (x_{k+1} - x_k) / h_k`` the piece on ``[t_k, t_{k+1}]`` has
    derivative ``D0 = m_{k-1}`` (``m_0`` for ``k = 0``) at ``t_k`` and ``m_k`` at ``t_{k+1}``:
    ``X = x_k + D0 s + 2 (m_k - D0) s^2 / h_k + (D0 - m_k) s^3 / h_k^2``.

    Arguments and raises as :func:`natural_cubic_spline`.
    """
    times = check_series(values, times)
    v, t = _rows(values, times)
    observed = ~torch.isnan(v)
    v = torch.where(observed, v, torch.zeros_like(v))
    v, observed = _fill_ends(v, observed)
    v = _linear_fill(v, t, observed)
    h = t[:, 1:] - t[:, :-1]
    m = (v[:, 1:] - v[:, :-1]) / h
    d0 = torch.cat([m[:, :1], m[:, :-1]], -1)
    coeffs = torch.stack([v[:, :-1], d0, 2 * (m - d0) / h, (d0 - m) / h ** 2], -1)
    return CubicPath(times, _from_rows(coeffs, values.shape[:-2], values.shape[-1]))


_KINDS = {"natural": natural_cubic_spline, "hermite": hermite_cubic_spline}
_OBSERVED = ("cumulative", "mask", None)


def control_path(values: torch.Tensor, times: torch.Tensor | None = None, *, kind: str = "natural",
                 time_channel: bool = True, observed: str | None = "cumulative") -> CubicPath:
    """The control path of an irregular series: ``[t, x_1..x_C, n_1..n_C]`` interpolated by a cubic spline.

    Arguments:
        values: ``(*B, L, C)`` with ``NaN`` = missing.
        times: ``(L,)`` or ``(*B, L)`` strictly increasing (default ``linspace(0, 1, L)``).
        kind: ``"natural"`` (:func:`natural_cubic_spline`) or ``"hermite"`` (:func:`hermite_cubic_spline`).
        time_channel: prepend time as a channel (so the path's increments see the gaps between observations).
        observed: ``"cumulative"``: per channel the number of observations up to each time (Kidger et al.
            2020's observational intensity); ``"mask"``: the 0/1 mask itself; ``None``: no such channels.

    Returns:
        A :class:`CubicPath` with ``C_out = time_channel + C + (C if observed else 0)`` channels.
    """
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {tuple(_KINDS)}, got {kind!r}")
    if observed not in _OBSERVED:
        raise ValueError(f"observed must be one of {_OBSERVED}, got {observed!r}")
    times = check_series(values, times)
    parts = []
    if time_channel:
        parts.append(times.expand(*values.shape[:-1])[..., None])
    parts.append(values)
    mask = (~torch.isnan(values)).to(values.dtype)
    if observed == "cumulative":
        parts.append(mask.cumsum(-2))
    elif observed == "mask":
        parts.append(mask)
    return _KINDS[kind](torch.cat(parts, -1), times)
