"""BrownianPath and BrownianGrid: additivity, exact laws (KS tests), order independence, seeding."""

import math
import random

import pytest
import torch
from scipy import stats

from sdekit import BrownianGrid, BrownianPath

F64 = torch.float64
P_MIN = 1e-3  # KS p-value threshold; seeds are fixed, so a pass is reproducible, not lucky


def test_additivity_of_increments_and_space_time_area():
    bm = BrownianPath(0.0, 2.0, (64, 3), seed=3, dtype=F64, levy_area="space-time")
    points = [0.0, 0.13, 0.5, 0.77123, 1.0, 1.999]
    for a, b, c in zip(points, points[1:], points[2:]):
        Wab, Uab = bm(a, b, return_U=True)
        Wbc, Ubc = bm(b, c, return_U=True)
        Wac, Uac = bm(a, c, return_U=True)
        torch.testing.assert_close(Wac, Wab + Wbc, rtol=0, atol=1e-6)
        # int_a^c (W - W_a) = int_a^b (W - W_a) + int_b^c (W - W_b) + (c - b) (W_b - W_a)
        torch.testing.assert_close(Uac, Uab + Ubc + (c - b) * Wab, rtol=0, atol=1e-6)


def test_increments_are_normal_with_variance_dt():
    n = 20000
    bm = BrownianPath(0.0, 1.0, (n,), seed=11, dtype=F64)
    for a, b in [(0.0, 1.0), (0.1, 0.35), (0.5, 0.5 + 1e-3), (0.3337, 0.9)]:
        z = (bm(a, b) / math.sqrt(b - a)).numpy()
        assert stats.kstest(z, "norm").pvalue > P_MIN, (a, b)


def test_bridge_conditionals_are_exact():
    # Given W(a) and W(b), W(s) is normal with mean linear in s and variance (s-a)(b-s)/(b-a).
    n = 20000
    bm = BrownianPath(0.0, 1.0, (n,), seed=5, dtype=F64)
    for a, s, b in [(0.0, 0.5, 1.0), (0.2, 0.31, 0.7), (0.40, 0.40001, 0.41)]:
        Wa, Ws, Wb = bm(0.0, a) if a > 0 else torch.zeros(n, dtype=F64), bm(0.0, s), bm(0.0, b)
        mean = Wa + (s - a) / (b - a) * (Wb - Wa)
        std = math.sqrt((s - a) * (b - s) / (b - a))
        z = ((Ws - mean) / std).numpy()
        assert stats.kstest(z, "norm").pvalue > P_MIN, (a, s, b)
        # the residual is independent of the endpoint increment
        assert abs(stats.pearsonr(z, (Wb - Wa).numpy())[0]) < 4 / math.sqrt(n)


def test_space_time_area_law():
    # U = h (W/2 + H) with H ~ N(0, h/12) independent of W.
    n = 20000
    bm = BrownianPath(0.0, 1.0, (n,), seed=7, dtype=F64, levy_area="space-time")
    for a, b in [(0.0, 1.0), (0.25, 0.5), (0.123, 0.4567)]:
        h = b - a
        W, U = bm(a, b, return_U=True)
        H = U / h - W / 2
        assert stats.kstest((H / math.sqrt(h / 12)).numpy(), "norm").pvalue > P_MIN
        assert stats.kstest((W / math.sqrt(h)).numpy(), "norm").pvalue > P_MIN
        assert abs(stats.pearsonr(H.numpy(), W.numpy())[0]) < 4 / math.sqrt(n)


def test_values_do_not_depend_on_query_order():
    times = [0.0, 0.05, 0.1, 0.3, 0.31, 0.5, 0.61, 0.9, 1.0]
    intervals = list(zip(times, times[1:])) + [(0.05, 0.9), (0.1, 0.61)]

    def query(order):
        bm = BrownianPath(0.0, 1.0, (5, 4), seed=42, dtype=F64, levy_area="space-time", cache_size=8)
        return {iv: bm(*iv, return_U=True) for iv in order}

    ref = query(intervals)
    shuffled = intervals[:]
    random.Random(0).shuffle(shuffled)
    other = query(shuffled + shuffled[::-1])
    for iv in intervals:
        torch.testing.assert_close(other[iv][0], ref[iv][0], rtol=0, atol=0)
        torch.testing.assert_close(other[iv][1], ref[iv][1], rtol=0, atol=0)


def test_same_seed_same_path_and_different_seed_different_path():
    a = BrownianPath(0.0, 1.0, (3, 2), seed=1)(0.2, 0.7)
    b = BrownianPath(0.0, 1.0, (3, 2), seed=1)(0.2, 0.7)
    c = BrownianPath(0.0, 1.0, (3, 2), seed=2)(0.2, 0.7)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("levy", [None, "space-time"])
def test_per_sample_seeds_make_samples_batch_independent(levy):
    seeds = [10, 20, 30, 40]
    big = BrownianPath(0.0, 1.0, (4, 3, 2), seed=seeds, dtype=F64, levy_area=levy)
    small = BrownianPath(0.0, 1.0, (2, 3, 2), seed=[30, 10], dtype=F64, levy_area=levy)
    for a, b in [(0.0, 0.5), (0.123, 0.77)]:
        big_w, small_w = big(a, b), small(a, b)
        torch.testing.assert_close(small_w[0], big_w[2], rtol=0, atol=0)
        torch.testing.assert_close(small_w[1], big_w[0], rtol=0, atol=0)
    assert not torch.equal(big(0.0, 1.0)[0], big(0.0, 1.0)[1])


