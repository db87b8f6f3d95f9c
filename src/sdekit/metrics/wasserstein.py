"""Wasserstein-2 distances between samples: exact in one dimension, sliced in many."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["wasserstein_1d", "sliced_wasserstein", "random_directions"]


def _as_samples(name: str, x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a tensor of samples (n, *event), got {type(x).__name__}")
    if x.dim() < 1 or x.shape[0] < 1:
        raise ValueError(f"{name} must hold at least one sample along dim 0, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.double()
    return x


def _sorted_rows(a: torch.Tensor) -> torch.Tensor:
    """Sort every row of ``(k, n)``. Without gradients on the CPU numpy's sort is used: torch's CPU sort
    is an order of magnitude slower for the (projections x samples) shapes met here."""
    if a.device.type == "cpu" and not (a.requires_grad and torch.is_grad_enabled()):
        return torch.from_numpy(np.sort(a.detach().numpy(), axis=1))
    return torch.sort(a, dim=1).values


def wasserstein_1d(x: torch.Tensor, y: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Exact ``W_p`` between the empirical measures of 1-D samples, batched over columns.

    In one dimension the optimal coupling matches quantiles:
    ``W_p^p = int_0^1 |F^{-1}(u) - G^{-1}(u)|^p du``. For equal sizes this is the mean of
    ``|x_(i) - y_(i)|^p`` over sorted samples; otherwise the integral is summed exactly over the
    merged breakpoints ``{i/n} u {j/m}``, where both quantile functions are constant.

    Arguments:
        x: ``(n,)`` or ``(n, k)`` samples (``k`` independent 1-D problems).
        y: ``(m,)`` or ``(m, k)`` samples.
        p: the order, ``p >= 1``.

    Returns:
        ``W_p`` in float64: a 0-d tensor, or ``(k,)`` for 2-D inputs.

    Raises:
        ValueError: mismatched column counts or ``p < 1``.
    """
    x = _as_samples("x", x)
    y = _as_samples("y", y)
    if not p >= 1:
        raise ValueError(f"p must be >= 1, got {p}")
    if x.dim() != y.dim() or x.dim() > 2 or x.shape[1:] != y.shape[1:]:
        raise ValueError(
            f"x and y must both be (n,) or (n, k) with the same k; got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    squeeze = x.dim() == 1
    if squeeze:
        x, y = x[:, None], y[:, None]
    dtype = torch.float64
    xs = _sorted_rows(x.to(dtype).T)
    ys = _sorted_rows(y.to(device=xs.device, dtype=dtype).T)
    n, m = xs.shape[1], ys.shape[1]
    if n == m:
        cost = (xs - ys).abs().pow(p).mean(dim=1)
    else:
        u = torch.cat([torch.arange(1, n + 1, dtype=torch.float64) / n,
                       torch.arange(1, m + 1, dtype=torch.float64) / m])
        u = torch.sort(u).values.to(xs.device)
        widths = torch.diff(u, prepend=u.new_zeros(1))
        mid = u - widths / 2
        ix = torch.clamp(torch.floor(mid * n).long(), max=n - 1)
        iy = torch.clamp(torch.floor(mid * m).long(), max=m - 1)
        cost = ((xs[:, ix] - ys[:, iy]).abs().pow(p) * widths.to(dtype)[None, :]).sum(dim=1)
    w = cost.pow(1.0 / p)
    return w[0] if squeeze else w


def random_directions(d: int, k: int, generator: torch.Generator | None = None, *,
                      dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> torch.Tensor:
    """``k`` directions uniform on the unit sphere in ``R^d`` (normalised Gaussians), ``(d, k)``."""
    theta = torch.randn(d, k, generator=generator, dtype=dtype, device=device)
    return theta / theta.norm(dim=0, keepdim=True)


def sliced_wasserstein(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    n_projections: int = 512,
    seed: int | None = 0,
    generator: torch.Generator | None = None,
    p: float = 2.0,
) -> torch.Tensor:
    """Sliced Wasserstein distance ``SW_p(x, y) = (E_theta W_p^p(<theta, x>, <theta, y>))^(1/p)``.

    The expectation over directions ``theta`` uniform on the sphere is a Monte Carlo mean over
    ``n_projections`` seeded directions, so the same call gives the same number every time
    (Rabin et al. 2011; Bonneel et al. 2015). Every 1-D term is exact (:func:`wasserstein_1d`).
    Samples are flattened to ``(n, d)`` and compared in float64.

    Arguments:
        x: ``(n, *event)`` samples.
        y: ``(m, *event)`` samples with the same event shape.
        n_projections: number of random directions.
        seed: seed of the directions (used when ``generator`` is ``None``); ``None`` uses torch's
            global generator.
        generator: an explicit generator for the directions (CPU).
        p: the order.

    Returns:
        A 0-d float64 tensor.

    Raises:
        ValueError: event shapes differ, ``n_projections < 1``.
    """
    x = _as_samples("x", x)
    y = _as_samples("y", y)
    if x.shape[1:] != y.shape[1:]:
        raise ValueError(f"x and y must share their event shape; got {tuple(x.shape)} and {tuple(y.shape)}")
    if isinstance(n_projections, bool) or not isinstance(n_projections, int) or n_projections < 1:
        raise ValueError(f"n_projections must be a positive int, got {n_projections!r}")
    xf = x.reshape(x.shape[0], -1).double()
    yf = y.reshape(y.shape[0], -1).to(device=xf.device, dtype=torch.float64)
    if generator is None and seed is not None:
        generator = torch.Generator().manual_seed(seed)
    theta = random_directions(xf.shape[1], n_projections, generator).to(xf.device)
    w = wasserstein_1d(xf @ theta, yf @ theta, p=p)
    return w.pow(p).mean().pow(1.0 / p)
