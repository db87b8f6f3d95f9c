"""Trajectory geometry (Chen et al. 2023, issue 17 must-show 4): the optimal denoiser of a finite data set is
one mean-shift step (to 1e-12 in float64), DDIM with it is annealed mean shift, the optimal ODE memorises (it
ends on training points, and on the one it started near), the denoising trajectory reaches the final sample
in fewer steps than the sampling one, ODE-jump is a truncated run plus one denoiser call, and bad input is
refused."""

from __future__ import annotations

import math

import pytest
import torch

from sdekit.diffusion import (
    EDM,
    VP,
    EmpiricalData,
    GaussianMixture,
    annealed_mean_shift,
    mean_shift,
    ode_jump,
    sample,
    score_deviation,
    trajectory_convergence,
)

F64 = torch.float64


def _data(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=F64)


@pytest.mark.parametrize("schedule", [VP(), EDM()], ids=["VP", "EDM"])
@pytest.mark.parametrize("d", [2, 64])
def test_optimal_denoiser_is_one_mean_shift_step(schedule, d):
    """D*(x, t) = m_{sigma/alpha}(x / alpha) to 1e-12 at noise levels from tiny to large."""
    data = _data(50, d, 0)
    den = EmpiricalData(data).as_denoiser(schedule)
    x0 = _data(16, d, 1)
    for u in (0.02, 0.1, 0.3, 0.6, 0.95):
        t = schedule.t_min + u * (schedule.t_max - schedule.t_min)
        a, s = float(schedule.alpha(t)), float(schedule.sigma(t))
        x = a * data[:16] + s * x0
        err = (den(x, t) - mean_shift(x / a, data, s / a)).abs().max()
        assert float(err) <= 1e-12 * max(1.0, float(data.abs().max())), (u, float(err))


def test_ddim_with_the_optimal_denoiser_is_annealed_mean_shift():
    data = _data(40, 3, 2)
    schedule = EDM()                                  # alpha = 1, t = sigma
    sigmas = torch.tensor([80.0, 20.0, 5.0, 2.0, 1.0, 0.5, 0.2, 0.05, 0.002], dtype=F64)
    x_T = 80.0 * _data(32, 3, 3)
    x_ddim = sample(EmpiricalData(data).as_denoiser(schedule), schedule, x_T, solver="ddim", timesteps=sigmas)
    x_ms, traj = annealed_mean_shift(x_T, data, sigmas, return_trajectory=True)
    assert float((x_ddim - x_ms).abs().max()) <= 1e-12 * 80
    assert traj.shape == (9, 32, 3) and torch.equal(traj[-1], x_ms)


def test_the_optimal_ode_memorises():
    """From the prior every sample ends on a training point; from a training point's neighbourhood (noise
    a tenth of the spacing) it returns to that point."""
    data = _data(30, 2, 4) * 3
    spacing = float(torch.cdist(data, data).add(torch.eye(30, dtype=F64) * 1e9).min())
    schedule = EDM()
    den = EmpiricalData(data).as_denoiser(schedule)
    x_T = 80.0 * _data(200, 2, 5)
    x = sample(den, schedule, x_T, solver="ddim", steps=100)
    two = torch.cdist(x, data).topk(2, dim=1, largest=False).values
    assert float(two[:, 0].max()) <= 5 * schedule.t_min                  # within the last noise level...
    assert bool((two[:, 1] > 10 * two[:, 0]).all())                      # ...of one training point
    on_data = torch.cdist(den(x, schedule.t_min), data).min(dim=1).values
    assert float(on_data.max()) <= 1e-10                                 # its denoised value is that point
    sigma0 = 0.1 * spacing
    start = data + sigma0 * _data(30, 2, 6)
    grid = torch.exp(torch.linspace(math.log(sigma0), math.log(schedule.t_min), 60, dtype=F64))
    end = sample(den, schedule, start, solver="ddim", timesteps=grid)
    assert torch.equal(torch.cdist(end, data).argmin(dim=1), torch.arange(30))     # back to its own point,
    ratio = (end - data).norm(dim=1) / (start - data).norm(dim=1)
    assert float(ratio.max()) <= 1.01 * schedule.t_min / sigma0                    # contracted as sigma shrinks
    assert float((den(end, schedule.t_min) - data).abs().max()) <= 1e-10


