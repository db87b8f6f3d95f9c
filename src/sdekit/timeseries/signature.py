"""Path signatures, the signature kernel and the signature MMD, in torch (batched, differentiable).

For a path ``x: [0, T] -> R^d`` the signature is the sequence of iterated integrals
``S(x) = (1, S^1, S^2, ...)`` with ``S^k = int_{t_1 < ... < t_k} dx_{t_1} (x) ... (x) dx_{t_k}`` in
``(R^d)^{(x) k}``. A series of ``L`` points is read as the piecewise-linear path through them; each linear
piece with increment ``D`` has signature ``exp(D) = (1, D, D^2 / 2!, ...)`` and pieces combine by
Chen's identity ``S(x * y) = S(x) (x) S(y)`` (Lyons, Caruana, Lévy, "Differential Equations Driven by
Rough Paths", Springer 2007). :func:`sdekit.timeseries.signature` truncates at ``depth``, multiplies runs of
pieces out by Horner's rule (all runs at once) and combines the runs by a balanced tree of Chen products.

The signature kernel ``k(x, y) = <S(x), S(y)>`` (all levels) solves the Goursat PDE
``d^2 k / ds dt = <dx_s, dy_t> k`` with ``k(0, .) = k(., 0) = 1`` (Salvi, Cass, Foster, Lyons, Yang,
"The Signature Kernel is the Solution of a Goursat PDE", SIAM J. Math. Data Sci. 2021).
:func:`sdekit.timeseries.signature_kernel` solves it by that paper's second-order explicit scheme on the grid of the two
series refined ``2^dyadic_order`` times, sweeping anti-diagonals so each sweep is one batched tensor
operation. A static kernel ``kappa`` on points (``"linear"``: ``<a, b>``; ``"rbf"``:
``exp(-|a - b|^2 / (2 sigma^2))``) enters through ``kappa(x_{i+1}, y_{j+1}) - kappa(x_{i+1}, y_j) -
kappa(x_i, y_{j+1}) + kappa(x_i, y_j)``, as in that paper.

:func:`sdekit.timeseries.signature_mmd` is the maximum mean discrepancy between two samples of paths under either
kernel: the PDE signature kernel, or the linear kernel on signatures truncated at ``depth``. The truncated one with
``unbiased=False`` is ``|mean S(x) - mean S(y)|^2``, the square of the generator loss of Min, Hu, Ichiba,
"Directed Chain Generative Adversarial Networks", ICML 2023 (their code: depth 8 with a basepoint on
time-augmented paths). The unbiased estimator (Gretton et al., "A Kernel Two-Sample Test", JMLR 2012)
leaves out the ``i = j`` terms.
"""

from __future__ import annotations

import math

import torch

__all__ = ["signature", "signature_channels", "signature_kernel", "signature_kernel_gram", "signature_mmd",
           "time_augment"]

_STATIC_KERNELS = ("linear", "rbf")


def _check_paths(path: torch.Tensor, name: str, min_dim: int = 2) -> None:
    if not isinstance(path, torch.Tensor) or not path.is_floating_point():
        got = f"tensor of dtype {path.dtype}" if isinstance(path, torch.Tensor) else type(path).__name__
        raise TypeError(f"{name} must be a floating tensor (*B, L, d), got {got}")
    if path.dim() < min_dim:
        raise ValueError(f"{name} must have shape (*B, L, d) with at least {min_dim} dimensions, "
                         f"got {tuple(path.shape)}")
    if path.shape[-2] < 2 or path.shape[-1] < 1:
        raise ValueError(f"{name} must hold at least 2 points of at least 1 channel (L >= 2, d >= 1), "
                         f"got shape {tuple(path.shape)}")
    if not bool(torch.isfinite(path).all()):
        raise ValueError(f"{name} contains NaN or inf; fill missing values first (e.g. by interpolation)")


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return value


def signature_channels(channels: int, depth: int) -> int:
    """Number of signature terms of levels ``1..depth`` of a ``channels``-dimensional path:
    ``sum_k channels^k``."""
    _check_int("channels", channels, 1)
    _check_int("depth", depth, 1)
    return sum(channels**k for k in range(1, depth + 1))


