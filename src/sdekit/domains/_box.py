r"""A box ``[lo_1, hi_1] x ... x [lo_d, hi_d]`` and the reflection onto it.

The reflection (folding) map of Lou & Ermon 2023 ("Reflected Diffusion Models", ICML, section 3):
in unit coordinates ``u = (x - lo) / (hi - lo)``, ``v = u mod 2`` and ``reflect(u) = v`` for ``v <= 1``,
``2 - v`` otherwise. It is the law-preserving way to put a free Brownian path back in the box: for a
Brownian motion ``B``, ``reflect(x0 + B_t)`` is reflected Brownian motion started at ``x0`` (the Neumann heat
kernel, see :func:`~sdekit.domains.reflected_log_kernel`).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch

__all__ = ["Box"]


def _bounds(name: str, value) -> torch.Tensor:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a real number, a sequence of reals or a 1-d tensor, got bool")
    if isinstance(value, numbers.Real):
        t = torch.tensor([float(value)], dtype=torch.float64)
    elif isinstance(value, torch.Tensor):
        if value.dim() > 1 or value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name} must be a real number or a 1-d real tensor, got a tensor of shape "
                            f"{tuple(value.shape)} and dtype {value.dtype}")
        t = value.detach().to(dtype=torch.float64, device="cpu").reshape(-1)
    elif isinstance(value, Sequence) and not isinstance(value, str):
        try:
            t = torch.tensor([float(v) for v in value], dtype=torch.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be a real number or a sequence of reals, got {value!r}") from None
    else:
        raise TypeError(f"{name} must be a real number, a sequence of reals or a 1-d tensor, got "
                        f"{type(value).__name__}")
    if t.numel() == 0:
        raise ValueError(f"{name} must not be empty")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite, got {t.tolist()}")
    return t


class Box:
    r"""The box ``prod_j [lo_j, hi_j]`` with ``lo_j < hi_j``, acting on the last dimension of a state
    ``x: (batch, d)`` (or, for scalar bounds, on every coordinate of ``x: (batch, *event)``).

    Arguments:
        lo, hi: bounds, each a real number (the same for every coordinate) or a sequence / 1-d tensor of
            length ``d`` (default the unit cube ``[0, 1]^d``).

    Raises:
        TypeError: bounds that are not real numbers.
        ValueError: non-finite bounds, bounds of different lengths, or ``lo_j >= hi_j`` (named with the
            offending index).
    """

    def __init__(self, lo: float | Sequence[float] | torch.Tensor = 0.0,
                 hi: float | Sequence[float] | torch.Tensor = 1.0) -> None:
        lo_t, hi_t = _bounds("lo", lo), _bounds("hi", hi)
        if lo_t.numel() != hi_t.numel() and 1 not in (lo_t.numel(), hi_t.numel()):
            raise ValueError(f"lo and hi must have the same length (or one be a scalar); got {lo_t.numel()} "
                             f"and {hi_t.numel()}")
        lo_t, hi_t = torch.broadcast_tensors(lo_t, hi_t)
        bad = ~(lo_t < hi_t)
        if bool(bad.any()):
            j = int(torch.nonzero(bad)[0])
            raise ValueError(f"a box needs lo < hi in every coordinate; got lo[{j}]={lo_t[j].item()} >= "
                             f"hi[{j}]={hi_t[j].item()}")
        self.lo = lo_t.clone()
        self.hi = hi_t.clone()
        #: ``d`` for per-coordinate bounds, ``None`` for scalar bounds (any event shape)
        self.dim: int | None = None if self.lo.numel() == 1 and not _is_seq(lo, hi) else int(self.lo.numel())

    @property
    def width(self) -> torch.Tensor:
        """``hi - lo``, float64 ``(d,)`` (``(1,)`` for scalar bounds)."""
        return self.hi - self.lo

    def _coef(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return v.to(dtype=x.dtype, device=x.device) if self.dim is not None else v[0].to(dtype=x.dtype,
                                                                                        device=x.device)

    def check_shape(self, name: str, x) -> torch.Tensor:
        """``x`` if it is a floating tensor ``(batch, d)`` (``(batch, *event)`` for scalar bounds), else a
        TypeError / ValueError naming ``name``."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
        if self.dim is not None and (x.dim() != 2 or x.shape[1] != self.dim):
            raise ValueError(f"{name} must have shape (batch, {self.dim}) for this {self.dim}-d box, got "
                             f"{tuple(x.shape)}")
        if x.dim() < 1:
            raise ValueError(f"{name} must have shape (batch, *event), got a 0-d tensor")
        return x

    def check(self, name: str, x, *, atol: float = 0.0) -> torch.Tensor:
        """``x`` if it has the right shape, is finite and lies in the box (to ``atol``); else a
        TypeError / ValueError naming ``name``, the first offending entry and the bounds."""
        x = self.check_shape(name, x)
        xd = x.detach()
        lo, hi = self._coef(self.lo, xd), self._coef(self.hi, xd)
        bad = ~((xd >= lo - atol) & (xd <= hi + atol))  # NaN counts as outside
        if bool(bad.any()):
            idx = tuple(int(i) for i in torch.nonzero(bad)[0])
            j = idx[-1] if self.dim is not None else 0
            raise ValueError(f"{name} must lie in the box [lo, hi] = {self._describe()}; {int(bad.sum())} of "
                             f"{x.numel()} entries lie outside (the first: {name}[{', '.join(map(str, idx))}]="
                             f"{xd[idx].item()}, bounds [{self.lo[j].item()}, {self.hi[j].item()}])")
        return x

    def contains(self, x: torch.Tensor) -> torch.Tensor:
        """Boolean ``(batch,)``: every coordinate of the sample lies in the box."""
        self.check_shape("x", x)
        inside = (x >= self._coef(self.lo, x)) & (x <= self._coef(self.hi, x))
        return inside.reshape(x.shape[0], -1).all(dim=1)

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """``u = (x - lo) / (hi - lo)``."""
        return (x - self._coef(self.lo, x)) / self._coef(self.width, x)

    def from_unit(self, u: torch.Tensor) -> torch.Tensor:
        """``x = lo + (hi - lo) u``."""
        return self._coef(self.lo, u) + self._coef(self.width, u) * u

    def reflect(self, x: torch.Tensor) -> torch.Tensor:
        r"""Fold ``x`` into the box: ``u = (x - lo)/(hi - lo)``, ``v = u mod 2``,
        ``reflect(x) = lo + (hi - lo) min(v, 2 - v)``; the identity inside the box. ``x: (batch, d)``."""
        v = torch.remainder(self.to_unit(x), 2.0)
        return self.from_unit(torch.where(v > 1.0, 2.0 - v, v))

    def clip(self, x: torch.Tensor) -> torch.Tensor:
        """Clamp ``x`` to the box (thresholding, the baseline of reflected diffusion)."""
        return torch.minimum(torch.maximum(x, self._coef(self.lo, x)), self._coef(self.hi, x))

    def uniform(self, shape: int | Sequence[int], generator: torch.Generator | None = None, *,
                dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> torch.Tensor:
        """Draw ``shape`` (e.g. ``(batch, d)``) uniformly from the box: the prior of reflected diffusion."""
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        dtype = dtype if dtype is not None else torch.get_default_dtype()
        gen_dev = generator.device if generator is not None else (device or "cpu")
        u = torch.rand(shape, generator=generator, dtype=dtype, device=gen_dev).to(device or gen_dev)
        return self.from_unit(u)

    def boundary_distance(self, x: torch.Tensor) -> torch.Tensor:
        """Distance ``(batch,)`` of each sample to the box's boundary, in the box's own units
        (``min_j min(x_j - lo_j, hi_j - x_j)``; negative outside)."""
        self.check_shape("x", x)
        d = torch.minimum(x - self._coef(self.lo, x), self._coef(self.hi, x) - x)
        return d.reshape(x.shape[0], -1).min(dim=1).values

    def _describe(self) -> str:
        if self.dim is None:
            return f"[{self.lo[0].item()}, {self.hi[0].item()}]^d"
        return " x ".join(f"[{a}, {b}]" for a, b in zip(self.lo.tolist(), self.hi.tolist()))

    def __repr__(self) -> str:
        if self.dim is None:
            return f"Box(lo={self.lo[0].item()}, hi={self.hi[0].item()})"
        return f"Box(lo={self.lo.tolist()}, hi={self.hi.tolist()})"


def _is_seq(*values) -> bool:
    return any(not isinstance(v, numbers.Real) and not (isinstance(v, torch.Tensor) and v.dim() == 0)
               for v in values)
