"""The fixed time grid of :func:`~sdekit.core.integrate.sdeint` and :func:`~sdekit.core.integrate.odeint`,
and the time tensors the solvers see.

One implementation, used by the loop and by the adjoint strategies: per output interval ``[a, b]``,
``n = max(1, ceil((b - a) / dt - 1e-9))`` equal steps at ``a + (b - a) k / n``, ``b`` itself at the end.
The grid is computed on demand (memory in the number of output intervals, not of steps), and its time
tensors are created a chunk at a time, so a strategy can replay a long solve step by step in bounded
memory.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterator, Sequence
from typing import overload

import torch

_CHUNK = 32  # time tensors are materialised this many steps at a time


class StepGrid:
    """The fixed grid for increasing output times ``ts`` and a largest step ``dt``.

    Indexing by an int gives a time (a Python float); by a slice, a :class:`GridView`. ``saves`` holds
    the grid index of every output time (``saves[0] == 0``), ``pieces`` the ``(a, b, n)`` of every output
    interval.
    """

    def __init__(self, ts: Sequence[float], dt: float) -> None:
        self.pieces: list[tuple[float, float, int]] = []
        self.saves = [0]
        for a, b in zip(ts[:-1], ts[1:]):
            n = max(1, math.ceil((b - a) / dt - 1e-9))
            self.pieces.append((a, b, n))
            self.saves.append(self.saves[-1] + n)

    def __len__(self) -> int:
        return self.saves[-1] + 1

    @overload
    def __getitem__(self, k: int) -> float: ...

    @overload
    def __getitem__(self, k: slice) -> GridView: ...

    def __getitem__(self, k: int | slice) -> float | GridView:
        if isinstance(k, slice):
            return GridView(self, range(len(self))[k])
        if k < 0:
            k += len(self)
        i = bisect.bisect_right(self.saves, k) - 1
        if i == len(self.pieces):
            return self.pieces[-1][1]
        a, b, n = self.pieces[i]
        j = k - self.saves[i]
        return a if j == 0 else a + (b - a) * j / n

    def __iter__(self) -> Iterator[float]:
        for a, b, n in self.pieces:
            yield a
            for j in range(1, n):
                yield a + (b - a) * j / n
        yield self.pieces[-1][1]


class GridView:
    """A range of grid indices (possibly reversed) of a :class:`StepGrid`, times multiplied by ``sign``;
    behaves like the list of those times."""

    def __init__(self, grid: StepGrid, indices: range, sign: float = 1.0) -> None:
        self.grid, self.indices, self.sign = grid, indices, sign

    def __len__(self) -> int:
        return len(self.indices)

    @overload
    def __getitem__(self, k: int) -> float: ...

    @overload
    def __getitem__(self, k: slice) -> GridView: ...

    def __getitem__(self, k: int | slice) -> float | GridView:
        if isinstance(k, slice):
            return GridView(self.grid, self.indices[k], self.sign)
        return self.sign * self.grid[self.indices[k]]

    def __iter__(self) -> Iterator[float]:
        grid, sign = self.grid, self.sign
        return (sign * grid[i] for i in self.indices)

    def negated(self) -> GridView:
        return GridView(self.grid, self.indices, -self.sign)


class LazyTimes:
    """The time tensors of a grid, created ``_CHUNK`` at a time (two chunks cached for random access;
    iteration walks the chunks in order)."""

    def __init__(self, grid, dtype, device) -> None:
        self.grid, self.dtype, self.device = grid, dtype, device
        self._cache: dict[int, tuple] = {}

    def __len__(self) -> int:
        return len(self.grid)

    def _chunk(self, c: int) -> tuple:
        values = [self.grid[i] for i in range(c * _CHUNK, min(len(self.grid), (c + 1) * _CHUNK))]
        return torch.tensor(values, dtype=self.dtype, device=self.device).unbind(0)

    def __getitem__(self, k: int) -> torch.Tensor:
        c, j = divmod(k, _CHUNK)
        chunk = self._cache.get(c)
        if chunk is None:
            chunk = self._chunk(c)
            if len(self._cache) >= 2:
                self._cache.pop(next(iter(self._cache)))
            self._cache[c] = chunk
        return chunk[j]

    def __iter__(self) -> Iterator[torch.Tensor]:
        values: list[float] = []
        for t in self.grid:
            values.append(t)
            if len(values) == _CHUNK:
                yield from torch.tensor(values, dtype=self.dtype, device=self.device).unbind(0)
                values = []
        if values:
            yield from torch.tensor(values, dtype=self.dtype, device=self.device).unbind(0)


def time_tensors(dtype, device) -> Callable:
    """``t_of(values)``: the 0-d time tensors of the state's dtype that solvers and ``f``, ``g`` see (as
    torchsde passes ``t``); a list of floats eagerly, a :class:`StepGrid` or :class:`GridView` lazily."""

    def t_of(values):
        if isinstance(values, (StepGrid, GridView)):
            return LazyTimes(values, dtype, device)
        return torch.tensor(values, dtype=dtype, device=device).unbind(0)

    return t_of
