"""Maximum mean discrepancy with Gaussian (RBF) kernels."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .wasserstein import _as_samples

__all__ = ["mmd_rbf"]


def mmd_rbf(x: torch.Tensor, y: torch.Tensor, bandwidths: Sequence[float] | None = None) -> torch.Tensor:
    """Unbiased estimate of ``MMD^2`` with a sum of RBF kernels ``exp(-|a - b|^2 / (2 h^2))``.

    (Gretton et al. 2012, the U-statistic of eq. 3.) Without ``bandwidths``, the median distance
    ``h0`` of the pooled sample sets the scale and ``h in {h0/4, h0/2, h0, 2 h0, 4 h0}`` are summed.

    Arguments:
        x: ``(n, *event)`` samples, ``n >= 2``.
        y: ``(m, *event)`` samples, ``m >= 2``.
        bandwidths: kernel widths ``h``.

    Returns:
        A 0-d float64 tensor (it can be slightly negative when the distributions agree).

    Raises:
        ValueError: fewer than two samples, different event shapes, non-positive bandwidths.
    """
    x = _as_samples("x", x)
    y = _as_samples("y", y)
    if x.shape[1:] != y.shape[1:]:
        raise ValueError(f"x and y must share their event shape; got {tuple(x.shape)} and {tuple(y.shape)}")
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ValueError(f"mmd_rbf needs at least two samples in each set, got {n} and {m}")
    xf = x.reshape(n, -1).double()
    yf = y.reshape(m, -1).to(device=xf.device, dtype=torch.float64)
    z = torch.cat([xf, yf])
    d2 = torch.cdist(z, z).pow(2)
    if bandwidths is None:
        h0 = d2[torch.triu_indices(n + m, n + m, 1, device=d2.device).unbind(0)].median().sqrt()
        h0 = h0 if float(h0) > 0 else torch.ones((), dtype=torch.float64)
        hs = [float(h0) * s for s in (0.25, 0.5, 1.0, 2.0, 4.0)]
    else:
        hs = [float(h) for h in bandwidths]
        if not hs or any(not h > 0 for h in hs):
            raise ValueError(f"bandwidths must be positive numbers, got {list(bandwidths)}")
    k = torch.exp(-d2 / (2 * hs[0] * hs[0]))
    for h in hs[1:]:
        k = k + torch.exp(-d2 / (2 * h * h))
    kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return sxx + syy - 2 * kxy.mean()