def test_per_sample_seeded_increments_are_standard_normal():
    n = 20000
    bm = BrownianPath(0.0, 1.0, (n,), seed=list(range(n)), dtype=F64)
    assert stats.kstest(bm(0.2, 0.45).numpy() / math.sqrt(0.25), "norm").pvalue > P_MIN
    assert stats.kstest(bm(0.0, 1.0).numpy(), "norm").pvalue > P_MIN


def test_any_shape_and_dtype_and_reverse_query():
    bm = BrownianPath(-1.0, 1.0, (2, 3, 4, 4), seed=0, dtype=torch.float32)
    w = bm(-0.5, 0.25)
    assert w.shape == (2, 3, 4, 4) and w.dtype == torch.float32
    torch.testing.assert_close(bm(0.25, -0.5), -w)
    torch.testing.assert_close(bm(0.25), bm(-1.0, 0.25))


def test_brownian_path_errors():
    with pytest.raises(ValueError, match="t0 < t1"):
        BrownianPath(1.0, 0.0, (2,))
    with pytest.raises(ValueError, match="queried on"):
        BrownianPath(0.0, 1.0, (2,), seed=0)(0.5, 1.5)
    with pytest.raises(ValueError, match="levy_area='space-time'"):
        BrownianPath(0.0, 1.0, (2,), seed=0)(0.0, 0.5, return_U=True)
    with pytest.raises(ValueError, match="per-sample seeds"):
        BrownianPath(0.0, 1.0, (3, 2), seed=[1, 2])
    with pytest.raises(ValueError, match="shape"):
        BrownianPath(0.0, 1.0, (0, 2))


def test_brownian_grid_laws_sums_and_seeding():
    times = torch.linspace(0, 1, 101, dtype=F64)
    grid = BrownianGrid(times, (20000,), seed=4, dtype=F64, levy_area="space-time")
    z = grid.increment(37) / math.sqrt(0.01)
    assert stats.kstest(z.numpy(), "norm").pvalue > P_MIN
    W, U = grid.increment(3, return_U=True)
    H = U / 0.01 - W / 2
    assert stats.kstest((H / math.sqrt(0.01 / 12)).numpy(), "norm").pvalue > P_MIN
    total = sum(grid.increment(k) for k in range(10, 30))
    torch.testing.assert_close(grid(times[10], times[30]), total)
    torch.testing.assert_close(grid(times[30], times[10]), -total)
    # chunks regenerate identically when revisited after others were loaded
    first = grid.increment(0).clone()
    grid.increment(99)
    assert torch.equal(grid.increment(0), first)
    with pytest.raises(ValueError, match="grid times"):
        grid(0.005, 0.5)
    a = BrownianGrid(times, (4, 2), seed=[5, 6, 7, 8], dtype=F64)
    b = BrownianGrid(times, (1, 2), seed=[7], dtype=F64)
    torch.testing.assert_close(a.increment(50)[2], b.increment(50)[0], rtol=0, atol=0)


def test_per_sample_seeded_grid_does_not_depend_on_batch_or_chunk_size():
    # A large batch gets smaller chunks of steps than a small one; sample noise must not change.
    times = torch.linspace(0, 1, 301, dtype=F64)
    big = BrownianGrid(times, (20000, 2), seed=list(range(20000)), dtype=F64, levy_area="space-time")
    small = BrownianGrid(times, (2, 2), seed=[19999, 7], dtype=F64, levy_area="space-time")
    assert big.chunk < small.chunk
    for k in (0, 150, 299):
        torch.testing.assert_close(small.increment(k)[0], big.increment(k)[19999], rtol=0, atol=0)
        torch.testing.assert_close(small.increment(k, return_U=True)[1][1], big.increment(k, return_U=True)[1][7],
                                   rtol=0, atol=0)


@pytest.mark.parametrize("seed", [3, [11, 12, 13]])
@pytest.mark.parametrize("levy_area", [None, "space-time"])
def test_brownian_grid_gives_the_same_numbers_in_every_order_of_requests(seed, levy_area, monkeypatch):
    # A forward pass streams blocks; backward and random requests regenerate whole chunks. Small
    # block and chunk sizes put every kind of boundary (block, chunk, grid end) inside 23 steps.
    monkeypatch.setattr(BrownianGrid, "_BLOCK_NUMBERS", 3 * 12)
    monkeypatch.setattr(BrownianGrid, "_CHUNK_NUMBERS", 7 * 12)
    times = torch.linspace(0, 1, 24, dtype=F64) ** 2

    def make():
        return BrownianGrid(times, (3, 4), seed=seed, dtype=F64, levy_area=levy_area)

    grid = make()
    assert (grid.block, grid.chunk) == (3, 6)  # 23 steps: blocks and chunks end inside the grid
    want = [grid.increment(k, return_U=bool(levy_area)) for k in range(len(grid))]
    orders = [list(reversed(range(23))), [5, 0, 22, 6, 7, 1, 13, 12, 11, 3, 4, 2, 8, 9, 10, 14, 15, 16, 17, 18, 19,
                                          20, 21]]
    for order in orders:
        other = make()
        for k in order:
            got = other.increment(k, return_U=bool(levy_area))
            for a, b in zip(got if levy_area else [got], want[k] if levy_area else [want[k]]):
                assert torch.equal(a, b), (order, k)
    with pytest.raises(IndexError, match="k=23"):
        make().increment(23)
