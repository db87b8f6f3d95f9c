"""Sudoku data: generated grids are valid (rows, columns and boxes), the check reports each separately and
catches grids whose rows and columns are fine but whose boxes are not, puzzles have exactly one solution (the
solver is exact: checked against brute-force enumeration on 4x4) at the requested clue count, and bad input
is refused."""

from __future__ import annotations

import itertools

import pytest
import torch

from sdekit.domains import (
    check_sudoku,
    inverse_stick_breaking,
    stick_breaking,
    sudoku_from_one_hot,
    sudoku_grids,
    sudoku_one_hot,
    sudoku_puzzles,
    sudoku_solutions,
    sudoku_validity,
)

torch.set_num_threads(1)


def _all_4x4_grids() -> torch.Tensor:
    """All 288 valid 4x4 grids, by filtering every grid whose rows are permutations (24^4 of them)."""
    perms = torch.tensor(list(itertools.permutations(range(1, 5))))
    idx = torch.cartesian_prod(*[torch.arange(24)] * 4)
    every = perms[idx]                                                 # (24^4, 4, 4)
    return every[sudoku_validity(every).valid]


@pytest.mark.parametrize("size", [4, 9])
def test_generated_grids_are_valid_and_seeded(size):
    grids = sudoku_grids(1000, size, torch.Generator().manual_seed(0))
    assert grids.shape == (1000, size, size) and grids.dtype == torch.long
    validity = sudoku_validity(grids)
    assert bool(validity.rows.all() and validity.columns.all() and validity.boxes.all() and validity.valid.all())
    again = sudoku_grids(1000, size, torch.Generator().manual_seed(0))
    assert torch.equal(grids, again)
    assert len({tuple(g.flatten().tolist()) for g in grids}) > 150      # not one grid repeated


def test_4x4_grids_cover_the_orbit():
    """The transformation group reaches 192 of the 288 4x4 Sudoku grids (enumerated here)."""
    grids = sudoku_grids(20000, 4, torch.Generator().manual_seed(1))
    seen = {tuple(g.flatten().tolist()) for g in grids}
    valid = {tuple(g.flatten().tolist()) for g in _all_4x4_grids()}
    assert len(valid) == 288 and seen <= valid and len(seen) == 192


@pytest.mark.parametrize("size", [4, 9])
def test_box_check_catches_latin_squares(size):
    m = int(size ** 0.5)
    r = torch.arange(size)
    cyclic = (r[:, None] + r[None, :]) % size + 1                     # rows and columns fine, boxes not
    v = sudoku_validity(cyclic)
    assert bool(v.rows) and bool(v.columns) and bool(v.rows_and_columns) and not bool(v.boxes)
    assert not bool(v.valid)
    grid = sudoku_grids(1, size, torch.Generator().manual_seed(2))[0]
    swapped = grid[torch.tensor([m, *range(1, m), 0, *range(m + 1, size)])]  # rows 0 and m: other bands
    v = sudoku_validity(swapped)
    assert bool(v.rows_and_columns) and not bool(v.boxes)
    broken = grid.clone()
    broken[0, [0, 1]] = broken[0, [1, 0]]                             # a swap in a row: columns break
    v = sudoku_validity(broken)
    assert bool(v.rows) and not bool(v.columns)


def test_solver_is_exact_on_4x4():
    """Solution counts of random 4x4 puzzles equal brute-force counts over all 288 grids."""
    gen = torch.Generator().manual_seed(3)
    every = _all_4x4_grids()
    for grid in sudoku_grids(30, 4, gen):
        mask = torch.rand(4, 4, generator=gen) < 0.3
        puzzle = torch.where(mask, grid, torch.zeros_like(grid))
        brute = int(((every == puzzle) | (puzzle == 0)).flatten(1).all(1).sum())
        assert len(sudoku_solutions(puzzle, limit=1000)) == brute
    contradiction = torch.zeros(4, 4, dtype=torch.long)
    contradiction[0, 0] = contradiction[0, 3] = 2
    with pytest.raises(ValueError, match=r"row 0 holds digit 2 twice \(cells \(0, 0\) and \(0, 3\)\)"):
        sudoku_solutions(contradiction)


