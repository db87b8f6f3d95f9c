r"""Sudoku data without downloads: valid grids, puzzles with a unique solution, a validity check that tests
rows, columns **and** boxes, and one-hot encodings for the simplex diffusion (DDSM's Sudoku experiment,
Avdeyev et al. 2023, ICML; the official accuracy check ``sudoku_acc`` tests rows and columns only).

A grid of side ``s = m^2`` (``4`` or ``9``; any ``m >= 2`` works) holds digits ``1 .. s``; puzzles mark blanks
with ``0``.

**Grids.** :func:`sudoku_grids` maps the base grid ``G[r, c] = (m (r mod m) + r // m + c) mod s + 1`` through
the validity-preserving transformations: a random permutation of the digits, of the rows within each band, of
the bands, of the columns within each stack, of the stacks, and a random transposition, all batched. The
grids are uniform over the orbit of the base grid under that group, not over all Sudoku grids: for 4x4 the
orbit holds 192 of the 288 grids (measured), for 9x9 a small fraction of the ``6.67e21`` grids. 1000 grids take
about 10 ms (4x4) and 20 ms (9x9).

**Puzzles.** :func:`sudoku_puzzles` removes clues of a grid in random order, keeping a removal only while
:func:`sudoku_solutions` (an exact backtracking solver on bitmasks that always branches on the cell with the
fewest candidates) still finds exactly one solution, until the requested clue count is reached; if the
puzzle becomes minimal above it, a new grid is drawn. Cost (one core, mean over 40 puzzles): 3 ms per 4x4
puzzle at 4 clues; 9x9: 7 ms at 30 clues, 21 ms at 25, 0.28 s at 22 (restarts: random removal rarely gets
much below 22).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = [
    "SudokuValidity", "sudoku_grids", "sudoku_validity", "check_sudoku", "sudoku_solutions", "sudoku_puzzles",
    "sudoku_one_hot", "sudoku_from_one_hot", "SudokuScoreNet",
]


def _box_side(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"size must be an int, got {type(size).__name__}")
    m = math.isqrt(size)
    if size < 4 or m * m != size:
        raise ValueError(f"size must be a square >= 4 (4 or 9 for the usual Sudoku), got size={size}")
    return m


def _check_grid(grid: torch.Tensor, name: str, allow_blank: bool) -> int:
    """Checks ``grid: (..., s, s)`` integer digits in ``1 .. s`` (``0 .. s`` with blanks); returns ``m``."""
    if not isinstance(grid, torch.Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(grid).__name__}")
    if grid.dtype.is_floating_point or grid.is_complex() or grid.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer digits, got dtype {grid.dtype}")
    if grid.dim() < 2 or grid.shape[-1] != grid.shape[-2]:
        raise ValueError(f"{name} must have shape (..., s, s) (square), got shape {tuple(grid.shape)}")
    s = grid.shape[-1]
    m = math.isqrt(s)
    if s < 4 or m * m != s:
        raise ValueError(f"{name} must have side s = m^2 >= 4 (4x4 or 9x9), got shape {tuple(grid.shape)}")
    lo = 0 if allow_blank else 1
    if grid.numel() and (int(grid.min()) < lo or int(grid.max()) > s):
        raise ValueError(f"{name} must hold digits in {lo} .. {s}"
                         f"{' (0 = blank)' if allow_blank else ''}, got values in "
                         f"{int(grid.min())} .. {int(grid.max())}")
    return m


def _random_permutations(n: int, k: int, generator: torch.Generator | None, shape=()) -> torch.Tensor:
    return torch.rand(n, *shape, k, generator=generator).argsort(dim=-1)


def sudoku_grids(n: int, size: int = 9, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""``n`` valid Sudoku grids of side ``size`` (module docstring: random digit, row-in-band, band,
    column-in-stack and stack permutations and a transposition of the base grid).

    Arguments:
        n: number of grids. size: side ``s = m^2`` (4 or 9). generator: a seeded ``torch.Generator``.

    Returns:
        ``(n, s, s)`` int64 digits ``1 .. s``.

    Raises:
        ValueError: ``n < 0`` or ``size`` not a square ``>= 4``.
    """
    m = _box_side(size)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    r = torch.arange(size)
    base = (m * (r[:, None] % m) + r[:, None] // m + r[None, :]) % size + 1        # (s, s)

    def lines() -> torch.Tensor:                                                   # (n, s) row/column order
        bands = _random_permutations(n, m, generator)                              # (n, m)
        within = _random_permutations(n, m, generator, (m,))                       # (n, m, m)
        return (bands[:, :, None] * m + within).reshape(n, size)

    rows, cols = lines(), lines()
    grids = base[rows[:, :, None], cols[:, None, :]]                               # (n, s, s)
    digits = torch.cat([torch.zeros(n, 1, dtype=torch.long),
                        _random_permutations(n, size, generator) + 1], dim=1)      # digit d -> digits[d]
    grids = torch.gather(digits, 1, grids.reshape(n, -1)).reshape(n, size, size)
    flip = torch.rand(n, generator=generator) < 0.5
    return torch.where(flip[:, None, None], grids.transpose(1, 2), grids)


@dataclass(frozen=True)
class SudokuValidity:
    """Per-grid validity, each a bool tensor of the batch shape: every row, every column and every box a
    permutation of ``1 .. s``. ``rows_and_columns`` is what the official DDSM check measures."""

    rows: torch.Tensor
    columns: torch.Tensor
    boxes: torch.Tensor

    @property
    def rows_and_columns(self) -> torch.Tensor:
        return self.rows & self.columns

    @property
    def valid(self) -> torch.Tensor:
        return self.rows & self.columns & self.boxes


def sudoku_validity(grid: torch.Tensor) -> SudokuValidity:
    r"""Checks rows, columns and boxes of complete grids separately.

    Arguments:
        grid: ``(..., s, s)`` integer digits in ``1 .. s``.

    Returns:
        :class:`SudokuValidity` with bool tensors of shape ``(...)``.

    Raises:
        TypeError: a non-integer tensor. ValueError: a non-square grid, a side that is not ``m^2 >= 4``, digits
            outside ``1 .. s``.
    """
    m = _check_grid(grid, "grid", allow_blank=False)
    s = m * m
    onehot = torch.nn.functional.one_hot(grid.long() - 1, s)                        # (..., s, s, s)
    rows = (onehot.sum(-2) == 1).all(-1).all(-1)
    columns = (onehot.sum(-3) == 1).all(-1).all(-1)
    boxed = onehot.reshape(*grid.shape[:-2], m, m, m, m, s).sum((-4, -2))           # (..., m, m, s) per box
    boxes = (boxed == 1).all(-1).all(-1).all(-1)
    return SudokuValidity(rows, columns, boxes)


def _first_conflict(grid: torch.Tensor, m: int) -> str | None:
    """The first repeated digit of one ``(s, s)`` grid (blanks 0 ignored), described, or None."""
    s = m * m
    cells = grid.tolist()
    units = [(f"row {r}", [(r, c) for c in range(s)]) for r in range(s)]
    units += [(f"column {c}", [(r, c) for r in range(s)]) for c in range(s)]
    units += [(f"box ({br}, {bc})", [(br * m + i, bc * m + j) for i in range(m) for j in range(m)])
              for br in range(m) for bc in range(m)]
    for name, unit in units:
        seen: dict[int, tuple[int, int]] = {}
        for r, c in unit:
            d = cells[r][c]
            if d and d in seen:
                return f"{name} holds digit {d} twice (cells {seen[d]} and {(r, c)})"
            seen[d] = (r, c)
    return None


def check_sudoku(grid: torch.Tensor, *, blanks: bool = False) -> torch.Tensor:
    r"""Raises a ValueError unless every grid of ``grid`` is a valid Sudoku: digits ``1 .. s`` (``0 .. s`` with
    ``blanks=True``, for puzzles) and no digit twice in a row, a column or a box.

    Arguments:
        grid: ``(..., s, s)`` integer digits, ``s = m^2`` (4 or 9).
        blanks: allow ``0`` (a blank cell of a puzzle); the given digits must still not conflict.

    Returns:
        ``grid`` unchanged, so the check can wrap an argument.

    Raises:
        TypeError: a non-integer tensor. ValueError: a non-square grid or a side that is not ``m^2 >= 4``,
            digits out of range, or a repeated digit (the message names the grid index, the row, column or box,
            the digit and both cells).
    """
    m = _check_grid(grid, "grid", allow_blank=blanks)
    s = m * m
    flat = grid.reshape(-1, s, s)
    if not blanks:
        ok = sudoku_validity(flat).valid
        bad = (~ok).nonzero().flatten().tolist()
    else:
        bad = list(range(flat.shape[0]))
    for i in bad:
        conflict = _first_conflict(flat[i], m)
        if conflict is not None:
            where = f"grid[{', '.join(map(str, _unravel(i, tuple(grid.shape[:-2]))))}]" if grid.dim() > 2 else "grid"
            kind = "puzzle" if blanks else "Sudoku grid"
            raise ValueError(f"{where} is not a valid {kind}: {conflict}")
    return grid


def _unravel(i: int, shape: tuple[int, ...]) -> list[int]:
    out = []
    for n in reversed(shape):
        out.append(i % n)
        i //= n
    return out[::-1]


def sudoku_solutions(puzzle: torch.Tensor, limit: int = 2) -> list[torch.Tensor]:
    r"""Up to ``limit`` solutions of one puzzle by exact backtracking (bitmask candidates, branching on the
    cell with the fewest; complete, so ``len(result) < limit`` means that is all of them).

    Arguments:
        puzzle: ``(s, s)`` integer digits ``0 .. s`` (0 = blank). limit: stop after this many solutions.

    Returns:
        a list of ``(s, s)`` int64 solutions (empty if the clues are consistent but admit no completion).

    Raises:
        ValueError: a batched, non-square or wrongly sized puzzle, digits outside ``0 .. s``, ``limit < 1``, or
            clues that repeat a digit in a row, column or box (the message names them).
    """
    m = _check_grid(puzzle, "puzzle", allow_blank=True)
    if puzzle.dim() != 2:
        raise ValueError(f"puzzle must be one (s, s) grid, got shape {tuple(puzzle.shape)}")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be an int >= 1, got {limit!r}")
    s = m * m
    cells = [int(d) for d in puzzle.reshape(-1).tolist()]
    full = (1 << s) - 1
    row_used, col_used, box_used = [0] * s, [0] * s, [0] * s
    box_of = [(i // s // m) * m + (i % s) // m for i in range(s * s)]
    for i, d in enumerate(cells):
        if d:
            bit, r, c, b = 1 << (d - 1), i // s, i % s, box_of[i]
            if (row_used[r] | col_used[c] | box_used[b]) & bit:
                check_sudoku(puzzle, blanks=True)  # raises, naming the conflict
            row_used[r] |= bit
            col_used[c] |= bit
            box_used[b] |= bit
    blanks = [i for i, d in enumerate(cells) if d == 0]
    found: list[torch.Tensor] = []

    def search() -> bool:                        # True once `limit` solutions are found
        best, best_free, best_count = -1, 0, s + 1
        for i in blanks:
            if cells[i]:
                continue
            free = full & ~(row_used[i // s] | col_used[i % s] | box_used[box_of[i]])
            count = free.bit_count()
            if count < best_count:
                best, best_free, best_count = i, free, count
                if count <= 1:
                    break
        if best < 0:
            found.append(torch.tensor(cells, dtype=torch.long).reshape(s, s))
            return len(found) >= limit
        r, c, b = best // s, best % s, box_of[best]
        free = best_free
        while free:
            bit = free & -free
            free ^= bit
            cells[best] = bit.bit_length()
            row_used[r] |= bit
            col_used[c] |= bit
            box_used[b] |= bit
            done = search()
            row_used[r] ^= bit
            col_used[c] ^= bit
            box_used[b] ^= bit
            cells[best] = 0
            if done:
                return True
        return False

    search()
    return found


def sudoku_puzzles(n: int, clues: int, size: int = 9, generator: torch.Generator | None = None,
                   max_restarts: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``n`` puzzles with exactly ``clues`` given cells and a unique solution (module docstring).

    Arguments:
        n: number of puzzles. clues: given cells per puzzle (``17 <= clues`` is needed for 9x9 uniqueness;
            below about 22 the random removal rarely gets there). size: 4 or 9. generator: a seeded
            ``torch.Generator``. max_restarts: new grids drawn per puzzle before giving up.

    Returns:
        ``(puzzles, solutions)``, each ``(n, s, s)`` int64; blanks of ``puzzles`` are 0.

    Raises:
        ValueError: ``clues`` outside ``0 .. s^2``; RuntimeError: no puzzle reached ``clues`` within
            ``max_restarts`` grids.
    """
    _box_side(size)
    if isinstance(clues, bool) or not isinstance(clues, int) or not 0 <= clues <= size * size:
        raise ValueError(f"clues must be an int in 0 .. {size * size}, got {clues!r}")
    puzzles, solutions = [], []
    for _ in range(n):
        for _attempt in range(max_restarts):
            grid = sudoku_grids(1, size, generator)[0]
            puzzle = grid.clone().reshape(-1)
            given = size * size
            for i in torch.randperm(size * size, generator=generator).tolist():
                if given == clues:
                    break
                digit = int(puzzle[i])
                puzzle[i] = 0
                if len(sudoku_solutions(puzzle.reshape(size, size), limit=2)) == 1:
                    given -= 1
                else:
                    puzzle[i] = digit
            if given == clues:
                puzzles.append(puzzle.reshape(size, size))
                solutions.append(grid)
                break
        else:
            raise RuntimeError(f"no puzzle with {clues} clues and a unique solution in {max_restarts} grids; "
                               "ask for more clues or more restarts")
    if n == 0:
        empty = torch.zeros(0, size, size, dtype=torch.long)
        return empty, empty.clone()
    return torch.stack(puzzles), torch.stack(solutions)


def sudoku_one_hot(grid: torch.Tensor, dtype: torch.dtype = torch.float32, *, check: bool = True) -> torch.Tensor:
    r"""One-hot encoding, ``K = s`` categories per cell: points of the ``K``-simplex for the Dirichlet
    diffusion (:func:`~sdekit.domains.inverse_stick_breaking` turns them into sticks).

    Arguments:
        grid: ``(..., s, s)`` digits ``1 .. s``.
        dtype: the floating dtype of the result.
        check: raise (:func:`~sdekit.domains.check_sudoku`) unless every grid is a valid Sudoku, so training
            data that is not Sudoku is refused; ``False`` encodes any digits (e.g. generated grids).

    Returns:
        ``(..., s, s, s)`` with a 1 at index ``digit - 1``.
    """
    m = _check_grid(grid, "grid", allow_blank=False)
    if check:
        check_sudoku(grid)
    return torch.nn.functional.one_hot(grid.long() - 1, m * m).to(dtype)


def sudoku_from_one_hot(x: torch.Tensor) -> torch.Tensor:
    r"""Digits from per-cell category weights (one-hot or any points of the simplex): ``argmax + 1``.

    Arguments:
        x: ``(..., s, s, s)``.

    Returns:
        ``(..., s, s)`` int64 digits.

    Raises:
        ValueError: a shape that is not ``(..., s, s, s)`` with ``s = m^2 >= 4``.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a tensor, got {type(x).__name__}")
    if x.dim() < 3 or not x.shape[-1] == x.shape[-2] == x.shape[-3] or math.isqrt(x.shape[-1]) ** 2 != x.shape[-1] \
            or x.shape[-1] < 4:
        raise ValueError(f"x must have shape (..., s, s, s) with s = 4 or 9, got shape {tuple(x.shape)}")
    return x.argmax(-1) + 1


class _Block(torch.nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.heads = heads
        self.time = torch.nn.Linear(dim, dim)
        self.norm1 = torch.nn.LayerNorm(dim)
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.proj = torch.nn.Linear(dim, dim)
        self.norm2 = torch.nn.LayerNorm(dim)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(dim, mlp_ratio * dim), torch.nn.GELU(),
                                       torch.nn.Linear(mlp_ratio * dim, dim))

    def forward(self, h: torch.Tensor, temb: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        h = h + self.time(temb)[:, None]
        n, length, dim = h.shape
        q, k, v = self.qkv(self.norm1(h)).reshape(n, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        a = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        h = h + self.proj(a.transpose(1, 2).reshape(n, length, dim))
        return h + self.mlp(self.norm2(h))


class SudokuScoreNet(torch.nn.Module):
    r"""A small transformer over the ``s^2`` cells of a Sudoku grid that returns the stick score of the Dirichlet
    diffusion (DDSM's Sudoku network is a 20-block transformer of width 128 with a row/column/box attention bias;
    this one has the same kind of bias and is sized for a CPU).

    **Equivariance.** There is no absolute position: every head's attention logits get a learned bias for
    each relation of two cells (same cell, same row, same column, same box; initialised at 0, 1, 1, 1), so the
    network is equivariant under the permutations of cells that keep these relations (rows within bands, bands,
    columns within stacks, stacks); transposition swaps the row and column biases, and the digit permutations
    are not respected by stick-breaking.

    **Input and output.** Each cell's features are its simplex point ``x = stick_breaking(v)`` (``K = s``
    numbers) and its sticks' logits ``clamp(logit v, -12, 12) / 6`` (``K - 1``); the time enters through a
    sinusoidal embedding of ``log t`` added before every block. The output is

        s_hat(v, t) = (a - 1) / v - (b - 1) / (1 - v) + sqrt(1 + 1/t) * h / sqrt(v (1 - v)),

    the score of the stationary ``Beta(a, b)`` (the factor ``v^(a-1) (1-v)^(b-1)`` of every transition
    density, :func:`~sdekit.domains.stick_parameters`) plus the network's ``h`` scaled so that its target has
    unit size at all times (the expected squared target of DDSM's loss is about ``2/t + O(1)``,
    :class:`~sdekit.domains.DirichletScoreMatching`); ``v (1 - v)`` is taken at ``v`` clamped to
    ``[1e-6, 1 - 1e-6]``. ``h`` starts at zero (zero-initialised output layer).

    Arguments:
        size: side ``s`` (4 or 9). dim: width (divisible by ``heads``). depth: blocks. heads: attention heads.
        mlp_ratio: hidden width of the MLPs over ``dim``.

    Call: ``net(v, t)`` with ``v: (batch, s, s, s - 1)`` sticks in ``[0, 1]`` and ``t: (batch,)`` (or a number /
    0-d tensor) positive times; returns ``(batch, s, s, s - 1)``.

    Raises:
        ValueError: bad sizes; at a call, ``v`` of the wrong shape or ``t`` not positive.
    """

    freqs: torch.Tensor          # buffers (register_buffer)
    relations: torch.Tensor
    b: torch.Tensor

    def __init__(self, size: int = 9, dim: int = 128, depth: int = 6, heads: int = 8, mlp_ratio: int = 4) -> None:
        super().__init__()
        m = _box_side(size)
        for name, value in (("dim", dim), ("depth", depth), ("heads", heads), ("mlp_ratio", mlp_ratio)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if dim % heads or (dim // 2) % 2:
            raise ValueError(f"dim must be divisible by heads and by 4, got dim={dim}, heads={heads}")
        self.size, self.K = size, size
        K = size
        self.embed = torch.nn.Linear(2 * K - 1, dim)
        self.time_mlp = torch.nn.Sequential(torch.nn.Linear(dim, dim), torch.nn.SiLU(), torch.nn.Linear(dim, dim))
        self.register_buffer("freqs", torch.exp(-math.log(100.0) * torch.arange(dim // 2) / (dim // 2)),
                             persistent=False)
        self.blocks = torch.nn.ModuleList(_Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = torch.nn.LayerNorm(dim)
        self.out = torch.nn.Linear(dim, K - 1)
        torch.nn.init.zeros_(self.out.weight)
        torch.nn.init.zeros_(self.out.bias)
        cell = torch.arange(size * size)
        r, c = cell // size, cell % size
        box = (r // m) * m + c // m
        rel = torch.stack([cell[:, None] == cell[None], r[:, None] == r[None], c[:, None] == c[None],
                           box[:, None] == box[None]], -1).float()                           # (L, L, 4)
        self.register_buffer("relations", rel, persistent=False)
        init = torch.tensor([0.0, 1.0, 1.0, 1.0]).reshape(1, 4, 1)        # start attending to related cells
        self.relation_bias = torch.nn.Parameter(init.expand(depth, 4, heads).clone())
        b = torch.arange(K - 1, 0, -1, dtype=torch.float32)
        self.register_buffer("b", b, persistent=False)

    def forward(self, v: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        s, K = self.size, self.K
        if not isinstance(v, torch.Tensor) or v.dim() != 4 or tuple(v.shape[1:]) != (s, s, K - 1):
            got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise ValueError(f"v must have shape (batch, {s}, {s}, {K - 1}) (sticks per cell), got {got}")
        n = v.shape[0]
        t = torch.as_tensor(t, dtype=v.dtype, device=v.device)
        t = t.expand(n) if t.dim() == 0 else t
        if t.shape != (n,) or bool((t <= 0).any()):
            raise ValueError(f"t must be positive, of shape ({n},) or a number, got shape {tuple(t.shape)}")
        vc = v.clamp(1e-6, 1 - 1e-6)
        rest = torch.cumprod(1 - vc, -1)
        before = torch.cat([torch.ones_like(vc[..., :1]), rest[..., :-1]], -1)
        x = torch.cat([vc * before, rest[..., -1:]], -1)
        logit = (torch.log(vc) - torch.log1p(-vc)).clamp(-12, 12) / 6
        h = self.embed(torch.cat([x, logit], -1).reshape(n, s * s, 2 * K - 1))
        arg = torch.log(t)[:, None] * self.freqs
        temb = self.time_mlp(torch.cat([torch.cos(arg), torch.sin(arg)], -1))
        for i, block in enumerate(self.blocks):
            bias = torch.einsum("ijr,rh->hij", self.relations, self.relation_bias[i]).to(h.dtype)[None]
            h = block(h, temb, bias)
        raw = self.out(self.norm(h)).reshape(n, s, s, K - 1)
        vv = vc * (1 - vc)
        scale = torch.sqrt(1 + 1 / t).reshape(n, 1, 1, 1)
        return -(self.b - 1) / (1 - vc) + scale * raw / torch.sqrt(vv)           # a = 1: no (a - 1) / v term
