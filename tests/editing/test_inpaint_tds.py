"""Twisted SMC inpainting (sdekit.editing.inpaint(method="tds"), Wu et al. 2023): the exact Gaussian conditional
(mean and variance within 4 se), the exact conditional mode weights of a mixture (where replacement is far off),
the effective sample size and systematic resampling against their definitions, NFE per returned sample,
determinism and refusals."""

from __future__ import annotations

import math

import pytest
import torch

from sdekit import diffusion as dm
from sdekit.editing import inpaint
from sdekit.editing._smc import effective_sample_size, systematic_resample


def test_effective_sample_size_matches_kish():
    logw = torch.log(torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0], [0.5, 0.25, 0.25, 0.0]],
                                  dtype=torch.float64))
    assert torch.allclose(effective_sample_size(logw), torch.tensor([4.0, 1.0, 1 / 0.375], dtype=torch.float64))
    # a common offset of the log weights cancels
    assert torch.allclose(effective_sample_size(logw[:1] + 700.0), torch.tensor([4.0], dtype=torch.float64))


def test_systematic_resampling_is_unbiased_with_floor_or_ceil_counts():
    """Each particle is taken floor(n w_i) or ceil(n w_i) times, and n w_i times on average: over R = 20000
    rows the mean count is within 4 se (count variance <= 1/4) of n w_i."""
    n, rows = 5, 20000
    w = torch.tensor([0.05, 0.3, 0.125, 0.4, 0.125], dtype=torch.float64)
    idx = systematic_resample(w.expand(rows, n), torch.Generator().manual_seed(0))
    assert idx.shape == (rows, n) and idx.dtype == torch.int64
    assert bool((idx[:, 1:] >= idx[:, :-1]).all())
    counts = torch.nn.functional.one_hot(idx, n).sum(1).to(torch.float64)  # (rows, n)
    expected = n * w
    assert bool((counts >= expected.floor()).all()) and bool((counts <= expected.ceil()).all())
    assert bool(((counts.mean(0) - expected).abs() < 4 * 0.5 / math.sqrt(rows)).all())
    # one weight 1: always that particle
    one = systematic_resample(torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64), torch.Generator().manual_seed(1))
    assert one.tolist() == [[1, 1, 1]]


@pytest.mark.parametrize("schedule", [dm.VP(), dm.VE(), dm.LinearFlow()], ids=["VP", "VE", "LinearFlow"])
def test_gaussian_conditional_mean_and_variance(schedule):
    """N(0, [[1, .8], [.8, 1]]) with x_0 = 2 known: x_1 | x_0 ~ N(1.6, 0.36). Twisted SMC (64 particles, 100
    SDE-DPM-Solver++ steps) gives mean and variance within 4 se of the exact ones for 1000 rows (64 particles:
    with 16 the finite-particle bias of the mean is about -0.03, 2.4 se of 2000 rows), on VP, VE and the linear
    flow (alpha = 0 at t_max: a flat twist on the first step)."""
    model = dm.GaussianMixture([1.0], [[0.0, 0.0]], [[[1.0, 0.8], [0.8, 1.0]]]).as_denoiser(schedule)
    n = 1000
    x_known = torch.tensor([[2.0, 0.0]], dtype=torch.float64).expand(n, 2).clone()
    mask = torch.tensor([1.0, 0.0], dtype=torch.float64)
    x, info = inpaint(model, schedule, x_known, mask, method="tds", particles=64, steps=100,
                      generator=torch.Generator().manual_seed(0), return_info=True)
    assert info.nfe == 64 * 100
    assert torch.equal(x[:, 0], x_known[:, 0])
    mean, var = x[:, 1].mean().item(), x[:, 1].var().item()
    assert abs(mean - 1.6) < 4 * math.sqrt(0.36 / n)
    assert abs(var - 0.36) < 4 * 0.36 * math.sqrt(2 / n)


def _two_modes() -> tuple[dm.GaussianMixture, float]:
    """Components N((-1, -3), diag(1, .2)) and N((1.5, 3), diag(.5, .2)), weights 1/2; with x_0 = 0.5 known the
    conditional weight of the upper mode is N(.5; 1.5, .5) / (N(.5; -1, 1) + N(.5; 1.5, .5))."""
    mix = dm.GaussianMixture([0.5, 0.5], [[-1.0, -3.0], [1.5, 3.0]], [[1.0, 0.2], [0.5, 0.2]])
    a = math.exp(-0.5 * 1.5**2) / math.sqrt(2 * math.pi)
    b = math.exp(-0.5 * 1.0**2 / 0.5) / math.sqrt(2 * math.pi * 0.5)
    return mix, b / (a + b)


