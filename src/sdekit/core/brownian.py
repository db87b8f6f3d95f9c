"""Brownian motion sources.

A Brownian source is any callable ``bm(ta, tb)`` returning the increment ``W(tb) - W(ta)``; sources
that support strong order 1.5 solvers also accept ``return_U=True`` and then return
``(W(tb) - W(ta), U)`` with the space-time integral ``U = int_ta^tb (W(s) - W(ta)) ds`` (the torchsde
convention, so a ``torchsde.BrownianInterval`` works as well).

* :class:`BrownianPath` is queryable on any interval, deterministic in its seed and independent of the
  order of queries: the path is a dyadic Brownian-bridge tree whose every node draws its noise from a
  key of its own.
* :class:`BrownianGrid` holds increments on a fixed time grid, drawn from keyed chunks: a forward
  pass streams them block by block (the fast source for non-adaptive solves), any other order of
  requests regenerates a chunk by the same draws.
"""

from __future__ import annotations

import math
import struct
from collections import OrderedDict
from typing import Literal, overload

import torch

from .noise import keyed_generator, mix64, next_normal, normalize_seed, standard_normal

_RSQRT3 = 1.0 / math.sqrt(3.0)


def _check_shape(shape) -> tuple[int, ...]:
    if isinstance(shape, int):
        shape = (shape,)
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise TypeError(f"shape must be a tuple of ints, got {shape!r}") from None
    if any(s <= 0 for s in shape):
        raise ValueError(f"shape must have positive entries, got {shape}")
    return shape


def _float_bits(t: float) -> int:
    return struct.unpack("<q", struct.pack("<d", t))[0] & 0x7FFFFFFFFFFFFFFF


@overload
def _split(W: torch.Tensor, H: None, left: float, right: float, X1: torch.Tensor,
           X2: torch.Tensor | None) -> tuple[torch.Tensor, None, torch.Tensor, None]: ...
@overload
def _split(W: torch.Tensor, H: torch.Tensor, left: float, right: float, X1: torch.Tensor,
           X2: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]: ...
@overload
def _split(W: torch.Tensor, H: torch.Tensor | None, left: float, right: float, X1: torch.Tensor,
           X2: torch.Tensor | None
           ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]: ...
def _split(W, H, left: float, right: float, X1, X2):
    """Split the increment ``W`` (and normalised space-time area ``H``) of an interval of length
    ``left + right`` at an interior point, given standard normals ``X1``, ``X2``.

    Returns ``(W_left, H_left, W_right, H_right)`` drawn from the exact law conditional on
    ``(W, H)``: the ordinary Brownian bridge without ``H``; with ``H`` the bridge for the pair
    (W, H) of Foster, Lyons & Oberhauser, "An optimal polynomial approximation of Brownian motion"
    (SIAM J. Numer. Anal. 2020), in the form torchsde uses. ``H`` is normalised so that
    ``int (W(s) - W(start)) ds = h * (W / 2 + H)`` over an interval of length ``h``.
    """
    h = left + right
    if H is None:
        W_left = (left / h) * W + math.sqrt(left * right / h) * X1
        return W_left, None, W - W_left, None
    v = 0.5 * math.sqrt(left * right / (left**3 + right**3))
    a = v * left**2 / h
    b = v * right**2 / h
    c = v * _RSQRT3
    third = 2 * (a * left + b * right) / h
    first_l, first_r = left / h, right / h
    W_left = first_l * W + (6 * first_l * right / h) * H + third * X1
    H_left = first_l**2 * H - a * X1 + c * right * X2
    W_right = first_r * W - (6 * first_r * left / h) * H - third * X1
    H_right = first_r**2 * H - b * X1 - c * left * X2
    return W_left, H_left, W_right, H_right


