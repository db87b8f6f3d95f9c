"""The SDE problem: the torchsde contract, checked once at the boundary.

An SDE is any object with ``f(t, y)`` (drift), ``g(t, y)`` (diffusion), ``noise_type`` and
``sde_type``, optionally ``g_prod(t, y, v)`` (the diffusion applied to ``v`` without building the
``d x m`` matrix). Shapes, for a state ``y`` of shape ``(*S, d)`` (for diagonal noise any shape):

============  ======================  ==========================
noise_type    g(t, y)                 Brownian increment
============  ======================  ==========================
diagonal      ``y.shape``             ``y.shape``
scalar        ``(*S, d, 1)``          ``(*S, 1)``
additive      ``(*S, d, m)``, no y    ``(*S, m)``
general       ``(*S, d, m)``          ``(*S, m)``
============  ======================  ==========================

A state may also be a tuple of tensors (each ``(*S, d_i)``; for diagonal noise any shapes); it is
packed into one tensor inside the solver and unpacked for every call of ``f`` and ``g``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

import torch

NOISE_TYPES = ("diagonal", "scalar", "additive", "general")
SDE_TYPES = ("ito", "stratonovich")


class SDE(torch.nn.Module):
    """Convenience base class (optional): subclass it, or wrap two functions.

    Example:
        >>> sde = SDE(lambda t, y: -y, lambda t, y: 0.5 * torch.ones_like(y), noise_type="diagonal")
    """

    def __init__(
        self,
        f: Callable | None = None,
        g: Callable | None = None,
        *,
        noise_type: str = "diagonal",
        sde_type: str = "ito",
    ) -> None:
        super().__init__()
        if noise_type not in NOISE_TYPES:
            raise ValueError(f"noise_type must be one of {NOISE_TYPES}, got {noise_type!r}")
        if sde_type not in SDE_TYPES:
            raise ValueError(f"sde_type must be one of {SDE_TYPES}, got {sde_type!r}")
        self.noise_type = noise_type
        self.sde_type = sde_type
        if f is not None:
            self.f = f
        if g is not None:
            self.g = g


class _Packer:
    """Packs a tuple state into one tensor and back (identity for a tensor state)."""

    def __init__(self, y0, along_last: bool) -> None:
        self.is_tuple = isinstance(y0, (tuple, list))
        if not self.is_tuple:
            return
        self.shapes = [tuple(y.shape) for y in y0]
        self.along_last = along_last
        if along_last:
            lead = {s[:-1] for s in self.shapes}
            if len(lead) != 1:
                raise ValueError(
                    "tuple states for scalar/additive/general noise need components of shape (*S, d_i) "
                    f"with one common *S; got shapes {self.shapes}"
                )
            self.sizes = [s[-1] for s in self.shapes]
        else:
            self.sizes = [math.prod(s) for s in self.shapes]

    def pack(self, ys, extra_dims: int = 0) -> torch.Tensor:
        """Pack a tuple shaped like the state (each component with ``extra_dims`` trailing dims)."""
        if not self.is_tuple:
            return ys
        if self.along_last:
            return torch.cat(list(ys), dim=-1 - extra_dims)
        return torch.cat([y.reshape(-1) for y in ys])

    def unpack(self, y: torch.Tensor):
        if not self.is_tuple:
            return y
        if self.along_last:
            return tuple(torch.split(y, self.sizes, dim=-1))
        return tuple(p.view(s) for p, s in zip(torch.split(y, self.sizes), self.shapes))

    def unpack_series(self, ys: torch.Tensor):
        """Unpack a stacked tensor ``(n, *packed)`` into a tuple of ``(n, *shape_i)``."""
        if not self.is_tuple:
            return ys
        if self.along_last:
            return tuple(torch.split(ys, self.sizes, dim=-1))
        n = ys.shape[0]
        return tuple(p.reshape(n, *s) for p, s in zip(torch.split(ys, self.sizes, dim=1), self.shapes))


def _shape_of(x) -> str:
    if isinstance(x, torch.Tensor):
        return f"tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    if isinstance(x, (tuple, list)):
        return "tuple(" + ", ".join(_shape_of(v) for v in x) + ")"
    return type(x).__name__


def _check_state(y0, name: str = "y0") -> None:
    parts = y0 if isinstance(y0, (tuple, list)) else (y0,)
    if isinstance(y0, (tuple, list)) and len(y0) == 0:
        raise ValueError(f"{name} is an empty tuple; pass a tensor or a tuple of tensors")
    for i, y in enumerate(parts):
        where = name if len(parts) == 1 and not isinstance(y0, (tuple, list)) else f"{name}[{i}]"
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"{where} must be a torch.Tensor, got {type(y).__name__}")
        if not y.is_floating_point():
            raise TypeError(f"{where} must be a floating-point tensor, got dtype {y.dtype}")
        if y.dim() == 0:
            raise ValueError(f"{where} must have at least one dimension, got a 0-d tensor")
        finite = torch.isfinite(y.detach())
        if not bool(finite.all()):
            first = tuple(int(i) for i in torch.nonzero(~finite)[0])
            raise ValueError(f"{where} must be finite; {int((~finite).sum())} of {y.numel()} entries are NaN or "
                             f"inf (the first: {where}[{', '.join(map(str, first))}]={y[first].item()})")
    dtypes = {y.dtype for y in parts}
    devices = {y.device for y in parts}
    if len(dtypes) > 1 or len(devices) > 1:
        raise ValueError(f"all components of {name} must share dtype and device, got {_shape_of(y0)}")


class Problem:
    """The checked, packed form of a user SDE that solvers see.

    Attributes:
        noise_type, sde_type: as declared by the SDE.
        brownian_shape: shape of the Brownian increment.
        has_levy: unused by the problem; solvers declare what they need.

    Methods ``f``, ``g``, ``g_prod`` and ``prod`` act on packed tensors.
    """

    def __init__(self, sde, y0, t0) -> None:
        noise_type = getattr(sde, "noise_type", None)
        sde_type = getattr(sde, "sde_type", None)
        if noise_type not in NOISE_TYPES:
            raise ValueError(f"sde.noise_type must be one of {NOISE_TYPES}, got {noise_type!r}")
        if sde_type not in SDE_TYPES:
            raise ValueError(f"sde.sde_type must be one of {SDE_TYPES}, got {sde_type!r}")
        for attr in ("f", "g"):
            if not callable(getattr(sde, attr, None)):
                raise TypeError(f"sde must define a callable {attr}(t, y); {type(sde).__name__} does not")
        _check_state(y0)
        self.sde = sde
        self.noise_type = noise_type
        self.sde_type = sde_type
        self.packer = _Packer(y0, along_last=noise_type != "diagonal")
        self._user_g_prod = getattr(sde, "g_prod", None)
        y = self.packer.pack(y0)
        self.dtype, self.device = y.dtype, y.device
        self.state_shape = tuple(y.shape)
        self.brownian_shape = self._check_contract(t0, y0, y)
        if noise_type == "diagonal":
            self.prod = torch.mul
        else:
            self.prod = _matvec
        if self.packer.is_tuple:
            self.f, self.g = self._packed_f, self._packed_g
        else:
            self.f, self.g = sde.f, sde.g
        if self._user_g_prod is None:  # bound once: solvers call g_prod every step
            g, prod = self.g, self.prod
            self.g_prod = lambda t, y, v: prod(g(t, y), v)
        elif not self.packer.is_tuple:
            self.g_prod = self._user_g_prod

    # -- calls on packed states ------------------------------------------------------------
    def _packed_f(self, t, y):
        return self.packer.pack(self.sde.f(t, self.packer.unpack(y)))

    def _packed_g(self, t, y):
        extra = 0 if self.noise_type == "diagonal" else 1
        return self.packer.pack(self.sde.g(t, self.packer.unpack(y)), extra_dims=extra)

    def g_prod(self, t, y, v):
        if self._user_g_prod is not None:
            if self.packer.is_tuple:
                return self.packer.pack(self._user_g_prod(t, self.packer.unpack(y), v))
            return self._user_g_prod(t, y, v)
        return self.prod(self.g(t, y), v)

    def gdg_prod(self, t, y, v1, v2):
        """``(g v1, (L g) v2)`` for diagonal or scalar noise, where ``L g = (dg/dy) g`` is the
        Milstein correction formed by automatic differentiation: for diagonal noise (``g_i``
        depending on ``y_i`` only) the elementwise ``g dg/dy``, one vector-Jacobian product; for
        scalar noise the Jacobian-vector product ``(dg/dy) g`` by the double-vjp trick."""
        requires_grad = torch.is_grad_enabled()
        with torch.enable_grad():
            y_ = y if y.requires_grad else y.detach().requires_grad_(True)
            g = self.g(t, y_)
            if not g.requires_grad:  # g does not depend on y (or on anything differentiable)
                return self.prod(g, v1), torch.zeros_like(y)
            if self.noise_type == "diagonal":
                (dg,) = torch.autograd.grad(g, y_, g * v2, create_graph=requires_grad, allow_unused=True)
                return g * v1, (torch.zeros_like(y) if dg is None else dg)
            g0 = g[..., 0]
            w = torch.zeros_like(g0, requires_grad=True)
            (jt_w,) = torch.autograd.grad(g0, y_, w, create_graph=True, allow_unused=True)
            if jt_w is None:
                return self.prod(g, v1), torch.zeros_like(y)
            (jg,) = torch.autograd.grad(jt_w, w, g0, create_graph=requires_grad, allow_unused=True)
            jg = torch.zeros_like(y) if jg is None else jg
            return self.prod(g, v1), jg * v2

    # -- the contract -----------------------------------------------------------------------
    def _check_contract(self, t0, y0, y) -> tuple[int, ...]:
        sde, nt = self.sde, self.noise_type
        with torch.no_grad():
            f = sde.f(t0, y0)
            g = sde.g(t0, y0)
        parts_y = y0 if self.packer.is_tuple else (y0,)
        parts_f = f if isinstance(f, (tuple, list)) else (f,)
        parts_g = g if isinstance(g, (tuple, list)) else (g,)
        if len(parts_f) != len(parts_y) or isinstance(f, (tuple, list)) != self.packer.is_tuple:
            raise ValueError(f"sde.f(t, y) must return the structure of y0 ({_shape_of(y0)}); got {_shape_of(f)}")
        if len(parts_g) != len(parts_y) or isinstance(g, (tuple, list)) != self.packer.is_tuple:
            raise ValueError(f"sde.g(t, y) must return the structure of y0 ({_shape_of(y0)}); got {_shape_of(g)}")
        for yi, fi in zip(parts_y, parts_f):
            if not isinstance(fi, torch.Tensor) or fi.shape != yi.shape:
                raise ValueError(
                    f"sde.f(t, y) must return a tensor of the shape of y, {tuple(yi.shape)}; got {_shape_of(fi)}"
                )
            if fi.dtype != yi.dtype:
                raise ValueError(f"sde.f(t, y) returned dtype {fi.dtype} for a state of dtype {yi.dtype}")
        ms = set()
        for yi, gi in zip(parts_y, parts_g):
            if not isinstance(gi, torch.Tensor):
                raise ValueError(f"sde.g(t, y) must return a tensor; got {_shape_of(gi)}")
            if gi.dtype != yi.dtype:
                raise ValueError(f"sde.g(t, y) returned dtype {gi.dtype} for a state of dtype {yi.dtype}")
            ys = tuple(yi.shape)
            if nt == "diagonal":
                if tuple(gi.shape) != ys:
                    raise ValueError(
                        f"diagonal noise: sde.g(t, y) must have the shape of y, {ys}; got {tuple(gi.shape)}"
                    )
            elif nt == "scalar":
                if tuple(gi.shape) != ys + (1,):
                    raise ValueError(
                        f"scalar noise: sde.g(t, y) must have shape (*y.shape, 1) = {ys + (1,)}; "
                        f"got {tuple(gi.shape)}"
                    )
            else:
                if gi.dim() != yi.dim() + 1 or tuple(gi.shape[:-1]) != ys:
                    raise ValueError(
                        f"{nt} noise: sde.g(t, y) must have shape (*y.shape, m) = {ys + ('m',)}; "
                        f"got {tuple(gi.shape)}"
                    )
            ms.add(gi.shape[-1] if nt != "diagonal" else None)
        if len(ms) > 1:
            raise ValueError(f"all components of g must share the Brownian dimension m; got {sorted(ms)}")
        if nt == "diagonal":
            return tuple(y.shape)
        return (*y.shape[:-1], parts_g[0].shape[-1])


def _matvec(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    # (*S, d, m) x (*S, m) -> (*S, d)
    return torch.matmul(g, v.unsqueeze(-1)).squeeze(-1)


class _ProblemLike(Protocol):
    """What :class:`FlippedProblem` reads from the problem it reverses: a :class:`Problem`, or another
    system with the same interface (the continuous adjoint's ``AdjointSDE``)."""

    @property
    def noise_type(self) -> str: ...
    @property
    def sde_type(self) -> str: ...
    @property
    def brownian_shape(self) -> Any: ...
    @property
    def state_shape(self) -> tuple[int, ...]: ...
    @property
    def prod(self) -> Callable | None: ...
    @property
    def dtype(self) -> torch.dtype: ...
    @property
    def device(self) -> torch.device: ...
    @property
    def f(self) -> Callable[..., Any]: ...
    @property
    def g(self) -> Callable[..., Any]: ...
    @property
    def g_prod(self) -> Callable[..., Any]: ...
    @property
    def gdg_prod(self) -> Callable[..., Any]: ...


class FlippedProblem:
    """The same problem in reversed time ``s = -t`` (drift negated, Brownian path reflected), so
    solvers only ever step forward."""

    def __init__(self, problem: _ProblemLike) -> None:
        self.base = problem
        self.noise_type = problem.noise_type
        self.sde_type = problem.sde_type
        self.brownian_shape = problem.brownian_shape
        self.state_shape = problem.state_shape
        self.prod = problem.prod
        self.dtype, self.device = problem.dtype, problem.device

    def f(self, s, y):
        return -self.base.f(-s, y)

    def g(self, s, y):
        return self.base.g(-s, y)

    def g_prod(self, s, y, v):
        return self.base.g_prod(-s, y, v)

    def gdg_prod(self, s, y, v1, v2):
        return self.base.gdg_prod(-s, y, v1, v2)