@pytest.mark.parametrize("size, clues", [(4, 4), (4, 6), (9, 30), (9, 25)])
def test_puzzles_have_one_solution_at_the_clue_count(size, clues):
    puzzles, solutions = sudoku_puzzles(5, clues, size, torch.Generator().manual_seed(4))
    assert puzzles.shape == solutions.shape == (5, size, size)
    assert ((puzzles > 0).flatten(1).sum(1) == clues).all()
    assert bool(sudoku_validity(solutions).valid.all())
    assert bool(((puzzles == solutions) | (puzzles == 0)).all())
    for puzzle, solution in zip(puzzles, solutions):
        found = sudoku_solutions(puzzle, limit=3)
        assert len(found) == 1 and torch.equal(found[0], solution)


def test_one_hot_points_on_the_simplex():
    grids = sudoku_grids(8, 9, torch.Generator().manual_seed(5))
    x = sudoku_one_hot(grids, dtype=torch.float64)
    assert x.shape == (8, 9, 9, 9) and bool((x.sum(-1) == 1).all())
    assert torch.equal(sudoku_from_one_hot(x), grids)
    assert torch.equal(stick_breaking(inverse_stick_breaking(x)), x)


def test_check_sudoku_names_the_conflict():
    """Valid grids pass unchanged; a repeated digit in a row, a column or only a box (a Latin square) is a
    ValueError naming the grid index, the unit, the digit and both cells; puzzles may hold blanks but not
    conflicting clues; training encodings refuse invalid grids unless asked not to check."""
    grids = sudoku_grids(6, 9, torch.Generator().manual_seed(2))
    assert check_sudoku(grids) is grids
    bad = grids.clone()
    bad[4, 2, 7] = bad[4, 2, 1]                                        # row 2 repeats (column 7 does too)
    with pytest.raises(ValueError, match=r"grid\[4\] is not a valid Sudoku grid: row 2 holds digit"):
        check_sudoku(bad)
    swapped = grids[0].clone()
    swapped[:, [0, 1]] = swapped[:, [1, 0]]                            # rows and columns fine
    swapped[[0, 3]] = swapped[[3, 0]]                                  # row 0 and 3 in different bands: boxes break
    v = sudoku_validity(swapped)
    assert bool(v.rows_and_columns) and not bool(v.boxes)
    with pytest.raises(ValueError, match=r"grid is not a valid Sudoku grid: box \(0, 0\) holds digit"):
        check_sudoku(swapped)
    col = grids[1].clone()
    col[[0, 1], 0] = col[[0, 0], 0]                                    # column 0 repeats, rows 1 too
    with pytest.raises(ValueError, match="holds digit"):
        check_sudoku(col)
    puzzle = grids[2].clone()
    puzzle[::2] = 0
    assert check_sudoku(puzzle, blanks=True) is puzzle
    with pytest.raises(ValueError, match="grid must hold digits in 1 .. 9"):
        check_sudoku(puzzle)                                           # blanks need blanks=True
    puzzle[1, 0] = puzzle[1, 5]
    with pytest.raises(ValueError, match="not a valid puzzle: row 1 holds digit"):
        check_sudoku(puzzle, blanks=True)
    with pytest.raises(ValueError, match="row 1 holds digit"):
        sudoku_solutions(puzzle)
    with pytest.raises(ValueError, match=r"grid\[4\] is not a valid Sudoku grid"):
        sudoku_one_hot(bad)
    assert sudoku_one_hot(bad, check=False).shape == (6, 9, 9, 9)      # generated grids: encode without checks


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="grid must have shape"):
        sudoku_validity(torch.ones(4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="grid must have side"):
        sudoku_validity(torch.ones(5, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="grid must hold digits in 1 .. 4"):
        sudoku_validity(torch.zeros(4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="grid must hold digits"):
        sudoku_one_hot(torch.full((9, 9), 10))
    with pytest.raises(TypeError, match="grid must hold integer"):
        sudoku_validity(torch.ones(4, 4))
    with pytest.raises(ValueError, match="puzzle must hold digits in 0 .. 9"):
        sudoku_solutions(torch.full((9, 9), -1))
    with pytest.raises(ValueError, match="puzzle must be one"):
        sudoku_solutions(torch.zeros(2, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="size"):
        sudoku_grids(3, size=6)
    with pytest.raises(ValueError, match="clues"):
        sudoku_puzzles(1, 82)
    with pytest.raises(ValueError, match="x must have shape"):
        sudoku_from_one_hot(torch.ones(9, 9, 8))