def test_mixture_conditional_mode_weights():
    """The upper mode's share of 2000 twisted-SMC fills (32 particles, 50 steps) is within 4 se of the exact
    conditional weight 0.616; replacement (SDE, same steps) gives about the prior weight 1/2, more than 6 se off."""
    schedule = dm.VP()
    mix, p_up = _two_modes()
    model = mix.as_denoiser(schedule)
    n = 2000
    x_known = torch.tensor([[0.5, 0.0]], dtype=torch.float64).expand(n, 2).clone()
    mask = torch.tensor([True, False])
    se = math.sqrt(p_up * (1 - p_up) / n)
    x = inpaint(model, schedule, x_known, mask, method="tds", particles=32, steps=50,
                generator=torch.Generator().manual_seed(3))
    assert abs((x[:, 1] > 0).double().mean().item() - p_up) < 4 * se
    x_r = inpaint(model, schedule, x_known, mask, steps=50, generator=torch.Generator().manual_seed(3))
    assert abs((x_r[:, 1] > 0).double().mean().item() - p_up) > 6 * se


def test_per_row_masks_images_and_determinism():
    """A (batch, *event) mask with different known sets per row on (batch, 2, 2) 'images', DDIM(eta=1): the known
    entries come back exactly, the NFE is particles x steps, and the same seed gives the same fills."""
    schedule = dm.VP()
    model = dm.GaussianMixture([1.0], [[0.0, 0.0, 0.0, 0.0]], [[1.0, 1.0, 1.0, 1.0]]).as_denoiser(schedule)
    denoiser = dm.Denoiser(lambda x, t: model(x.reshape(-1, 4), t).reshape(x.shape), schedule, prediction="x0")
    x_known = torch.randn(3, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mask = torch.tensor([[[1, 0], [0, 0]], [[1, 1], [0, 1]], [[0, 0], [0, 0]]], dtype=torch.float64)
    runs = [inpaint(denoiser, schedule, x_known, mask, method="tds", particles=4, steps=5, solver=dm.DDIM(eta=1.0),
                    generator=torch.Generator().manual_seed(5), return_info=True) for _ in range(2)]
    (x, info), (x2, _) = runs
    assert x.shape == (3, 2, 2) and info.nfe == 20
    assert torch.equal(x[mask.bool()], x_known[mask.bool()])
    assert torch.equal(x, x2)


def test_refusals():
    schedule = dm.VP()
    model = dm.GaussianMixture([1.0], [[0.0, 0.0]], [[1.0, 1.0]]).as_denoiser(schedule)
    x = torch.zeros(5, 2, dtype=torch.float64)
    mask = torch.tensor([1.0, 0.0], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"method must be one of \['replace', 'tds'\], got 'smc'"):
        inpaint(model, schedule, x, mask, steps=4, method="smc")
    with pytest.raises(ValueError, match="particles must be an int >= 1, got 0"):
        inpaint(model, schedule, x, mask, steps=4, method="tds", particles=0)
    with pytest.raises(ValueError, match="particles must be 1 with method='replace'"):
        inpaint(model, schedule, x, mask, steps=4, particles=8)
    with pytest.raises(ValueError, match=r"ess_threshold must be a real number in \(0, 1\]"):
        inpaint(model, schedule, x, mask, steps=4, method="tds", particles=4, ess_threshold=1.5)
    with pytest.raises(ValueError, match="solver must be a stochastic sampler with one model call"):
        inpaint(model, schedule, x, mask, steps=4, method="tds", particles=4, solver="dpm++2m")
    with pytest.raises(ValueError, match="resample must be 1 with method='tds'"):
        inpaint(model, schedule, x, mask, steps=4, method="tds", particles=4, resample=2)
    with pytest.raises(ValueError, match="known_path is for method='replace'"):
        inpaint(model, schedule, x, mask, steps=4, method="tds", particles=4, known_path="coherent")
    with pytest.raises(ValueError, match=r"known_path must be one of \['fresh', 'coherent'\]"):
        inpaint(model, schedule, x, mask, steps=4, known_path="forward")