def time_augment(path: torch.Tensor, ts: torch.Tensor | None = None) -> torch.Tensor:
    """Prepend the time channel: ``(*B, L, d) -> (*B, L, 1 + d)``.

    Arguments:
        path: ``(*B, L, d)`` values.
        ts: ``(L,)`` strictly increasing times (default ``linspace(0, 1, L)``).

    Raises:
        ValueError: ``ts`` of another length or not strictly increasing.
    """
    _check_paths(path, "path")
    L = path.shape[-2]
    if ts is None:
        ts = torch.linspace(0, 1, L, dtype=path.dtype, device=path.device)
    ts = torch.as_tensor(ts, dtype=path.dtype, device=path.device)
    if ts.shape != (L,):
        raise ValueError(f"ts must have shape ({L},) to match path {tuple(path.shape)}, got {tuple(ts.shape)}")
    steps = ts[1:] - ts[:-1]
    if not bool((steps > 0).all()):
        k = int((steps <= 0).nonzero()[0])
        raise ValueError(f"ts must be strictly increasing; got ts[{k + 1}] = {float(ts[k + 1]):g} <= "
                         f"ts[{k}] = {float(ts[k]):g}")
    t = ts.reshape(L, 1).expand(*path.shape[:-1], 1)
    return torch.cat([t, path], dim=-1)


