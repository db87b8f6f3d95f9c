"""Small shared helpers of the diffusion layer: time arguments, broadcasting and argument checks."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = ["as_time", "broadcast_like", "batch_time", "resolve_name", "jacobian_trace"]


def as_time(t: float | torch.Tensor, name: str = "t") -> torch.Tensor:
    """Turn a time argument into a tensor: a Python number becomes a 0-d float64 tensor; a tensor
    must be 0-d or 1-d ``(batch,)`` and floating point (integer tensors are converted to float64).

    Raises:
        TypeError / ValueError naming ``name`` for anything else.
    """
    if isinstance(t, torch.Tensor):
        if t.dim() > 1:
            raise ValueError(f"{name} must be a float, a 0-d tensor or a (batch,) tensor; got shape "
                             f"{tuple(t.shape)}")
        if not t.is_floating_point():
            if t.is_complex() or t.dtype == torch.bool:
                raise TypeError(f"{name} must be a real time, got a tensor of dtype {t.dtype}")
            t = t.to(torch.float64)
        return t
    if isinstance(t, bool) or not isinstance(t, numbers.Real):
        raise TypeError(f"{name} must be a float, a 0-d tensor or a (batch,) tensor; got {type(t).__name__}")
    return torch.tensor(float(t), dtype=torch.float64)


def broadcast_like(c: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a coefficient against a state ``x: (batch, *event)`` and cast it to ``x``'s dtype
    and device.

    Arguments:
        c: a 0-d tensor (one value for every sample) or a ``(batch,)`` tensor (one per sample).
        x: the state, ``(batch, *event)``.

    Returns:
        ``c`` as a 0-d tensor or with shape ``(batch, 1, ..., 1)`` (``x.dim()`` dims).

    Raises:
        ValueError when ``c`` is neither 0-d nor ``(x.shape[0],)``.
    """
    c = torch.as_tensor(c)
    if c.dim() == 0:
        return c.to(dtype=x.dtype, device=x.device)
    if c.dim() != 1 or x.dim() == 0 or c.shape[0] != x.shape[0]:
        raise ValueError(
            f"a per-sample coefficient must have shape (batch,) = ({x.shape[0] if x.dim() else '?'},) to "
            f"broadcast against x of shape {tuple(x.shape)}; got shape {tuple(c.shape)}"
        )
    return c.to(dtype=x.dtype, device=x.device).reshape(c.shape[0], *([1] * (x.dim() - 1)))


def batch_time(t: float | torch.Tensor, x: torch.Tensor, name: str = "t") -> torch.Tensor:
    """The time as a ``(batch,)`` tensor of ``x``'s dtype and device (what a network receives)."""
    t = as_time(t, name)
    batch = x.shape[0]
    if t.dim() == 0:
        return t.to(dtype=x.dtype, device=x.device).expand(batch).clone()
    if t.shape[0] != batch:
        raise ValueError(f"{name} has {t.shape[0]} per-sample times but x has batch size {batch} (shape "
                         f"{tuple(x.shape)})")
    return t.to(dtype=x.dtype, device=x.device)


def check_real(name: str, value, *, positive: bool = False, nonnegative: bool = False) -> float:
    """A finite real number (optionally > 0 or >= 0), or a TypeError / ValueError naming ``name``."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")
    if nonnegative and not value >= 0:
        raise ValueError(f"{name} must be non-negative, got {value}")
    return value


def check_tensor(name: str, x, *, min_dim: int = 1, finite: bool = False) -> torch.Tensor:
    """A floating-point tensor with at least ``min_dim`` dimensions (and, with ``finite=True``, no NaN or
    inf entry), or a TypeError / ValueError naming ``name``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dimension(s), got shape {tuple(x.shape)}")
    if finite:
        bad = ~torch.isfinite(x.detach())
        if bool(bad.any()):
            first = tuple(int(i) for i in torch.nonzero(bad)[0])
            raise ValueError(f"{name} must be finite; {int(bad.sum())} of {x.numel()} entries are NaN or inf "
                             f"(the first: {name}[{', '.join(map(str, first))}]={x[first].item()})")
    return x


def resolve_name(value: object, table: dict[str, Callable[[], Any]], base: type, what: str, alternatives: str) -> Any:
    """``value`` itself when it is a ``base`` instance, ``table[value]()`` for a known name, else a
    ValueError listing the names (``alternatives`` says what else fits) or a TypeError."""
    if isinstance(value, base):
        return value
    if isinstance(value, str):
        if value not in table:
            raise ValueError(f"unknown {what} {value!r}; choose one of {sorted(table)}{alternatives}")
        return table[value]()
    return None


def jacobian_trace(field: torch.Tensor, x: torch.Tensor, probes: torch.Tensor | Sequence[torch.Tensor] | None = None, *,
                   create_graph: bool = False) -> torch.Tensor:
    """``tr(d field / d x)`` per sample (the divergence), for a ``field`` of the shape of ``x`` computed from ``x``
    with a graph, samples not interacting. ``probes=None``: exact, one vector-Jacobian product per coordinate;
    otherwise Hutchinson's ``mean_k e_k^T (d field / d x) e_k`` over the probes ``e_k = probes[k]`` (a tensor
    ``(K, *x.shape)`` or a sequence of ``x``-shaped tensors), one product per probe. ``create_graph`` keeps the
    graph of the result (to differentiate it again)."""
    n = field.shape[0]
    trace = torch.zeros(n, dtype=field.dtype, device=field.device)
    if probes is None:
        flat = field.reshape(n, -1)
        for i in range(flat.shape[1]):
            (grad,) = torch.autograd.grad(flat[:, i].sum(), x, retain_graph=True, create_graph=create_graph)
            trace = trace + grad.reshape(n, -1)[:, i]
        return trace
    for e in probes:
        (grad,) = torch.autograd.grad((field * e).sum(), x, retain_graph=True, create_graph=create_graph)
        trace = trace + (grad * e).reshape(n, -1).sum(1)
    return trace / len(probes)
