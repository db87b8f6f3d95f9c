"""torchsde's Brownian motion classes on sdekit's :class:`~sdekit.core.brownian.BrownianPath`.

``BrownianInterval`` keeps torchsde's constructor and call signature; the path underneath is
sdekit's keyed Brownian-bridge tree, so its values depend on ``entropy`` only, never on the order of
queries (torchsde gives that only with ``halfway_tree=True``; ``dt``, ``tol``, ``pool_size``,
``cache_size`` and ``halfway_tree`` are accepted and validated but need no tuning here).

A given increment ``W`` (and space-time Levy area ``H``) over ``[t0, t1]`` is imposed exactly by
conditioning: with ``B`` a free path on ``[t0, t0 + T]`` and ``s = (t - t0) / T``,

    X(t) = B(t) - s (B_T - W) - 6 s (1 - s) (H_B - H),

which has the law of a Brownian motion given ``(X_T, H_X) = (W, H)`` (Foster, Lyons & Oberhauser
2020: ``W_t = s W_T + 6 s (1 - s) T H + Z_t`` with ``Z`` independent of ``(W_T, H)``).

Levy area approximations (``"davie"``, ``"foster"``) for ``return_A=True`` are
``A = H W^T - W H^T + sigma (N - N^T)`` with ``N`` standard normals keyed by the query interval;
``sigma^2 = h^2 / 12`` (Davie) or ``h / 10 (h / 10 + H_k^2 + H_l^2)`` (Foster).
"""

from __future__ import annotations

import math
import struct
import warnings
from collections import OrderedDict
from typing import Literal, overload

import torch

from ..core.brownian import BrownianPath as _KeyedPath
from ..core.noise import mix64, standard_normal
from .settings import LEVY_AREA_APPROXIMATIONS

__all__ = ["BaseBrownian", "BrownianInterval", "BrownianPath", "BrownianTree", "ReverseBrownian",
           "brownian_interval_like"]


def _float(value, name: str) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} should be a float or 0-d torch.Tensor, got shape {tuple(value.shape)}")
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} should be a float or 0-d torch.Tensor, got {type(value).__name__}")
    return float(value)


def _bits(t: float) -> int:
    return struct.unpack("<q", struct.pack("<d", t))[0]


class BaseBrownian:
    """What torchsde's solvers ask of a Brownian motion: ``__call__(ta, tb=None, return_U=False,
    return_A=False)`` and the properties ``shape``, ``dtype``, ``device``, ``levy_area_approximation``."""

    @property
    def shape(self) -> tuple[int, ...]:
        # Every subclass defines it; AttributeError (not NotImplementedError) keeps hasattr() as before.
        raise AttributeError(f"{type(self).__name__} does not define shape")

    def __call__(self, ta, tb=None, return_U: bool = False, return_A: bool = False):
        raise NotImplementedError

    def size(self):
        return self.shape


