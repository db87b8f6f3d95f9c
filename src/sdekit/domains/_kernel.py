r"""The transition kernel of reflected Brownian motion in a box, and its score.

Reflected VE diffusion (Lou & Ermon 2023, "Reflected Diffusion Models", ICML, arXiv 2304.04740, section 3
and appendix): ``x_t = reflect(x_0 + sigma(t) z)``, ``z ~ N(0, I)``. Coordinates are independent, so the
kernel is a product over coordinates of the Neumann heat kernel on an interval. In unit coordinates
``u = (x - lo) / w`` (``w = hi - lo``) with ``s = sigma / w`` it has two exact series:

.. math::
    p_s(u \mid u_0) &= \sum_{n\in\mathbb Z} \big[\varphi_s(u - u_0 - 2n) + \varphi_s(u + u_0 - 2n)\big]
        \qquad\text{(sum of images, } \varphi_s = N(0, s^2)\text{ density)}\\
    &= 1 + 2 \sum_{k \ge 1} e^{-k^2 \pi^2 s^2 / 2} \cos(k\pi u) \cos(k\pi u_0)
        \qquad\text{(cosine eigenfunctions)}

and the density of ``x`` is ``prod_j p_{s_j}(u_j | u_{0j}) / w_j``. The image series converges fast for
small ``s`` (the kept images ``|n| <= 3`` leave out Gaussians at distance ``>= 7`` from the box), the
eigenfunction series for large ``s`` (16 terms leave out ``exp(-17^2 pi^2 s^2 / 2)``). Below
:data:`SWITCH_SIGMA` ``= 0.3`` (unit coordinates) the images are used, above it the eigenfunctions; at
the switch both truncation errors are below ``1e-60`` relative, so the two agree to float64 rounding
(tested to ``1e-8``). The official code switches at ``tau = s^2/2 = 0.01`` with 20 eigenfunctions and
images ``|n| <= 10``. Everything is computed in float64 (the image series as a log-sum-exp, so the log
kernel and score stay finite where the density underflows) and returned in the dtype of ``x``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from ._box import Box

__all__ = ["SWITCH_SIGMA", "reflected_log_kernel", "reflected_kernel_score", "reflected_perturb"]

#: the noise level (in unit coordinates, ``sigma / (hi - lo)``) where the kernel switches from the sum of
#: images to the cosine eigenfunction series
SWITCH_SIGMA = 0.3
_IMAGES = 3      # n = -3..3
_EIGEN = 16      # k = 1..16

Method = Literal["auto", "images", "eigen"]


def _log_kernel_images(u, u0, s):
    """``(log p, d/du log p)`` of the unit-interval kernel by the sum of images (float64, elementwise)."""
    n = torch.arange(-_IMAGES, _IMAGES + 1, dtype=u.dtype, device=u.device)
    centres = torch.cat([u0[..., None] + 2.0 * n, -u0[..., None] + 2.0 * n], dim=-1)
    diff = u[..., None] - centres
    s2 = (s * s)[..., None]
    logits = -0.5 * diff * diff / s2
    log_p = torch.logsumexp(logits, dim=-1) - torch.log(s) - 0.5 * math.log(2.0 * math.pi)
    weights = torch.softmax(logits, dim=-1)
    score = -(weights * diff).sum(-1) / (s * s)
    return log_p, score


def _log_kernel_eigen(u, u0, s):
    """``(log p, d/du log p)`` of the unit-interval kernel by the cosine series (float64, elementwise)."""
    k = torch.arange(1, _EIGEN + 1, dtype=u.dtype, device=u.device)
    kpi = k * math.pi
    decay = torch.exp(-0.5 * (kpi * kpi) * (s * s)[..., None])
    c0 = torch.cos(kpi * u0[..., None])
    p = 1.0 + 2.0 * (decay * torch.cos(kpi * u[..., None]) * c0).sum(-1)
    dp = -2.0 * (decay * kpi * torch.sin(kpi * u[..., None]) * c0).sum(-1)
    return torch.log(p), dp / p


def _prepare(x, x0, sigma, box: Box | None, method: str):
    box = Box() if box is None else box
    if not isinstance(box, Box):
        raise TypeError(f"box must be a sdekit.domains.Box, got {type(box).__name__}")
    if method not in ("auto", "images", "eigen"):
        raise ValueError(f"method must be 'auto', 'images' or 'eigen', got {method!r}")
    box.check("x", x, atol=1e-6 * float(box.width.max()))
    box.check("x0", x0, atol=1e-6 * float(box.width.max()))
    if x0.shape != x.shape:
        raise ValueError(f"x0 must have the shape of x, {tuple(x.shape)}; got {tuple(x0.shape)}")
    sig = torch.as_tensor(sigma, dtype=torch.float64, device=x.device)
    batch = x.shape[0]
    if sig.dim() > 1 or (sig.dim() == 1 and sig.shape[0] != batch):
        raise ValueError(f"sigma must be a number, a 0-d tensor or a (batch,) = ({batch},) tensor; got shape "
                         f"{tuple(sig.shape)}")
    if not bool((sig > 0).all()) or not bool(torch.isfinite(sig).all()):
        raise ValueError(f"sigma must be positive and finite, got {sig.min().item() if sig.numel() else sig}")
    xd = x.to(torch.float64).reshape(batch, -1)
    x0d = x0.to(torch.float64).reshape(batch, -1)
    width = box.width.to(xd.device) if box.dim is not None else box.width[:1].to(xd.device)
    u = box.to_unit(xd).clamp(0.0, 1.0)
    u0 = box.to_unit(x0d).clamp(0.0, 1.0)
    sig = sig.reshape(-1, 1) if sig.dim() == 1 else sig
    s = torch.broadcast_to(sig / width, u.shape).contiguous()
    return u, u0, s, torch.broadcast_to(width, u.shape)


def _unit_kernel(u, u0, s, method: str):
    if method == "images":
        return _log_kernel_images(u, u0, s)
    if method == "eigen":
        return _log_kernel_eigen(u, u0, s)
    small = s <= SWITCH_SIGMA
    log_p = torch.empty_like(u)
    score = torch.empty_like(u)
    if bool(small.any()):
        lp, sc = _log_kernel_images(u[small], u0[small], s[small])
        log_p = log_p.index_put((small,), lp)
        score = score.index_put((small,), sc)
    large = ~small
    if bool(large.any()):
        lp, sc = _log_kernel_eigen(u[large], u0[large], s[large])
        log_p = log_p.index_put((large,), lp)
        score = score.index_put((large,), sc)
    return log_p, score


def reflected_log_kernel(x: torch.Tensor, x0: torch.Tensor, sigma: float | torch.Tensor, box: Box | None = None, *,
                         method: Method = "auto") -> torch.Tensor:
    r"""``log p_sigma(x | x0)``, the log density of ``reflect(x0 + sigma z)`` at ``x`` (see the module
    docstring for the two series), summed over coordinates.

    Arguments:
        x, x0: points in the box, ``(batch, d)`` (``(batch, *event)`` for a box with scalar bounds).
        sigma: the noise level in the box's units: a number, 0-d or ``(batch,)`` tensor.
        box: the :class:`Box` (default the unit cube).
        method: ``"auto"`` (images below :data:`SWITCH_SIGMA`, eigenfunctions above), ``"images"`` or
            ``"eigen"`` (one series everywhere, for checks).

    Returns:
        ``(batch,)`` in the dtype of ``x`` (computed in float64; differentiable in ``x``).

    Raises:
        TypeError / ValueError naming the argument: points outside the box, shapes that differ,
        ``sigma <= 0``.
    """
    u, u0, s, width = _prepare(x, x0, sigma, box, method)
    log_p, _ = _unit_kernel(u, u0, s, method)
    return (log_p - torch.log(width)).sum(-1).to(x.dtype)


def reflected_kernel_score(x: torch.Tensor, x0: torch.Tensor, sigma: float | torch.Tensor, box: Box | None = None, *,
                           method: Method = "auto") -> torch.Tensor:
    r"""The score ``grad_x log p_sigma(x | x0)`` of the reflected kernel, in closed form: per coordinate
    ``(1/w) d/du log p_s(u | u_0)`` with

    .. math:: \partial_u \log p = -\frac{1}{s^2}\sum_i \pi_i (u - c_i)\ \ (\text{images } c_i = \pm u_0 + 2n,
              \ \pi_i \text{ their softmax weights}),\qquad
              \partial_u \log p = \frac{-2\sum_k e^{-k^2\pi^2 s^2/2} k\pi \sin(k\pi u)\cos(k\pi u_0)}{p}.

    It vanishes on the faces (the Neumann condition). This is the regression target of
    :class:`ReflectedScoreMatching` (Lou & Ermon 2023, eq. 11).

    Arguments: as :func:`reflected_log_kernel`.

    Returns:
        The shape and dtype of ``x``.
    """
    u, u0, s, width = _prepare(x, x0, sigma, box, method)
    _, score = _unit_kernel(u, u0, s, method)
    return (score / width).reshape(x.shape).to(x.dtype)


def reflected_perturb(x0: torch.Tensor, sigma: float | torch.Tensor, box: Box | None = None, *,
                      noise: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """A draw of the reflected kernel: ``reflect(x0 + sigma z)`` with ``z = noise`` or a fresh standard
    normal. ``x0: (batch, d)``, ``sigma`` a number or ``(batch,)``; returns the shape of ``x0``."""
    box = Box() if box is None else box
    box.check("x0", x0)
    if noise is None:
        dev = generator.device if generator is not None else x0.device
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=dev).to(x0.device)
    elif noise.shape != x0.shape:
        raise ValueError(f"noise must have the shape of x0, {tuple(x0.shape)}; got {tuple(noise.shape)}")
    sig = torch.as_tensor(sigma, dtype=x0.dtype, device=x0.device)
    if sig.dim() == 1:
        sig = sig.reshape(-1, *([1] * (x0.dim() - 1)))
    return box.reflect(x0 + sig * noise)
