"""Two-dimensional toy distributions, sampled in torch from a caller's generator.

Each function is ``f(n, generator=None, *, dtype=torch.float32) -> (n, 2)``, scaled so that the
data have a spread of order one (what VP-type diffusions expect). Shapes follow the toy sets of
the continuous normalising flow literature (Grathwohl et al. 2019, FFJORD), re-derived here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["moons", "checkerboard", "spirals", "eight_gaussians", "rings", "TOYS"]


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be a non-negative int, got {type(n).__name__} ({n!r})")
    if n < 0:
        raise ValueError(f"n must be a non-negative int, got {n}")
    return n


def _check_generator(generator) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")


def moons(n: int, generator: torch.Generator | None = None, *, noise: float = 0.1,
          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Two interleaving half circles (as scikit-learn's ``make_moons``), centred and scaled by 1.5.

    Arguments:
        n: number of points; each picks either moon with probability 1/2.
        generator: source of randomness (``None``: torch's global generator).
        noise: standard deviation of the Gaussian jitter, in the units of the unit-radius moons.
        dtype: floating dtype of the result.

    Returns:
        ``(n, 2)`` tensor.
    """
    n = _check_n(n)
    _check_generator(generator)
    lower = torch.randint(0, 2, (n,), generator=generator).bool()
    angle = math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
    x = torch.cos(angle)
    y = torch.sin(angle)
    x = torch.where(lower, 1.0 - x, x)
    y = torch.where(lower, 0.5 - y, y)
    pts = torch.stack([x, y], dim=1)
    pts = pts + noise * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    pts = (pts - torch.tensor([0.5, 0.25], dtype=torch.float64)) * 1.5
    return pts.to(dtype)


def checkerboard(n: int, generator: torch.Generator | None = None, *,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Uniform on the eight dark squares of a 4x4 checkerboard covering ``[-2, 2]^2``.

    Arguments:
        n: number of points.
        generator: source of randomness.
        dtype: floating dtype of the result.

    Returns:
        ``(n, 2)`` tensor.
    """
    n = _check_n(n)
    _check_generator(generator)
    x = 4.0 * torch.rand(n, generator=generator, dtype=torch.float64) - 2.0
    # Within each column of width one, the dark squares alternate between rows {-2,0} and {-1,1}.
    row = 2.0 * torch.randint(0, 2, (n,), generator=generator).double() - 2.0
    col_parity = torch.floor(x).remainder(2.0)
    y = row + col_parity + torch.rand(n, generator=generator, dtype=torch.float64)
    return torch.stack([x, y], dim=1).to(dtype)


def spirals(n: int, generator: torch.Generator | None = None, *, noise: float = 0.1, turns: float = 1.5,
            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Two interleaved Archimedean spirals (points ``r(cos r, sin r)`` and their mirror image).

    Radii are drawn so that points are roughly uniform along the arms; the result is scaled to
    a spread of about ``[-2.5, 2.5]``.

    Arguments:
        n: number of points; each picks either arm with probability 1/2.
        generator: source of randomness.
        noise: standard deviation of the Gaussian jitter after scaling.
        turns: number of turns of each arm.
        dtype: floating dtype of the result.

    Returns:
        ``(n, 2)`` tensor.
    """
    n = _check_n(n)
    _check_generator(generator)
    r_max = 2 * math.pi * turns
    r = r_max * torch.sqrt(torch.rand(n, generator=generator, dtype=torch.float64))
    pts = torch.stack([-r * torch.cos(r), r * torch.sin(r)], dim=1)
    sign = (2.0 * torch.randint(0, 2, (n, 1), generator=generator) - 1.0).double()
    pts = sign * pts * (2.5 / r_max)
    pts = pts + noise * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return pts.to(dtype)


def eight_gaussians(n: int, generator: torch.Generator | None = None, *, radius: float = 2.0,
                    std: float = 0.1, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Equal mixture of eight isotropic Gaussians on a circle.

    Arguments:
        n: number of points; the component of each point is uniform on the eight.
        generator: source of randomness.
        radius: radius of the circle of means.
        std: standard deviation of each component.
        dtype: floating dtype of the result.

    Returns:
        ``(n, 2)`` tensor.
    """
    n = _check_n(n)
    _check_generator(generator)
    k = torch.randint(0, 8, (n,), generator=generator).double()
    angle = k * (2 * math.pi / 8)
    centres = radius * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)
    pts = centres + std * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    return pts.to(dtype)


def rings(n: int, generator: torch.Generator | None = None, *, radii: Sequence[float] = (0.5, 1.0, 1.5, 2.0),
          noise: float = 0.04, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Concentric circles, each point's ring chosen with probability proportional to its radius
    (so the density along the arcs is uniform).

    Arguments:
        n: number of points.
        generator: source of randomness.
        radii: radii of the rings.
        noise: standard deviation of the radial jitter.
        dtype: floating dtype of the result.

    Returns:
        ``(n, 2)`` tensor.
    """
    n = _check_n(n)
    _check_generator(generator)
    radii_t = torch.as_tensor(radii, dtype=torch.float64)
    if radii_t.dim() != 1 or radii_t.numel() == 0 or bool((radii_t <= 0).any()):
        raise ValueError(f"radii must be a non-empty sequence of positive numbers, got {radii}")
    ring = torch.multinomial(radii_t / radii_t.sum(), n, replacement=True, generator=generator) if n else \
        torch.zeros(0, dtype=torch.long)
    angle = 2 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
    r = radii_t[ring] + noise * torch.randn(n, generator=generator, dtype=torch.float64)
    return torch.stack([r * torch.cos(angle), r * torch.sin(angle)], dim=1).to(dtype)


TOYS = {
    "moons": moons,
    "checkerboard": checkerboard,
    "spirals": spirals,
    "eight_gaussians": eight_gaussians,
    "rings": rings,
}
"""The 2-D toys by name."""