class BrownianInterval(BaseBrownian):
    """A Brownian motion on ``[t0, t1]`` queried by intervals (torchsde's signature).

    Arguments:
        t0, t1: the interval.
        size: shape of ``W``; ``()`` is one scalar motion, ``(batch,)`` a batch of scalar motions,
            ``(*batch, m)`` an ``m``-dimensional motion.
        dtype, device: of the values (default: torch's default dtype, CPU).
        entropy: seed (default: drawn from torch's global generator).
        levy_area_approximation: ``"none"``, ``"space-time"``, ``"davie"`` or ``"foster"``.
        dt, tol, pool_size, cache_size, halfway_tree: torchsde's tuning knobs; checked as torchsde
            checks them, otherwise unused (the path is exact to ``(t1 - t0) / 2**20`` and independent
            of the query order).
        W, H: the increment and space-time Levy area over ``[t0, t1]`` to condition on.
    """

    def __init__(self, t0=0.0, t1=1.0, size=None, dtype=None, device=None, entropy=None, dt=None,
                 tol=0.0, pool_size: int = 8, cache_size: int | None = 45, halfway_tree: bool = False,
                 levy_area_approximation: str = "none", W: torch.Tensor | None = None,
                 H: torch.Tensor | None = None) -> None:
        t0, t1 = _float(t0, "Initial time t0"), _float(t1, "Terminal time t1")
        if dt is not None:
            dt = _float(dt, "Expected average time step dt")
        if t0 > t1:
            raise ValueError(f"Initial time {t0} should be less than terminal time {t1}.")
        if halfway_tree:
            if not tol > 0:
                raise ValueError("`tol` should be positive.")
            if dt is not None:
                raise ValueError("`dt` is not used and should be set to `None` if `halfway_tree` is True.")
        elif tol < 0:
            raise ValueError("`tol` should be non-negative.")
        if levy_area_approximation not in LEVY_AREA_APPROXIMATIONS:
            raise ValueError(f"`levy_area_approximation` must be one of {LEVY_AREA_APPROXIMATIONS}, but got "
                             f"'{levy_area_approximation}'.")
        given = [x for x in (W, H) if x is not None]
        for name, x in (("W", W), ("H", H)):
            if x is not None and (not isinstance(x, torch.Tensor) or not x.is_floating_point()):
                raise ValueError(f"{name}={x} should be a floating point Tensor.")
        shapes = ([] if size is None else [tuple(size)]) + [tuple(x.shape) for x in given]
        if not shapes:
            raise ValueError("Must either specify `size` or pass in `W` or `H` to implicitly define the size.")
        if any(s != shapes[0] for s in shapes):
            raise ValueError("Multiple sizes found. Make sure `size` and `W` or `H` are consistent.")
        dtypes = ([] if dtype is None else [dtype]) + [x.dtype for x in given]
        devices = ([] if device is None else [torch.device(device)]) + [x.device for x in given]
        if any(d != dtypes[0] for d in dtypes) or any(d != devices[0] for d in devices):
            raise ValueError("Multiple dtypes or devices found. Make sure `dtype`, `device` and `W` or `H` are "
                             "consistent.")
        self._size = shapes[0]
        self._dtype = dtypes[0] if dtypes else torch.get_default_dtype()
        self._device = devices[0] if devices else torch.device("cpu")
        if entropy is None:
            entropy = int(torch.randint(0, 2**31 - 1, ()).item())
        self._entropy = int(entropy)
        self._levy = levy_area_approximation
        self._dt, self._tol, self._pool_size, self._cache_size = dt, tol, pool_size, cache_size
        self._halfway_tree = halfway_tree
        self._t0, self._t1 = t0, t1
        self._have_H = levy_area_approximation != "none"
        self._have_A = levy_area_approximation in ("davie", "foster")
        inner = self._size if len(self._size) > 0 else (1,)
        self._inner = inner
        self._conditioned = bool(given)
        span = t1 - t0 if t1 > t0 else 1.0
        self._path = _KeyedPath(t0, t0 + span, inner, seed=self._entropy, dtype=self._dtype, device=self._device,
                                levy_area="space-time" if (self._have_H or self._conditioned) else None,
                                cache_size=4096 if cache_size is None else max(int(cache_size), 1))
        self._span = span
        self._need_U = self._have_H or self._conditioned
        self._points: OrderedDict[float, tuple[torch.Tensor, torch.Tensor | None]] = OrderedDict()
        if self._conditioned:
            BT, UT = self._path(t0, t0 + span, return_U=True)
            HB = UT / span - 0.5 * BT
            self._W_shift = BT - (W.reshape(inner) if W is not None else BT)
            self._H_shift = HB - (H.reshape(inner) if H is not None else HB)

    # -- properties ---------------------------------------------------------------------------
    shape = property(lambda self: self._size)
    dtype = property(lambda self: self._dtype)
    device = property(lambda self: self._device)
    entropy = property(lambda self: self._entropy)
    levy_area_approximation = property(lambda self: self._levy)
    dt = property(lambda self: self._dt)
    tol = property(lambda self: self._tol)
    pool_size = property(lambda self: self._pool_size)
    cache_size = property(lambda self: self._cache_size)
    halfway_tree = property(lambda self: self._halfway_tree)

    def __repr__(self) -> str:
        return (f"BrownianInterval(t0={self._t0:.3f}, t1={self._t1:.3f}, size={self._size}, dtype={self._dtype}, "
                f"device={self._device}, entropy={self._entropy}, levy_area_approximation="
                f"{self._levy!r})")

    # -- values ---------------------------------------------------------------------------------
    def _point(self, t: float) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(W(t) - W(t0), int_t0^t (W_s - W_t0) ds)`` of the free path, from a small cache: solvers and
        the tests query each time as the end of one interval and the start of the next."""
        hit = self._points.get(t)
        if hit is not None:
            self._points.move_to_end(t)
            return hit
        value = self._path(self._t0, t, return_U=True) if self._need_U else (self._path(self._t0, t), None)
        self._points[t] = value
        if len(self._points) > 16:
            self._points.popitem(last=False)
        return value

    def _increment(self, ta: float, tb: float):
        """``(W, U)`` over ``[ta, tb]`` (``U`` None without a space-time area), in the inner shape."""
        (Wa, Ia), (Wb, Ib) = self._point(ta), self._point(tb)
        W = Wb - Wa
        U = Ib - Ia - (tb - ta) * Wa if Ia is not None and Ib is not None else None  # with self._need_U
        if self._conditioned:
            T = self._span
            a, b, h = (ta - self._t0) / T, (tb - self._t0) / T, tb - ta
            # phi(s) = 6 s (1 - s): the H-direction of the bridge
            W = W - (b - a) * self._W_shift - 6 * (b * (1 - b) - a * (1 - a)) * self._H_shift
            int_lin = 0.5 * h * h / T  # int (s(u) - s(ta)) du
            int_phi = 6 * T * ((b * b - a * a) / 2 - (b**3 - a**3) / 3 - a * (1 - a) * (b - a))
            assert U is not None  # a conditioned path tracks the area (_need_U)
            U = U - int_lin * self._W_shift - int_phi * self._H_shift
        return W, (U if self._have_H else None)

    def _levy_area(self, W, H, h: float, ta: float, tb: float):
        if len(self._size) < 2:  # a scalar motion or a batch of them: no area
            return torch.zeros(self._size, dtype=self._dtype, device=self._device)
        m = self._size[-1]
        A = H.unsqueeze(-1) * W.unsqueeze(-2) - W.unsqueeze(-1) * H.unsqueeze(-2)
        key = mix64(_bits(ta), _bits(tb), 0xA)
        N = standard_normal(self._entropy, key, (*self._size, m), self._dtype, self._device)
        N = N - N.transpose(-1, -2)
        if self._levy == "foster":
            tenth = 0.1 * h
            H2 = H**2
            std = (tenth * (tenth + H2.unsqueeze(-1) + H2.unsqueeze(-2))).sqrt()
        else:
            std = math.sqrt(h * h / 12.0)
        return A + std * N

    def _clamp(self, t: float, name: str) -> float:
        slack = 1e-12 * max(1.0, abs(self._t0), abs(self._t1))
        if self._t0 - slack <= t < self._t0 or self._t1 < t <= self._t1 + slack:  # rounding of grid times
            return min(max(t, self._t0), self._t1)
        if t < self._t0:
            warnings.warn(f"Should have {name}>=t0 but got {name}={t} and t0={self._t0}.", stacklevel=3)
            return self._t0
        if t > self._t1:
            warnings.warn(f"Should have {name}<=t1 but got {name}={t} and t1={self._t1}.", stacklevel=3)
            return self._t1
        return t

    def _query(self, ta, tb, return_U: bool, return_A: bool) -> torch.Tensor | tuple[torch.Tensor | None, ...]:
        ta, tb = float(ta), float(tb)
        if ta > tb:
            raise RuntimeError(f"Query times ta={ta:.3f} and tb={tb:.3f} must respect ta <= tb.")
        zeros = torch.zeros(self._size, dtype=self._dtype, device=self._device)
        if ta == tb:
            W, U = zeros, (zeros if self._have_H else None)
            A = None
            if self._have_A:
                A = torch.zeros((*self._size, *self._size[-1:]), dtype=self._dtype, device=self._device)
        else:
            W, U = self._increment(ta, tb)
            A = None
            if self._have_A and return_A:  # drawn only when asked for (it costs an m x m draw)
                h = tb - ta
                assert U is not None  # davie / foster imply the space-time area
                A = self._levy_area(W, U / h - 0.5 * W, h, ta, tb)
            W = W.reshape(self._size)
            U = U.reshape(self._size) if U is not None else None
        if return_U:
            return (W, U, A) if return_A else (W, U)
        return (W, A) if return_A else W

    @overload
    def __call__(self, ta, tb=None, return_U: Literal[False] = False, return_A: Literal[False] = False
                 ) -> torch.Tensor: ...
    @overload
    def __call__(self, ta, tb=None, return_U: bool = False, return_A: bool = False
                 ) -> torch.Tensor | tuple[torch.Tensor | None, ...]: ...
    def __call__(self, ta, tb=None, return_U: bool = False, return_A: bool = False
                 ) -> torch.Tensor | tuple[torch.Tensor | None, ...]:
        """``W(tb) - W(ta)``; with ``return_U`` also ``int_ta^tb (W_s - W_ta) ds``, with ``return_A`` the
        Levy area approximation. ``bm(t)`` alone is ``W(t) - W(t0)`` (torchsde warns that this is slower;
        here it is not, so it does not warn)."""
        if tb is None:
            ta, tb, tb_name = self._t0, ta, "ta"
        else:
            tb_name = "tb"
        ta = self._clamp(float(ta), "ta")
        tb = self._clamp(float(tb), tb_name)
        return self._query(ta, tb, return_U, return_A)


class ReverseBrownian(BaseBrownian):
    """``base`` seen backwards in time: ``rev(ta, tb) = base(-tb, -ta)`` (as torchsde, not negated: its
    adjoint SDE negates drift and diffusion instead)."""

    def __init__(self, base_brownian) -> None:
        self.base_brownian = base_brownian

    def __call__(self, ta, tb=None, return_U: bool = False, return_A: bool = False):
        if tb is None:
            raise TypeError("ReverseBrownian is queried on intervals: call it as rev(ta, tb)")
        return self.base_brownian(-tb, -ta, return_U=return_U, return_A=return_A)

    def __repr__(self) -> str:
        return f"ReverseBrownian(base_brownian={self.base_brownian})"

    shape = property(lambda self: self.base_brownian.shape)
    dtype = property(lambda self: self.base_brownian.dtype)
    device = property(lambda self: self.base_brownian.device)
    levy_area_approximation = property(lambda self: self.base_brownian.levy_area_approximation)


class _PointQueries(BaseBrownian):
    """torchsde's ``BrownianPath`` / ``BrownianTree``: a :class:`BrownianInterval` plus a starting value;
    a point query ``bm(t)`` returns ``w0 + W(t) - W(t0)``."""

    _interval: BrownianInterval
    _w0: torch.Tensor

    def __call__(self, t, tb=None, return_U: bool = False, return_A: bool = False):
        if tb is None and not return_U and not return_A:
            return self._interval(t) + self._w0
        return self._interval(t, tb, return_U=return_U, return_A=return_A)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(interval={self._interval})"

    shape = property(lambda self: self._interval.shape)
    dtype = property(lambda self: self._interval.dtype)
    device = property(lambda self: self._interval.device)
    levy_area_approximation = property(lambda self: self._interval.levy_area_approximation)


class BrownianPath(_PointQueries):
    """torchsde's ``BrownianPath(t0, w0)``: a Brownian motion on ``[t0, t0 + 1]`` started at ``w0``."""

    def __init__(self, t0, w0: torch.Tensor, window_size: int = 8) -> None:
        t0 = _float(t0, "t0")
        self._w0 = w0
        self._interval = BrownianInterval(t0=t0, t1=t0 + 1, size=w0.shape, dtype=w0.dtype, device=w0.device)