class BrownianPath:
    """A Brownian motion on ``[t0, t1]`` that can be queried on any sub-interval, in any order.

    The path is a binary tree of Brownian bridges over dyadic sub-intervals of ``[t0, t1]``, down to
    ``depth`` levels; a query point inside a leaf is drawn from the exact bridge conditioned on the
    leaf, with noise keyed by the point. Every random number is a function of ``(seed, node)``, so
    values do not depend on the order or repetition of queries, and refining steps or solving an
    adjoint backwards sees the same path. Increments are differences of ``W(t)``, so
    ``W(a, c) = W(a, b) + W(b, c)`` up to rounding.

    Arguments:
        t0, t1: the time interval, ``t0 < t1``.
        shape: shape of ``W(t)``, e.g. ``(batch, d)`` or ``(batch, C, H, W)``.
        seed: an int, or one int per entry of ``shape[0]`` (per-sample seeds: sample ``b`` then
            depends on ``seed[b]`` only, not on the batch it is drawn in). ``None`` draws a seed from
            torch's global generator.
        dtype, device: of the returned increments (default: torch's default dtype, CPU). Numbers are
            generated identically on every device.
        levy_area: ``None`` or ``"space-time"``; the latter also tracks the space-time Levy area so
            ``bm(ta, tb, return_U=True)`` works (needed by the strong order 1.5 ``srk`` solver).
        depth: number of dyadic levels (default 20); queries closer than ``(t1 - t0) / 2**depth``
            to each other within one leaf are not jointly exact.
        cache_size: number of tree nodes kept in an LRU cache.

    Example:
        >>> bm = BrownianPath(0.0, 1.0, (4, 2), seed=0)
        >>> dW = bm(0.25, 0.5)  # (4, 2), variance 0.25
    """

    def __init__(
        self,
        t0: float,
        t1: float,
        shape,
        *,
        seed=None,
        dtype: torch.dtype | None = None,
        device=None,
        levy_area: str | None = None,
        depth: int = 20,
        cache_size: int = 512,
    ) -> None:
        t0, t1 = float(t0), float(t1)
        if not (math.isfinite(t0) and math.isfinite(t1)) or not t0 < t1:
            raise ValueError(f"BrownianPath needs finite t0 < t1, got t0={t0}, t1={t1}")
        if levy_area not in (None, "space-time"):
            raise ValueError(f"levy_area must be None or 'space-time', got {levy_area!r}")
        if not isinstance(depth, int) or not 1 <= depth <= 40:
            raise ValueError(f"depth must be an int in [1, 40], got {depth!r}")
        self.t0, self.t1 = t0, t1
        self.shape = _check_shape(shape)
        self.dtype = dtype or torch.get_default_dtype()
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.levy_area = levy_area
        self.depth = depth
        self.seed = normalize_seed(seed, self.shape[0])
        self._cache: OrderedDict[
            int, tuple[tuple[torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor | None]]
        ] = OrderedDict()
        self._cache_size = max(int(cache_size), 2 * depth + 4)
        T = t1 - t0
        W = math.sqrt(T) * self._normal(1, 0)
        H = math.sqrt(T / 12.0) * self._normal(1, 1) if levy_area else None
        self._root = (W, H)

    def __repr__(self) -> str:
        return (
            f"BrownianPath(t0={self.t0}, t1={self.t1}, shape={self.shape}, dtype={self.dtype}, "
            f"device={self.device}, levy_area={self.levy_area!r}, depth={self.depth})"
        )

    def _normal(self, node: int, stream: int, extra: int = 0) -> torch.Tensor:
        key = (node << 3 | stream) if not extra else (node << 3 | stream) ^ (extra * 0x9E3779B1)
        return standard_normal(self.seed, key, self.shape, self.dtype, self.device)

    def _children(self, node: int, W: torch.Tensor, H: torch.Tensor | None, h: float
                  ) -> tuple[tuple[torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor | None]]:
        cached = self._cache.get(node)
        if cached is not None:
            self._cache.move_to_end(node)
            return cached
        X1 = self._normal(node, 2)
        X2 = self._normal(node, 3) if H is not None else None
        WL, HL, WR, HR = _split(W, H, 0.5 * h, 0.5 * h, X1, X2)
        out = ((WL, HL), (WR, HR))
        self._cache[node] = out
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return out

    def _value(self, t: float) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(W(t) - W(t0), int_t0^t (W(s) - W(t0)) ds)`` (the latter ``None`` without levy area)."""
        levy = self.levy_area is not None
        zero = torch.zeros(self.shape, dtype=self.dtype, device=self.device)
        if t <= self.t0:
            return zero, (zero if levy else None)
        T = self.t1 - self.t0
        W, H = self._root
        node, start, h = 1, self.t0, T
        W_acc, I_acc = zero, (zero if levy else None)
        for level in range(self.depth + 1):
            if t >= start + h:
                I_end = I_acc + h * (0.5 * W + H) + h * W_acc if I_acc is not None and H is not None else None
                return W_acc + W, I_end
            if t == start:
                return W_acc, I_acc
            if level == self.depth:
                break
            (WL, HL), (WR, HR) = self._children(node, W, H, h)
            half = 0.5 * h
            if t <= start + half:
                node, W, H = 2 * node, WL, HL
            else:
                if I_acc is not None and HL is not None:
                    I_acc = I_acc + half * (0.5 * WL + HL) + half * W_acc
                W_acc = W_acc + WL
                node, W, H, start = 2 * node + 1, WR, HR, start + half
            h = 0.5 * h
        # Inside a leaf: an exact bridge draw at t, keyed by the point.
        left = t - start
        right = h - left
        bits = _float_bits(t)
        X1 = self._normal(node, 4, bits)
        X2 = self._normal(node, 5, bits) if levy else None
        W_left, H_left, _, _ = _split(W, H, left, right, X1, X2)
        I_out = (I_acc + left * (0.5 * W_left + H_left) + left * W_acc
                 if I_acc is not None and H_left is not None else None)
        return W_acc + W_left, I_out

    @overload
    def __call__(self, ta, tb=None, return_U: Literal[False] = False) -> torch.Tensor: ...
    @overload
    def __call__(self, ta, tb=None, *, return_U: Literal[True]) -> tuple[torch.Tensor, torch.Tensor]: ...
    @overload
    def __call__(self, ta, tb, return_U: Literal[True]) -> tuple[torch.Tensor, torch.Tensor]: ...
    @overload
    def __call__(self, ta, tb=None, return_U: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]: ...
    def __call__(self, ta, tb=None, return_U: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Increment ``W(tb) - W(ta)``; with ``return_U=True`` also ``int_ta^tb (W(s) - W(ta)) ds``.

        ``bm(t)`` alone returns ``W(t) - W(t0)``.
        """
        if tb is None:
            ta, tb = self.t0, ta
        ta, tb = float(ta), float(tb)
        lo, hi = min(ta, tb), max(ta, tb)
        if lo < self.t0 - 1e-12 * (self.t1 - self.t0) or hi > self.t1 + 1e-12 * (self.t1 - self.t0):
            raise ValueError(
                f"BrownianPath on [{self.t0}, {self.t1}] was queried on [{lo}, {hi}]; "
                "queries must lie inside the interval the path was built for"
            )
        if return_U and self.levy_area is None:
            raise ValueError(
                "return_U=True needs the space-time Levy area: build the path with levy_area='space-time'"
            )
        Wa, Ia = self._value(ta)
        Wb, Ib = self._value(tb)
        dW = Wb - Wa
        if not return_U:
            return dW
        if ta > tb:
            raise ValueError(f"return_U=True needs ta <= tb, got ta={ta}, tb={tb}")
        assert Ia is not None and Ib is not None  # levy_area is set (checked above)
        return dW, Ib - Ia - (tb - ta) * Wa


