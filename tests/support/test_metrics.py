"""Metrics: exact 1-D W2 against closed forms and scipy, sliced W2 properties, MMD, noise floors."""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch

from sdekit.data import moons
from sdekit.metrics import mmd_rbf, noise_floor, sliced_wasserstein, wasserstein_1d


def test_w1d_equal_sizes_is_sorted_matching():
    x = torch.tensor([3.0, 1.0, 2.0], dtype=torch.float64)
    y = torch.tensor([0.0, 5.0, 1.0])
    expected = math.sqrt(((1 - 0) ** 2 + (2 - 1) ** 2 + (3 - 5) ** 2) / 3)
    assert float(wasserstein_1d(x, y)) == pytest.approx(expected, rel=1e-12)
    assert float(wasserstein_1d(x, x + 0.7)) == pytest.approx(0.7, rel=1e-12)  # a shift costs its size


def test_w1d_unequal_sizes_matches_scipy_w1_and_quantile_integral():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(101, generator=g, dtype=torch.float64)
    y = torch.randn(37, generator=g, dtype=torch.float64) * 2 + 0.3
    w1 = scipy.stats.wasserstein_distance(x, y)
    assert float(wasserstein_1d(x, y, p=1)) == pytest.approx(w1, rel=1e-10)
    # W2 by brute force on a fine quantile grid.
    u = (torch.arange(200_000, dtype=torch.float64) + 0.5) / 200_000
    qx = torch.sort(x).values[torch.clamp((u * 101).long(), max=100)]
    qy = torch.sort(y).values[torch.clamp((u * 37).long(), max=36)]
    assert float(wasserstein_1d(x, y)) == pytest.approx(float(((qx - qy) ** 2).mean().sqrt()), rel=1e-4)
    cols = wasserstein_1d(torch.stack([x[:37], x[:37]], 1), torch.stack([y, y + 1], 1))
    assert cols.shape == (2,)


def test_sliced_w2_gaussian_shift_and_seeding():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(500, 3, generator=g, dtype=torch.float64)
    shift = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    # For a pure translation, each slice moves by <theta, m>, so SW2^2 = |m|^2 / d.
    sw = sliced_wasserstein(x, x + shift, n_projections=3000)
    assert float(sw) == pytest.approx(float(shift.norm()) / math.sqrt(3), rel=0.03)
    assert torch.equal(sliced_wasserstein(x, x + 1, seed=3), sliced_wasserstein(x, x + 1, seed=3))
    assert float(sliced_wasserstein(x, x)) == 0.0
    images = torch.randn(10, 1, 4, 4, generator=g)
    assert sliced_wasserstein(images, images + 0.1).dim() == 0
    with pytest.raises(ValueError, match="event shape"):
        sliced_wasserstein(x, x[:, :2])
    with pytest.raises(ValueError, match="n_projections"):
        sliced_wasserstein(x, x, n_projections=0)


def test_mmd_separates_and_is_small_for_equal_laws():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(400, 2, generator=g), torch.randn(400, 2, generator=g)
    assert abs(float(mmd_rbf(a, b))) < 0.02
    assert float(mmd_rbf(a, b + 1.0)) > 0.1
    with pytest.raises(ValueError, match="at least two"):
        mmd_rbf(a[:1], b)


def test_noise_floor_from_data_and_sampler():
    held = moons(4000, torch.Generator().manual_seed(0), dtype=torch.float64)
    floor = noise_floor(held, 1000, repeats=3)
    assert len(floor.values) == 3 and 0 < floor.mean < 0.3
    assert noise_floor(held, 1000, repeats=3) == floor  # seeded
    floor2 = noise_floor(lambda n, g: moons(n, g), 500, repeats=2, seed=1)
    assert floor2.mean > 0
    with pytest.raises(ValueError, match="at least 2 n = 6000"):
        noise_floor(held, 3000)
