"""Boundary checks shared by the Feynman–Kac estimator and the Crank–Nicolson reference: coefficient
functions, points of the half-line, output times. Every failure names the argument, what was passed and
what would fit."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import cast

import torch

PROBE = (1e-4, 1e4, 2001)
"""The probe grid of ``(0, inf)`` on which exponent and potential functions are checked once, at
construction: ``PROBE[2]`` log-spaced points from ``PROBE[0]`` to ``PROBE[1]`` (float64)."""


def probe_points(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    lo, hi, n = PROBE
    return torch.logspace(math.log10(lo), math.log10(hi), n, dtype=dtype)


def check_number(name: str, value, *, positive: bool = False, nonnegative: bool = False) -> float:
    """A finite real number (a Python number or a one-element tensor)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.is_floating_point():
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and not value > 0:
        raise ValueError(f"{name} must be positive, got {value}")
    if nonnegative and not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def as_function(name: str, value) -> Callable[[torch.Tensor], torch.Tensor]:
    """A callable ``x -> tensor``, or a real number taken as the constant function."""
    if callable(value):
        return cast(Callable[[torch.Tensor], torch.Tensor], value)
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, torch.Tensor)):
        raise TypeError(f"{name} must be a callable x -> tensor of x's shape or a real number, "
                        f"got {type(value).__name__} {value!r}")
    c = check_number(name, value)
    return lambda x: torch.full_like(x, c)


def evaluate(name: str, fn: Callable, x: torch.Tensor, *, sign: str | None = None,
             where: str = "") -> torch.Tensor:
    """``fn(x)`` checked: a tensor of ``x``'s shape (a Python number is broadcast), finite, and
    ``> 0`` (``sign="positive"``) or ``>= 0`` (``sign="nonnegative"``) at every point."""
    out = fn(x)
    if isinstance(out, numbers.Real) and not isinstance(out, bool):
        out = torch.full_like(x, float(out))
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"{name}(x) must return a tensor of x's shape {tuple(x.shape)}, got {type(out).__name__}")
    if tuple(out.shape) != tuple(x.shape):
        raise ValueError(f"{name}(x) must return a tensor of x's shape {tuple(x.shape)} (it acts pointwise), "
                         f"got shape {tuple(out.shape)}")
    bad = ~torch.isfinite(out)
    if sign == "positive":
        bad = bad | ~(out > 0)
        need = "positive (the theory needs p, q: (0, inf) -> (0, inf))"
    elif sign == "nonnegative":
        bad = bad | ~(out >= 0)
        need = ">= 0 (the theory needs V >= 0)"
    else:
        need = "finite"
    if bool(bad.any()):
        i = tuple(int(k) for k in torch.nonzero(bad)[0])
        raise ValueError(f"{name} must be {need} and finite{where}; {name}(x)={float(out[i]):.6g} at "
                         f"x={float(x[i]):.6g} ({int(bad.sum())} of {x.numel()} points fail)")
    return out


def check_on_probe(name: str, fn: Callable, sign: str) -> None:
    lo, hi, n = PROBE
    evaluate(name, fn, probe_points(), sign=sign, where=f" on (0, inf) (probed at {n} points in [{lo:g}, {hi:g}])")


def check_points(name: str, x, *, positive: bool = True) -> torch.Tensor:
    """Starting points: a 1-D floating tensor (a number or a sequence is converted to float64) of finite
    values, in ``(0, inf)`` when ``positive``."""
    if isinstance(x, numbers.Real) and not isinstance(x, bool):
        x = torch.tensor([float(x)], dtype=torch.float64)
    elif isinstance(x, Sequence) and not isinstance(x, (str, bytes)):
        try:
            x = torch.tensor([float(v) for v in x], dtype=torch.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a 1-D tensor or a sequence of numbers, got {x!r}") from None
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a 1-D tensor or a sequence of numbers, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() != 1 or x.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D tensor of points, got shape {tuple(x.shape)}")
    bad = ~torch.isfinite(x)
    if positive:
        bad = bad | ~(x > 0)
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0])
        domain = "in (0, inf) (the state space of the variable-exponent SDE)" if positive else "finite"
        raise ValueError(f"{name} must be {domain}; got {name}[{i}]={float(x[i])} "
                         f"({int(bad.sum())} of {x.numel()} points fail)")
    return x


def check_times(name: str, t) -> list[float]:
    """Output times: a positive, finite, strictly increasing sequence (a number is one time)."""
    if isinstance(t, torch.Tensor):
        if t.dim() > 1:
            raise ValueError(f"{name} must be a number or a 1-D sequence of times, got shape {tuple(t.shape)}")
        values = t.detach().cpu().double().reshape(-1).tolist()
    elif isinstance(t, numbers.Real) and not isinstance(t, bool):
        values = [float(t)]
    elif isinstance(t, Sequence) and not isinstance(t, (str, bytes)):
        values = [check_number(f"{name}[{i}]", v) for i, v in enumerate(t)]
    else:
        raise TypeError(f"{name} must be a number or a 1-D sequence of times, got {type(t).__name__}")
    if not values:
        raise ValueError(f"{name} must hold at least one time")
    for i, v in enumerate(values):
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be positive and finite; got {name}[{i}]={v}")
        if i and not v > values[i - 1]:
            raise ValueError(f"{name} must be strictly increasing; got {name}[{i}]={v} <= "
                             f"{name}[{i - 1}]={values[i - 1]}")
    return values


def check_count(name: str, value, *, minimum: int = 1, even: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if even and value % 2:
        raise ValueError(f"{name} must be even (antithetic paths come in pairs), got {value}")
    return value