class BrownianTree(_PointQueries):
    """torchsde's ``BrownianTree(t0, w0, t1=None, w1=None, entropy=None, ...)``: a seeded Brownian
    motion from ``w0`` at ``t0`` (to ``w1`` at ``t1`` when given)."""

    def __init__(self, t0, w0: torch.Tensor, t1=None, w1: torch.Tensor | None = None, entropy: int | None = None,
                 tol: float = 1e-6, pool_size: int = 24, cache_depth: int = 9, safety: float | None = None) -> None:
        t0 = _float(t0, "t0")
        t1 = t0 + 1 if t1 is None else _float(t1, "t1")
        self._w0 = w0
        self._interval = BrownianInterval(t0=t0, t1=t1, size=w0.shape, dtype=w0.dtype, device=w0.device,
                                          entropy=entropy, tol=tol, pool_size=pool_size, halfway_tree=True,
                                          W=None if w1 is None else w1 - w0)


def brownian_interval_like(y: torch.Tensor, t0=0.0, t1=1.0, size=None, dtype=None, device=None, **kwargs):
    """A :class:`BrownianInterval` with the shape, dtype and device of ``y`` (unless given)."""
    return BrownianInterval(t0=t0, t1=t1, size=y.shape if size is None else size,
                            dtype=y.dtype if dtype is None else dtype, device=y.device if device is None else device,
                            **kwargs)