def _outer(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Flattened tensor product of ``(..., p)`` and ``(..., q)``: ``(..., p q)``."""
    return (a.unsqueeze(-1) * b.unsqueeze(-2)).flatten(-2)


def _exp_levels(inc: torch.Tensor, depth: int) -> list[torch.Tensor]:
    """Levels ``1..depth`` of ``exp(inc)``: ``inc^{(x) k} / k!``, each ``(..., d^k)``."""
    levels = [inc]
    for k in range(2, depth + 1):
        levels.append(_outer(levels[-1], inc) / k)
    return levels


def _chen(a: list[torch.Tensor], b: list[torch.Tensor]) -> list[torch.Tensor]:
    """Truncated tensor product ``(1 + a) (x) (1 + b)`` without the level-0 term."""
    out = []
    for k in range(len(a)):
        term = a[k] + b[k]
        for i in range(k):  # a level i + 1 times b level k - i
            term = term + _outer(a[i], b[k - 1 - i])
        out.append(term)
    return out


def _times_exp(s: list[torch.Tensor], inc: torch.Tensor) -> list[torch.Tensor]:
    """``s (x) exp(inc)`` truncated at ``len(s)``, level ``k`` by Horner's rule:
    ``(((inc / k + s_1) inc / (k - 1) + s_2) ... + s_{k-1}) inc + s_k``."""
    out = []
    for k in range(1, len(s) + 1):
        t = inc / k
        for i in range(1, k):
            t = _outer(t + s[i - 1], inc / (k - i))
        out.append(t + s[k - 1])
    return out


def signature(path: torch.Tensor, depth: int, *, basepoint: bool = False, scalar_term: bool = False,
              chunk: int = 8) -> torch.Tensor:
    """Truncated signature of piecewise-linear paths: ``(*B, L, d) -> (*B, sum_{k<=depth} d^k)``.

    Levels are concatenated in order ``S^1, S^2, ...``; within level ``k`` the word ``(i_1, ..., i_k)`` sits
    at ``sum_j i_j d^{k-j}`` (the order of iisignature, signatory and pysiglib). The ``L - 1`` pieces are cut
    into runs of ``chunk``; each run is multiplied out piece by piece (Horner's rule, all runs at once) and
    the runs are combined by a balanced tree of Chen products.

    Arguments:
        path: ``(*B, L, d)``, finite.
        depth: truncation level (>= 1).
        basepoint: start the path at the origin (prepend a zero point), so the signature sees ``x_0``.
        scalar_term: prepend the level-0 term 1.
        chunk: pieces per run (a speed setting; the result does not depend on it beyond rounding).

    Raises:
        TypeError / ValueError: a non-floating tensor, fewer than 2 points, NaN or inf, ``depth < 1``.
    """
    _check_paths(path, "path")
    _check_int("depth", depth, 1)
    _check_int("chunk", chunk, 1)
    if basepoint:
        path = torch.cat([torch.zeros_like(path[..., :1, :]), path], dim=-2)
    inc = path[..., 1:, :] - path[..., :-1, :]  # (*B, n, d)
    n = inc.shape[-2]
    chunk = min(chunk, n)
    pad = (-n) % chunk  # zero increments: exp(0) = 1
    if pad:
        inc = torch.cat([inc, inc.new_zeros(*inc.shape[:-2], pad, inc.shape[-1])], dim=-2)
    inc = inc.unflatten(-2, (-1, chunk))  # (*B, runs, chunk, d)
    pieces = _exp_levels(inc[..., 0, :], depth)  # each (*B, runs, d^k)
    for j in range(1, chunk):
        pieces = _times_exp(pieces, inc[..., j, :])
    while pieces[0].shape[-2] > 1:
        runs = pieces[0].shape[-2]
        even = runs - runs % 2
        merged = _chen([p[..., 0:even:2, :] for p in pieces], [p[..., 1:even:2, :] for p in pieces])
        if runs % 2:
            merged = [torch.cat([m, p[..., -1:, :]], dim=-2) for m, p in zip(merged, pieces)]
        pieces = merged
    out = torch.cat([p.squeeze(-2) for p in pieces], dim=-1)
    if scalar_term:
        out = torch.cat([torch.ones_like(out[..., :1]), out], dim=-1)
    return out


def _check_static(static_kernel: str, sigma: float) -> None:
    if static_kernel not in _STATIC_KERNELS:
        raise ValueError(f"static_kernel must be one of {_STATIC_KERNELS}, got {static_kernel!r}")
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma must be a positive finite number, got {sigma!r}")


def _increments(x: torch.Tensor, y: torch.Tensor, static_kernel: str, sigma: float) -> torch.Tensor:
    """Second differences of the static kernel on the grid: ``(*B, Lx - 1, Ly - 1)``."""
    if static_kernel == "linear":
        dx = x[..., 1:, :] - x[..., :-1, :]
        dy = y[..., 1:, :] - y[..., :-1, :]
        return dx @ dy.transpose(-1, -2)
    sq = (x.unsqueeze(-2) - y.unsqueeze(-3)).square().sum(-1)  # (*B, Lx, Ly)
    k = torch.exp(-sq / (2 * sigma**2))
    return k[..., 1:, 1:] - k[..., 1:, :-1] - k[..., :-1, 1:] + k[..., :-1, :-1]


def _goursat(inc: torch.Tensor, dyadic_order: int) -> torch.Tensor:
    """Solve the Goursat PDE on the grid of ``inc: (*B, n, m)`` refined ``2^dyadic_order`` times; ``k(end, end)``.

    Salvi et al. (2021), eq. (3.5): ``k[i+1, j+1] = (k[i+1, j] + k[i, j+1]) (1 + inc / 2 + inc^2 / 12)
    - k[i, j] (1 - inc^2 / 12)`` with ``inc`` the refined cell's increment ``inc / 4^dyadic_order``.
    Anti-diagonal ``s = i + j`` holds ``k[i, s - i]`` at position ``i = 0..n``; entries with ``s - i`` outside
    ``0..m`` are never read by a valid cell.
    """
    if dyadic_order:
        r = 2**dyadic_order
        inc = inc.repeat_interleave(r, dim=-2).repeat_interleave(r, dim=-1) / (r * r)
    n, m = inc.shape[-2], inc.shape[-1]
    a = 1 + inc / 2 + inc.square() / 12  # (*B, n, m)
    b = 1 - inc.square() / 12
    batch = inc.shape[:-2]
    ones = torch.ones(*batch, n + 1, dtype=inc.dtype, device=inc.device)
    rows = torch.arange(n + 1, device=inc.device)
    prev2, prev = ones, ones  # anti-diagonals s - 2 and s - 1 (s = 0, 1 are all boundary)
    for s in range(2, n + m + 1):
        i = rows[1:]  # cells (i, s - i) for i = 1..n
        j = s - i
        jc = (j - 1).clamp(0, m - 1)
        ic = i - 1
        a_s = a[..., ic, jc]  # (*B, n)
        b_s = b[..., ic, jc]
        inner = (prev[..., 1:] + prev[..., :-1]) * a_s - prev2[..., :-1] * b_s
        valid = (j >= 1) & (j <= m)
        boundary = j == 0  # k[s, 0] = 1
        inner = torch.where(valid, inner, torch.where(boundary, torch.ones_like(inner), prev[..., 1:]))
        cur = torch.cat([ones[..., :1], inner], dim=-1)
        prev2, prev = prev, cur
    return prev[..., n]


def signature_kernel(x: torch.Tensor, y: torch.Tensor, *, dyadic_order: int = 0, static_kernel: str = "linear",
                     sigma: float = 1.0) -> torch.Tensor:
    """Signature kernel ``k(x, y) = <S(x), S(y)>`` of paired paths by the Goursat PDE: ``(*B,)``.

    Arguments:
        x: ``(*B, Lx, d)``; y: ``(*B, Ly, d)`` (batch shapes broadcast).
        dyadic_order: refine the PDE grid ``2^dyadic_order`` times per piece (the scheme's error falls as
            the grid is refined; 0 is exact to second order in the piece increments).
        static_kernel: ``"linear"`` (the signature kernel proper) or ``"rbf"`` with bandwidth ``sigma``.

    Raises:
        TypeError / ValueError: non-floating or non-finite paths, other channel counts, ``dyadic_order < 0``,
            an unknown static kernel or a non-positive ``sigma``.
    """
    _check_paths(x, "x")
    _check_paths(y, "y")
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"x and y must have the same number of channels, got {x.shape[-1]} and {y.shape[-1]}")
    _check_int("dyadic_order", dyadic_order, 0)
    _check_static(static_kernel, sigma)
    return _goursat(_increments(x, y, static_kernel, sigma), dyadic_order)


def signature_kernel_gram(x: torch.Tensor, y: torch.Tensor, *, dyadic_order: int = 0,
                          static_kernel: str = "linear", sigma: float = 1.0) -> torch.Tensor:
    """Gram matrix ``K[i, j] = k(x_i, y_j)`` of two batches ``(Bx, Lx, d)`` and ``(By, Ly, d)``: ``(Bx, By)``.

    Same arguments as :func:`sdekit.timeseries.signature_kernel`.
    """
    _check_paths(x, "x", 3)
    _check_paths(y, "y", 3)
    if x.dim() != 3 or y.dim() != 3:
        raise ValueError(f"x and y must be batches (B, L, d), got shapes {tuple(x.shape)} and {tuple(y.shape)}")
    return signature_kernel(x.unsqueeze(1), y.unsqueeze(0), dyadic_order=dyadic_order,
                            static_kernel=static_kernel, sigma=sigma)


def _mmd_from_gram(kxx: torch.Tensor, kyy: torch.Tensor, kxy: torch.Tensor, unbiased: bool) -> torch.Tensor:
    m, n = kxx.shape[0], kyy.shape[0]
    if not unbiased:
        return kxx.mean() + kyy.mean() - 2 * kxy.mean()
    xx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    yy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return xx + yy - 2 * kxy.mean()


def signature_mmd(x: torch.Tensor, y: torch.Tensor, *, depth: int | None = None, dyadic_order: int = 0,
                  static_kernel: str = "linear", sigma: float = 1.0, basepoint: bool = False,
                  unbiased: bool = True) -> torch.Tensor:
    """Squared MMD between the laws of two samples of paths ``(Bx, Lx, d)`` and ``(By, Ly, d)``: a 0-d tensor.

    ``MMD^2 = E k(x, x') + E k(y, y') - 2 E k(x, y)``; the unbiased estimator leaves out ``i = j`` in the first
    two means (it can be negative), the biased one keeps them (then it is ``|mean phi(x) - mean phi(y)|^2``
    for the feature map ``phi``).

    Arguments:
        x, y: the two samples (``Bx, By >= 2`` for ``unbiased``); lengths may differ, channels may not.
        depth: ``None``: the PDE signature kernel (:func:`sdekit.timeseries.signature_kernel`, with
            ``dyadic_order``, ``static_kernel`` and ``sigma``); an int: the linear kernel on signatures
            truncated at ``depth`` (:func:`sdekit.timeseries.signature`), computed from the features in
            ``O(B)`` rather than ``O(B^2)`` kernel evaluations.
        basepoint: prepend the origin to every path (both kernels).
        unbiased: the unbiased U-statistic (default) or the biased V-statistic.

    Raises:
        TypeError / ValueError: as :func:`sdekit.timeseries.signature_kernel`, and fewer than 2 paths in a
            sample for the unbiased estimator.
    """
    _check_paths(x, "x", 3)
    _check_paths(y, "y", 3)
    if x.dim() != 3 or y.dim() != 3:
        raise ValueError(f"x and y must be batches (B, L, d), got shapes {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"x and y must have the same number of channels, got {x.shape[-1]} and {y.shape[-1]}")
    if unbiased and (x.shape[0] < 2 or y.shape[0] < 2):
        raise ValueError(f"the unbiased MMD needs at least 2 paths per sample, got {x.shape[0]} and {y.shape[0]}")
    if basepoint:
        x = torch.cat([torch.zeros_like(x[:, :1]), x], dim=1)
        y = torch.cat([torch.zeros_like(y[:, :1]), y], dim=1)
    if depth is None:
        kw = {"dyadic_order": dyadic_order, "static_kernel": static_kernel, "sigma": sigma}
        return _mmd_from_gram(signature_kernel_gram(x, x, **kw), signature_kernel_gram(y, y, **kw),
                              signature_kernel_gram(x, y, **kw), unbiased)
    _check_int("depth", depth, 1)
    sx, sy = signature(x, depth), signature(y, depth)
    m, n = sx.shape[0], sy.shape[0]
    mx, my = sx.mean(0), sy.mean(0)
    biased = (mx - my).square().sum()
    if not unbiased:
        return biased
    # sum_{i != j} <s_i, s_j> = |sum s|^2 - sum |s_i|^2; the level-0 terms (1) cancel in the MMD.
    xx = (sx.sum(0).square().sum() - sx.square().sum()) / (m * (m - 1))
    yy = (sy.sum(0).square().sum() - sy.square().sum()) / (n * (n - 1))
    return xx + yy - 2 * (mx * my).sum()
