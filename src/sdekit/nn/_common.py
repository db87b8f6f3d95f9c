"""Shared pieces of the reference networks: argument checks, seeded construction, time embeddings."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import nn


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int, got {type(value).__name__} ({value!r})")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return value


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Run the body under ``torch.manual_seed(seed)`` without disturbing the global generator."""
    if seed is None:
        yield
        return
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _check_time(t, x: torch.Tensor) -> torch.Tensor:
    """Turn ``t`` (float, 0-d or ``(batch,)`` tensor) into a ``(batch,)`` tensor on ``x``'s device."""
    batch = x.shape[0]
    if not isinstance(t, torch.Tensor):
        if isinstance(t, bool) or not isinstance(t, (int, float)):
            raise TypeError(f"t must be a float or a tensor of shape (batch,), got {type(t).__name__}")
        return torch.full((batch,), float(t), dtype=x.dtype, device=x.device)
    if t.dim() == 0:
        return t.to(device=x.device, dtype=x.dtype).expand(batch)
    if t.dim() != 1 or t.shape[0] != batch:
        raise ValueError(f"t must be a scalar or have shape ({batch},) to match x, got {tuple(t.shape)}")
    return t.to(device=x.device, dtype=x.dtype)


class SinusoidalEmbedding(nn.Module):
    """Transformer-style sinusoidal features of a scalar time (Vaswani et al. 2017; DDPM, Ho et al. 2020).

    ``emb(t) = [cos(s t w_k), sin(s t w_k)]`` with ``w_k = max_period^(-k / (dim/2))``, ``k < dim/2``.

    Arguments:
        dim: embedding size (even).
        time_scale: ``s``, multiplies ``t`` first (1000 suits ``t`` in [0, 1]; use 1 for ``log sigma``).
        max_period: the slowest period.
    """

    freqs: torch.Tensor  # a buffer (register_buffer)

    def __init__(self, dim: int, time_scale: float = 1000.0, max_period: float = 10_000.0) -> None:
        super().__init__()
        dim = _positive_int("dim", dim)
        if dim % 2:
            raise ValueError(f"dim must be even for sinusoidal features, got {dim}")
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float64) / half)
        self.register_buffer("freqs", freqs.float(), persistent=False)
        self.time_scale = float(time_scale)
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """``t: (batch,)`` -> ``(batch, dim)``."""
        args = (self.time_scale * t)[:, None] * self.freqs.to(t.dtype)[None, :]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class FourierEmbedding(nn.Module):
    """Random Fourier features of a scalar time (Tancik et al. 2020; used by Song et al. 2021).

    ``emb(t) = [cos(2 pi t w_k), sin(2 pi t w_k)]`` with fixed ``w_k ~ N(0, scale^2)`` drawn at
    construction (so a seeded constructor gives the same features).

    Arguments:
        dim: embedding size (even).
        scale: standard deviation of the frequencies.
    """

    freqs: torch.Tensor  # a buffer (register_buffer)

    def __init__(self, dim: int, scale: float = 16.0) -> None:
        super().__init__()
        dim = _positive_int("dim", dim)
        if dim % 2:
            raise ValueError(f"dim must be even for Fourier features, got {dim}")
        self.register_buffer("freqs", torch.randn(dim // 2) * float(scale))
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """``t: (batch,)`` -> ``(batch, dim)``."""
        args = 2 * math.pi * t[:, None] * self.freqs.to(t.dtype)[None, :]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def _time_embedding(kind: str, dim: int, time_scale: float) -> nn.Module:
    if kind == "sinusoidal":
        return SinusoidalEmbedding(dim, time_scale=time_scale)
    if kind == "fourier":
        return FourierEmbedding(dim)
    raise ValueError(f"time_embedding must be 'sinusoidal' or 'fourier', got {kind!r}")


class _ClassEmbedding(nn.Module):
    """Label embedding with one extra "no label" row (index ``num_classes``) for unconditional use."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.num_classes = _positive_int("num_classes", num_classes)
        self.table = nn.Embedding(num_classes + 1, dim)

    def forward(self, class_labels: torch.Tensor | None, batch: int, device) -> torch.Tensor:
        if class_labels is None:
            class_labels = torch.full((batch,), self.num_classes, dtype=torch.long, device=device)
        if not isinstance(class_labels, torch.Tensor) or class_labels.dtype not in (
            torch.int64, torch.int32, torch.int16, torch.uint8
        ):
            raise TypeError("class_labels must be an integer tensor of shape (batch,)")
        if class_labels.shape != (batch,):
            raise ValueError(f"class_labels must have shape ({batch},), got {tuple(class_labels.shape)}")
        lo, hi = int(class_labels.min()), int(class_labels.max())
        if lo < 0 or hi > self.num_classes:
            raise ValueError(
                f"class_labels must lie in [0, {self.num_classes}] ({self.num_classes} = no label), "
                f"got values in [{lo}, {hi}]"
            )
        return self.table(class_labels.long())
