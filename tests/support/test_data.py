"""Embedded data: shapes, seeding, scale, the digits split, Gaussian mixtures, the registry."""

from __future__ import annotations

import pytest
import torch

from sdekit.data import (
    DIGITS_SPLIT_SIZES,
    TOYS,
    dataset_names,
    digits,
    gaussian_mixture,
    get_dataset,
    load_dataset,
)


@pytest.mark.parametrize("name", sorted(TOYS))
def test_toys_are_seeded_2d_and_order_one(name):
    fn = TOYS[name]
    a = fn(2000, torch.Generator().manual_seed(1))
    b = fn(2000, torch.Generator().manual_seed(1))
    c = fn(2000, torch.Generator().manual_seed(2))
    assert a.shape == (2000, 2) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.abs().max() < 4 and 0.3 < float(a.std()) < 2.0
    assert a.mean(0).abs().max() < 0.2
    assert fn(3, dtype=torch.float64).dtype == torch.float64
    with pytest.raises(ValueError, match="n must be"):
        fn(-1)


def test_checkerboard_lies_on_dark_squares():
    x = TOYS["checkerboard"](5000, torch.Generator().manual_seed(0))
    cells = torch.floor(x).long()
    assert bool(((cells[:, 0] + cells[:, 1]) % 2 == 0).all())


def test_digits_split_is_fixed_scaled_and_labelled():
    x, y = digits("train")
    xh, yh = digits("heldout")
    assert x.shape == (DIGITS_SPLIT_SIZES["train"], 1, 8, 8) and xh.shape == (297, 1, 8, 8)
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0
    assert set(y.tolist()) == set(range(10)) and y.dtype == torch.int64
    x2, _ = digits("train")
    assert torch.equal(x, x2)
    flat = {tuple(v.flatten().tolist()) for v in x}
    overlap = sum(tuple(v.flatten().tolist()) in flat for v in xh)
    assert overlap < 5  # the split is disjoint up to a handful of duplicate images in the source
    with pytest.raises(ValueError, match="split must be"):
        digits("test")


def test_gaussian_mixture_moments_and_shapes():
    g = torch.Generator().manual_seed(0)
    means = [[0.0, 0.0], [4.0, 1.0]]
    cov = torch.tensor([[[1.0, 0.5], [0.5, 1.0]], [[0.2, 0.0], [0.0, 0.3]]])
    x, k = gaussian_mixture(40_000, [0.25, 0.75], means, cov, g, return_components=True, dtype=torch.float64)
    assert x.shape == (40_000, 2)
    assert abs(float((k == 1).double().mean()) - 0.75) < 0.01
    torch.testing.assert_close(torch.cov(x[k == 0].T), cov[0].double(), atol=0.05, rtol=0)
    mean1 = torch.tensor(means[1], dtype=torch.float64)
    torch.testing.assert_close(x[k == 1].mean(0), mean1, atol=0.02, rtol=0)
    iso = gaussian_mixture(1000, [1.0], [[1.0, 2.0, 3.0]], 0.01, g)
    assert iso.shape == (1000, 3) and float(iso.std(0).max()) < 0.12
    with pytest.raises(ValueError, match="variances must be a scalar or have shape"):
        gaussian_mixture(3, [1, 1], means, torch.ones(3), g)
    with pytest.raises(ValueError, match="weights must have shape"):
        gaussian_mixture(3, [1], means, 1.0, g)
    with pytest.raises(ValueError, match="positive definite"):
        gaussian_mixture(3, [1], [[0.0, 0.0]], -torch.eye(2)[None], g)


def test_registry():
    assert {"moons", "checkerboard", "spirals", "eight_gaussians", "rings", "digits"} <= set(dataset_names())
    x, y = load_dataset("moons", n=100, seed=3)
    xh, _ = load_dataset("moons", "heldout", n=100, seed=3)
    assert x.shape == (100, 2) and y is None and not torch.equal(x, xh)
    assert torch.equal(x, load_dataset("moons", n=100, seed=3)[0])
    xd, yd = load_dataset("digits", "heldout", n=10)
    assert xd.shape == (10, 1, 8, 8) and yd.shape == (10,)
    assert get_dataset("digits").num_classes == 10 and get_dataset("moons").event_shape == (2,)
    with pytest.raises(ValueError, match="unknown data set 'mnist'; choose one of"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="exceeds"):
        load_dataset("digits", "heldout", n=1000)
