"""Counter-based Gaussian noise: the same numbers for the same key, whatever the order of requests.

Two generators serve the Brownian sources:

* a single integer seed: a CPU ``torch.Generator`` seeded from ``mix64(seed, key)``; the numbers are
  drawn on the CPU and moved, so a path is identical on every device;
* per-sample seeds (a 1-D int64 tensor, one seed per entry of the leading dimension): an integer hash
  of (seed, key, element index) evaluated with tensor operations and turned into normals by Box-Muller.
  Sample ``b`` then depends only on ``seeds[b]``, never on the batch it was drawn in.

Part of the core's internal interface: the diffusion layer's sharded sampling and ``sdekit.torchsde``
use :func:`mix64` and :func:`standard_normal`; nothing here is exported from ``sdekit``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import overload

import torch

_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF


def mix64(*values: int) -> int:
    """SplitMix64 finaliser folded over ``values``: a well-spread 63-bit integer (Python ints)."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (int(v) & _M64)) & _M64
        h = (h + 0x9E3779B97F4A7C15) & _M64
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _M64
        h = h ^ (h >> 31)
    return h & 0x7FFFFFFFFFFFFFFF


def _mix32(x: torch.Tensor) -> torch.Tensor:
    # A 32-bit integer hash (xor-shift-multiply) on int64 tensors holding values in [0, 2**32).
    x = x ^ (x >> 16)
    x = (x * 0x21F0AAAD) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x735A2D97) & _M32
    return x ^ (x >> 15)


@overload
def normalize_seed(seed: None | int, batch: int | None, name: str = "seed") -> int: ...
@overload
def normalize_seed(seed: object, batch: int | None, name: str = "seed") -> int | torch.Tensor: ...
def normalize_seed(seed, batch: int | None, name: str = "seed") -> int | torch.Tensor:
    """Return ``int`` for one seed or a 1-D int64 CPU tensor for per-sample seeds.

    Raises:
        TypeError / ValueError naming ``name`` when the seed is neither an int nor a sequence of
        ``batch`` ints.
    """
    if seed is None:
        return int(torch.randint(0, 2**62, (), dtype=torch.int64).item())
    if isinstance(seed, bool):
        raise TypeError(f"{name} must be an int or a sequence of ints, got {seed!r}")
    if isinstance(seed, int):
        return seed
    if isinstance(seed, torch.Tensor) and seed.dim() == 0 and not seed.is_floating_point():
        return int(seed.item())
    if isinstance(seed, (Sequence, torch.Tensor)):
        seeds = torch.as_tensor(seed).detach().to("cpu")
        if seeds.is_floating_point() or seeds.dim() != 1:
            raise TypeError(f"{name} must be an int or a 1-D sequence of ints, got {seed!r}")
        if batch is not None and seeds.numel() != batch:
            raise ValueError(
                f"{name} has {seeds.numel()} per-sample seeds but the leading dimension of shape is {batch}; "
                "pass one seed per sample"
            )
        return seeds.to(torch.int64)
    raise TypeError(f"{name} must be an int or a sequence of ints, got {type(seed).__name__}")


def standard_normal(seed, key: int, shape: tuple[int, ...], dtype: torch.dtype, device) -> torch.Tensor:
    """Standard normal tensor of ``shape`` determined by ``(seed, key)`` alone.

    Arguments:
        seed: an int, or a 1-D int64 tensor with one seed per entry of ``shape[0]``.
        key: a non-negative integer naming the request (a tree node, a chunk index ...).
    """
    if isinstance(seed, int):
        return next_normal(keyed_generator(seed, key), shape, dtype, device)
    return _hashed_normal(seed, key, shape, dtype, device)


def keyed_generator(seed: int, key: int) -> torch.Generator:
    """A CPU generator determined by ``(seed, key)``: successive :func:`next_normal` draws from it
    form a stream that can be regenerated from its start at any time."""
    return torch.Generator(device="cpu").manual_seed(mix64(seed, key))


def next_normal(gen: torch.Generator, shape: tuple[int, ...], dtype: torch.dtype, device) -> torch.Tensor:
    """The next standard normal tensor of ``shape`` from ``gen`` (drawn on the CPU in float64 for
    float64 and in float32 otherwise, then moved, so the numbers are the same on every device)."""
    out = torch.randn(shape, generator=gen, dtype=dtype if dtype == torch.float64 else torch.float32)
    if out.dtype == dtype and (device is None or torch.device(device).type == "cpu"):
        return out
    return out.to(device=device, dtype=dtype)


def _hashed_normal(seeds: torch.Tensor, key: int, shape, dtype, device) -> torch.Tensor:
    batch, rest = shape[0], tuple(shape[1:])
    per_sample = math.prod(rest)
    seeds = seeds.to(device)
    lo = seeds & _M32
    hi = (seeds >> 32) & _M32
    k = mix64(key)
    base = _mix32(lo ^ _mix32(hi ^ (k & _M32)) ^ ((k >> 32) & _M32))  # (batch,)
    base = base[:, None]
    counter = torch.arange(per_sample, device=device, dtype=torch.int64)[None, :]
    a = _mix32(base ^ _mix32(3 * counter))
    b = _mix32(_mix32(base + 0x632BE5AB) ^ _mix32(3 * counter + 1))
    c = _mix32(_mix32(base + 0x85157AF5) ^ _mix32(3 * counter + 2))
    # u1 in (0, 1] with 53 bits, u2 in [0, 1) with 32 bits.
    u1 = ((a * 2**21 + (b >> 11)).to(torch.float64) + 1.0) / 2.0**53
    u2 = c.to(torch.float64) / 2.0**32
    z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)
    return z.reshape(batch, *rest).to(dtype)