@pytest.mark.parametrize("solver", ["ddim", "dpm++2m", "heun"])
def test_the_denoising_trajectory_converges_faster(solver):
    """On a 2-D mixture and on an empirical data set, |D(x_k) - x_N| < |x_k - x_N| at every step until the
    sampling trajectory is within 1% of its starting distance (Chen et al.'s observation), and info.denoised
    holds D at the grid states."""
    angles = [2 * math.pi * i / 5 for i in range(5)]
    mixture = GaussianMixture([1.0] * 5, [[4 * math.cos(a), 4 * math.sin(a)] for a in angles], [0.08] * 5)
    schedule = EDM()
    for den in (mixture.as_denoiser(schedule), EmpiricalData(_data(40, 2, 7) * 3).as_denoiser(schedule)):
        x_T = 80.0 * _data(500, 2, 8)
        x, info = sample(den, schedule, x_T, solver=solver, steps=20, return_denoised=True)
        assert info.denoised is not None and info.trajectory is not None
        k = 7
        assert torch.allclose(info.denoised[k], den(info.trajectory[k], float(info.timesteps[k])), atol=1e-12)
        sampling = trajectory_convergence(info.trajectory)
        denoising = trajectory_convergence(info.denoised, final=x)
        far = sampling > 0.01 * sampling[0]            # until the sample is within 1% of its start distance
        assert int(far.sum()) >= 10
        assert bool((denoising[far] < sampling[far]).all()), (sampling.tolist(), denoising.tolist())
        assert float(sampling[-1]) == 0.0


def test_return_trajectory_keeps_the_result_and_reuses_the_model_calls():
    """The sample is unchanged; the denoising trajectory reuses the sampler's calls at the grid states, so the
    only extra call is at the last grid time (none with denoise_final, which makes it anyway)."""
    mixture = GaussianMixture([1.0, 1.0], [[-2.0, 0.0], [2.0, 0.0]], [0.1, 0.1])
    schedule = VP()
    den = mixture.as_denoiser(schedule)
    x_T = _data(64, 2, 9)
    for solver in ("dpm++3m", "unipc", "heun", "sa-solver", "pc"):
        x1, info1 = sample(den, schedule, x_T, solver=solver, steps=8, return_info=True,
                           generator=torch.Generator().manual_seed(0))
        x2, info2 = sample(den, schedule, x_T, solver=solver, steps=8, return_denoised=True,
                           generator=torch.Generator().manual_seed(0))
        assert torch.equal(x1, x2) and info2.nfe == info1.nfe + 1
        _, info3 = sample(den, schedule, x_T, solver=solver, steps=8, return_denoised=True, denoise_final=True,
                          generator=torch.Generator().manual_seed(0))
        assert info3.nfe == info1.nfe + 1
        assert info2.denoised is not None and info2.denoised.shape == (9, 64, 2)
        assert info1.denoised is None
        _, info4 = sample(den, schedule, x_T, solver=solver, steps=8, return_trajectory=True,
                          generator=torch.Generator().manual_seed(0))
        assert info4.nfe == info1.nfe and info4.denoised is None          # states only: no extra call


def test_ode_jump_is_a_truncated_run_and_one_call():
    mixture = GaussianMixture([1.0, 1.0], [[-2.0, 0.0], [2.0, 0.0]], [0.1, 0.1])
    schedule = EDM()
    den = mixture.as_denoiser(schedule)
    x_T = 80.0 * _data(64, 2, 10)
    x, info = ode_jump(den, schedule, x_T, steps=10, jump_after=4, solver="ddim", return_info=True)
    assert info.nfe == 5
    _, full = sample(den, schedule, x_T, solver="ddim", steps=10, return_denoised=True)
    assert torch.allclose(x, full.denoised[4], atol=1e-12)
    x_all = ode_jump(den, schedule, x_T, steps=10, jump_after=10)
    assert torch.allclose(x_all, sample(den, schedule, x_T, solver="ddim", steps=10, denoise_final=True))


def test_score_deviation():
    data = _data(20, 2, 11)
    schedule = EDM()
    opt = EmpiricalData(data)
    x = 2.0 * _data(8, 2, 12)
    assert float(score_deviation(opt.as_denoiser(schedule), opt, schedule, x, 1.0).max()) == 0.0
    shifted = EmpiricalData(data + 0.5)
    dev = score_deviation(shifted.as_denoiser(schedule), opt, schedule, x, 0.01)
    assert dev.shape == (8,) and bool((dev > 0.1).all())


def test_bad_input_is_refused():
    data = _data(10, 2, 13)
    with pytest.raises(ValueError, match="bandwidth must be a finite number > 0"):
        mean_shift(data, data, 0.0)
    with pytest.raises(ValueError, match="x must have shape"):
        mean_shift(_data(3, 3, 0), data, 1.0)
    with pytest.raises(ValueError, match="bandwidths must be at least two strictly decreasing"):
        annealed_mean_shift(data, data, [1.0, 2.0])
    with pytest.raises(ValueError, match="jump_after must be an int in 1 .. steps = 5"):
        ode_jump(EmpiricalData(data).as_denoiser(EDM()), EDM(), data, steps=5, jump_after=6)
    with pytest.raises(ValueError, match="final must have shape"):
        trajectory_convergence(torch.zeros(3, 4, 2, dtype=F64), torch.zeros(4, 3, dtype=F64))
    with pytest.raises(ValueError, match="non-finite|NaN|inf"):
        mean_shift(torch.full((2, 2), math.nan, dtype=F64), data, 1.0)