class BrownianGrid:
    """Brownian increments on a fixed time grid, the fast source for non-adaptive solves.

    The grid is cut into chunks of consecutive steps and each chunk into blocks of a few steps (as
    many as fill about 256 KiB). With one integer seed each chunk has a generator keyed by
    ``(seed, chunk)`` whose successive draws are the chunk's blocks; with per-sample seeds every step
    has a key of its own. A forward pass streams the blocks as it reaches them, as cheap as a
    hand-written ``randn`` per step and warm in cache; any other order of requests regenerates the
    whole chunk by the same draws, hence the same numbers, so memory stays bounded however many
    steps there are.

    Arguments:
        times: the grid, a strictly monotone 1-D sequence or tensor of at least two times.
        shape: shape of one increment, e.g. ``(batch, d)``.
        seed: an int or one int per entry of ``shape[0]`` (per-sample seeds); ``None`` draws one from
            torch's global generator.
        dtype, device: of the increments.
        levy_area: ``None`` or ``"space-time"`` (then ``bm(ta, tb, return_U=True)`` works for
            single grid steps).
    """

    _BLOCK_NUMBERS = 1 << 16  # numbers per draw (256 KiB in float32): bigger draws fall out of cache
    _CHUNK_NUMBERS = 1 << 22  # at most this many numbers in a regenerated chunk (16 MiB in float32)

    def __init__(self, times, shape, *, seed=None, dtype=None, device=None, levy_area=None) -> None:
        times = torch.as_tensor(times, dtype=torch.float64).detach().cpu().flatten()
        if times.numel() < 2:
            raise ValueError(f"times must hold at least two grid points, got {times.numel()}")
        steps = times[1:] - times[:-1]
        if not (bool((steps > 0).all()) or bool((steps < 0).all())):
            raise ValueError("times must be strictly monotone")
        if levy_area not in (None, "space-time"):
            raise ValueError(f"levy_area must be None or 'space-time', got {levy_area!r}")
        self.shape = _check_shape(shape)
        self.dtype = dtype or torch.get_default_dtype()
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.levy_area = levy_area
        self.seed = normalize_seed(seed, self.shape[0])
        self.times = times
        self._grid = times.tolist()
        self._n = len(self._grid) - 1
        self._index = {t: i for i, t in enumerate(self._grid)}
        self._abs_steps = steps.abs()
        # the step lengths in the increments' dtype, on their device, once (not per drawn block)
        self._dt = self._abs_steps.to(self.dtype).to(self.device).reshape(-1, *([1] * len(self.shape)))
        numel = max(math.prod(self.shape), 1)
        self.block = int(max(1, min(256, self._BLOCK_NUMBERS // numel)))
        self.chunk = self.block * max(1, min(256, self._CHUNK_NUMBERS // numel) // self.block)
        self._chunk_id = -1  # the regenerated chunk held in _W, _U
        self._W: tuple[torch.Tensor, ...] = ()
        self._U: tuple[torch.Tensor, ...] | None = None
        # The forward stream: the next step it serves, its current block and the chunk's generators.
        self._stream_k, self._stream_lo = -1, 0
        self._sW: tuple[torch.Tensor, ...] = ()
        self._sU: tuple[torch.Tensor, ...] | None = None
        self._gens: tuple[torch.Generator, ...] = ()

    def __len__(self) -> int:
        return self._n

    def _block(self, lo: int, gens) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...] | None]:
        # The block of steps starting at step lo: the next draws of the chunk's generators, or each
        # step's own keys (per-sample seeds).
        n = min(lo + self.block, self._n) - lo
        shape = (n, *self.shape)
        if isinstance(self.seed, int):
            Z = next_normal(gens[0], shape, self.dtype, self.device)
            H = next_normal(gens[1], shape, self.dtype, self.device) if self.levy_area else None
        else:
            Z = torch.stack([standard_normal(self.seed, 2 * k, self.shape, self.dtype, self.device)
                             for k in range(lo, lo + n)])
            H = torch.stack([standard_normal(self.seed, 2 * k + 1, self.shape, self.dtype, self.device)
                             for k in range(lo, lo + n)]) if self.levy_area else None
        dt = self._dt[lo:lo + n]
        W = Z.mul_(dt.sqrt())  # in place on the fresh draws
        if H is None:
            return W.unbind(0), None
        # U = int_s^t (W_r - W_s) dr = dt (W / 2 + H), H ~ N(0, dt / 12) the space-time Levy area.
        U = (0.5 * W + H.mul_((dt / 12.0).sqrt())).mul_(dt)
        return W.unbind(0), U.unbind(0)

    def _generators(self, chunk_id: int) -> tuple[torch.Generator, ...]:
        if not isinstance(self.seed, int):
            return ()
        return tuple(keyed_generator(self.seed, 2 * chunk_id + s) for s in range(2 if self.levy_area else 1))

    def _load(self, chunk_id: int) -> None:
        lo = chunk_id * self.chunk
        gens = self._generators(chunk_id)
        blocks = [self._block(b, gens) for b in range(lo, min(lo + self.chunk, self._n), self.block)]
        self._W = tuple(W for Ws, _ in blocks for W in Ws)
        self._U = tuple(U for _, Us in blocks for U in Us) if self.levy_area else None  # type: ignore[union-attr]
        self._chunk_id = chunk_id

    @overload
    def increment(self, k: int, return_U: Literal[False] = False) -> torch.Tensor: ...
    @overload
    def increment(self, k: int, return_U: Literal[True]) -> tuple[torch.Tensor, torch.Tensor]: ...
    @overload
    def increment(self, k: int, return_U: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]: ...
    def increment(self, k: int, return_U: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The increment over grid step ``k`` (from ``times[k]`` to ``times[k + 1]``)."""
        if return_U and not self.levy_area:
            raise ValueError("return_U=True needs levy_area='space-time' on the BrownianGrid")
        if k == self._stream_k or (k % self.chunk == 0 and k // self.chunk != self._chunk_id and 0 <= k < self._n):
            return self._stream(k, return_U)
        if not 0 <= k < self._n:
            raise IndexError(f"step k={k} is outside the grid's {self._n} steps")
        chunk_id, j = divmod(k, self.chunk)
        if chunk_id != self._chunk_id:
            self._load(chunk_id)
        if return_U:
            assert self._U is not None
            return self._W[j], self._U[j]
        return self._W[j]

    def _stream(self, k: int, return_U: bool):
        # Step k of a forward pass: the next step of the stream, or the first of a chunk to stream.
        j = k - self._stream_lo
        if k != self._stream_k or j == len(self._sW):
            if k % self.chunk == 0:
                self._gens = self._generators(k // self.chunk)
            self._sW, self._sU = self._block(k, self._gens)
            self._stream_lo, j = k, 0
        self._stream_k = k + 1 if k + 1 < self._n else -1
        if return_U:
            assert self._sU is not None
            return self._sW[j], self._sU[j]
        return self._sW[j]

    def _locate(self, t, name: str) -> int:
        t = float(t)
        i = self._index.get(t)
        if i is None:
            tol = 1e-9 * float(self._abs_steps.max())
            j = int(torch.argmin((self.times - t).abs()))
            if abs(self._grid[j] - t) > tol:
                raise ValueError(
                    f"BrownianGrid can only be queried at its grid times; {name}={t} is not one "
                    f"(grid from {self._grid[0]} to {self._grid[-1]} with {len(self)} steps). "
                    "Use BrownianPath for arbitrary query times"
                )
            i = j
        return i

    @overload
    def __call__(self, ta, tb, return_U: Literal[False] = False) -> torch.Tensor: ...
    @overload
    def __call__(self, ta, tb, return_U: Literal[True]) -> tuple[torch.Tensor, torch.Tensor]: ...
    @overload
    def __call__(self, ta, tb, return_U: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]: ...
    def __call__(self, ta, tb, return_U: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        i, j = self._locate(ta, "ta"), self._locate(tb, "tb")
        if return_U:
            if j != i + 1:
                raise ValueError("return_U=True is available for single grid steps only")
            return self.increment(i, return_U=True)
        if i == j:
            return torch.zeros(self.shape, dtype=self.dtype, device=self.device)
        lo, hi = min(i, j), max(i, j)
        total = self.increment(lo)
        for k in range(lo + 1, hi):
            total = total + self.increment(k)
        return total if j > i else -total


class _ChunkedBrownian:
    """Brownian increments on a fixed grid (any sequence of times, e.g. a ``StepGrid``), one seeded
    :class:`BrownianGrid` per chunk of ``_CHUNK`` steps, two chunks cached: the default source
    (``bm=None``) of the step-level adjoint strategies, queried by step index in the forward and the
    backward pass, with memory independent of the number of steps."""

    _CHUNK = 32

    def __init__(self, grid, shape, dtype, device, levy_area) -> None:
        self.grid, self.shape, self.dtype, self.device = grid, shape, dtype, device
        self.levy_area = levy_area
        self.seed = normalize_seed(None, None)
        self._chunks: dict[int, BrownianGrid] = {}

    @overload
    def increment(self, k: int, return_U: Literal[False] = False) -> torch.Tensor: ...
    @overload
    def increment(self, k: int, return_U: Literal[True]) -> tuple[torch.Tensor, torch.Tensor]: ...
    @overload
    def increment(self, k: int, return_U: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]: ...
    def increment(self, k: int, return_U: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        c, j = divmod(k, self._CHUNK)
        source = self._chunks.get(c)
        if source is None:
            last = min(len(self.grid) - 1, (c + 1) * self._CHUNK)
            times = [self.grid[i] for i in range(c * self._CHUNK, last + 1)]
            source = BrownianGrid(times, self.shape, seed=mix64(self.seed, c), dtype=self.dtype,
                                  device=self.device, levy_area=self.levy_area)
            if len(self._chunks) >= 2:
                self._chunks.pop(next(iter(self._chunks)))
            self._chunks[c] = source
        return source.increment(j, return_U=return_U)
