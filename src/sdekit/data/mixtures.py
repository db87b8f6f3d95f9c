"""Sampling from Gaussian mixtures with scalar, diagonal or full covariances."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .toys import _check_generator, _check_n

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

__all__ = ["gaussian_mixture"]


def _mixture_parts(weights, means, variances) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, str]:
    means = torch.as_tensor(means, dtype=torch.float64)
    if means.dim() != 2:
        raise ValueError(f"means must have shape (K, d), got {tuple(means.shape)}")
    k, d = means.shape
    weights = torch.as_tensor(weights, dtype=torch.float64)
    if weights.shape != (k,):
        raise ValueError(f"weights must have shape ({k},) to match means (K={k}), got {tuple(weights.shape)}")
    if bool((weights < 0).any()) or not float(weights.sum()) > 0:
        raise ValueError(f"weights must be non-negative with a positive sum, got {weights.tolist()}")
    var = torch.as_tensor(variances, dtype=torch.float64)
    if var.dim() == 0:
        var, kind = var.expand(k, d), "diag"
    elif var.shape == (k,):
        var, kind = var[:, None].expand(k, d), "diag"
    elif var.shape == (k, d):
        kind = "diag"
    elif var.shape == (k, d, d):
        kind = "full"
    else:
        raise ValueError(
            f"variances must be a scalar or have shape ({k},), ({k}, {d}) or ({k}, {d}, {d}) for K={k} "
            f"components in d={d}; got {tuple(var.shape)}"
        )
    if kind == "diag" and bool((var <= 0).any()):
        raise ValueError("variances must be positive")
    return weights / weights.sum(), means, var, kind


def gaussian_mixture(
    n: int,
    weights: torch.Tensor | ArrayLike,
    means: torch.Tensor | ArrayLike,
    variances: torch.Tensor | ArrayLike,
    generator: torch.Generator | None = None,
    *,
    return_components: bool = False,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Draw from ``sum_k w_k N(mu_k, Sigma_k)``.

    Arguments:
        n: number of samples.
        weights: ``(K,)`` non-negative mixture weights (normalised here).
        means: ``(K, d)`` component means.
        variances: a scalar, ``(K,)`` (isotropic per component), ``(K, d)`` (diagonal) or
            ``(K, d, d)`` (full, symmetric positive definite) covariances.
        generator: source of randomness (``None``: torch's global generator).
        return_components: also return the ``(n,)`` component index of every sample.
        dtype: floating dtype of the samples.

    Returns:
        ``(n, d)`` samples, and the ``(n,)`` component indices if ``return_components``.

    Raises:
        ValueError: shapes that do not match, negative weights, non-positive or non-PD covariances.
    """
    n = _check_n(n)
    _check_generator(generator)
    w, mu, var, kind = _mixture_parts(weights, means, variances)
    k, d = mu.shape
    if n:
        comp = torch.multinomial(w, n, replacement=True, generator=generator)
    else:
        comp = torch.zeros(0, dtype=torch.long)
    z = torch.randn(n, d, generator=generator, dtype=torch.float64)
    if kind == "diag":
        x = mu[comp] + var.sqrt()[comp] * z
    else:
        chol, info = torch.linalg.cholesky_ex(var)
        if bool((info != 0).any()):
            bad = int(torch.nonzero(info)[0])
            raise ValueError(f"variances[{bad}] is not symmetric positive definite")
        x = mu[comp] + torch.einsum("nij,nj->ni", chol[comp], z)
    x = x.to(dtype)
    return (x, comp) if return_components else x
