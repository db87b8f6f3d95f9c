"""Cycle-SDE (sdekit.editing.invert / reconstruct): exact reconstruction, the paper's recorded-noise formula,
edits that keep the recorded noise, refusals."""

from __future__ import annotations

import math

import pytest
import torch

from sdekit import diffusion as dm
from sdekit.editing import Inversion, RecordedNoise, invert, reconstruct

MIX = dm.GaussianMixture([0.3, 0.7], [[-2.0, 0.5, 0.0], [1.5, -1.0, 1.0]], [[0.2, 0.1, 0.3], [0.3, 0.4, 0.1]])


def _data(dtype, n=64, seed=0):
    return MIX.sample(n, torch.Generator().manual_seed(seed)).to(dtype)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("solver", [dm.DDIM(eta=1.0), dm.SDEDPMSolverPP()], ids=["ddim-eta1", "sde-dpm++2m"])
@pytest.mark.parametrize("steps", [10, 50])
def test_unedited_reverse_run_reconstructs_x0(dtype, tol, solver, steps):
    schedule = dm.VP()
    x0 = _data(dtype)
    model = MIX.as_denoiser(schedule)
    inv = invert(model, schedule, x0, solver=solver, steps=steps, generator=torch.Generator().manual_seed(1))
    x, info = reconstruct(model, schedule, inv, return_info=True)
    assert x.dtype == dtype and inv.nfe == steps and info.nfe == steps
    assert ((x - x0).norm() / x0.norm()).item() < tol
    # not vacuous: the same sampler with fresh noise lands elsewhere (by O(1), not by rounding)
    fresh = dm.sample(model, schedule, inv.latent, solver=solver, timesteps=inv.times,
                      generator=torch.Generator().manual_seed(2))
    assert ((fresh - x0).norm() / x0.norm()).item() > 0.05
    # every reverse state is the recorded forward state
    _, traj = dm.sample(model, schedule, inv.latent, solver=solver, timesteps=inv.times, bm=inv.noise(),
                        return_trajectory=True)
    assert traj.trajectory is not None
    err = (traj.trajectory - inv.forward).abs().amax().item()
    assert err < 1e3 * torch.finfo(dtype).eps * (1 + inv.forward.abs().amax().item())


def test_recorded_noise_is_the_papers_formula_for_ddpm():
    """For DDIM(eta=1) on a VP schedule (alpha^2 = alphabar) the recorded standard-normal noise is the paper's
    w = (x_p - sqrt(ab_p) x0_hat - sqrt(1 - ab_p - s^2) eps_hat) / s with s^2 = (1-ab_p)/(1-ab_t) (1 - ab_t/ab_p)."""
    schedule = dm.VP()
    x0 = _data(torch.float64, n=32)
    model = MIX.as_denoiser(schedule)
    inv = invert(model, schedule, x0, solver=dm.DDIM(eta=1.0), steps=12, generator=torch.Generator().manual_seed(3))
    times = inv.times.tolist()
    for k in range(len(times) - 1):
        t, p = times[k], times[k + 1]
        ab_t, ab_p = float(schedule.alpha(t)) ** 2, float(schedule.alpha(p)) ** 2
        x_t, x_p = inv.forward[k], inv.forward[k + 1]
        x0_hat = model(x_t, t)
        eps_hat = (x_t - math.sqrt(ab_t) * x0_hat) / math.sqrt(1 - ab_t)
        s = math.sqrt((1 - ab_p) / (1 - ab_t)) * math.sqrt(1 - ab_t / ab_p)
        w = (x_p - math.sqrt(ab_p) * x0_hat - math.sqrt(1 - ab_p - s * s) * eps_hat) / s
        z = inv.increments[k] / math.sqrt(t - p)
        torch.testing.assert_close(z, w, rtol=1e-9, atol=1e-9)


def test_forward_chain_has_the_exact_marginals():
    """The recorded forward states are the exact forward process: at every grid time the mean and variance of
    x^f over many copies of one point are alpha x0 and sigma^2 (standard errors from the sample size)."""
    schedule = dm.VP()
    n = 20000
    x0 = torch.full((n, 1), 0.7, dtype=torch.float64)
    model = dm.GaussianMixture([1.0], [[0.0]], [[1.0]]).as_denoiser(schedule)
    inv = invert(model, schedule, x0, solver=dm.DDIM(eta=1.0), steps=5, generator=torch.Generator().manual_seed(4))
    for k, t in enumerate(inv.times.tolist()[:-1]):
        a, s = float(schedule.alpha(t)), float(schedule.sigma(t))
        xs = inv.forward[k, :, 0]
        assert abs(xs.mean().item() - 0.7 * a) < 4 * s / math.sqrt(n)
        assert abs(xs.var().item() / s**2 - 1) < 4 * math.sqrt(2 / n)


def test_an_edit_keeps_the_recorded_noise():
    """Editing one sample's latent changes that sample only; the others are reconstructed exactly. Changing
    the conditioning (here: another model) with the recorded noise moves the result toward the new model."""
    schedule = dm.VP()
    x0 = _data(torch.float64, n=8)
    model = MIX.as_denoiser(schedule)
    inv = invert(model, schedule, x0, solver="sde-dpm++2m", steps=20, generator=torch.Generator().manual_seed(5))
    latent = inv.latent.clone()
    latent[0] += 1.0
    x = reconstruct(model, schedule, inv, latent=latent)
    assert (x[1:] - x0[1:]).abs().max().item() < 1e-10
    assert (x[0] - x0[0]).abs().max().item() > 1e-3


def test_refusals():
    schedule = dm.VP()
    x0 = _data(torch.float64, n=4)
    model = MIX.as_denoiser(schedule)
    with pytest.raises(ValueError, match="solver must be stochastic"):
        invert(model, schedule, x0, solver="ddim", steps=5)
    with pytest.raises(ValueError, match="noise_substeps"):
        invert(model, schedule, x0, solver="pc", steps=5)
    with pytest.raises(ValueError, match="t_start"):
        invert(model, schedule, x0, solver=dm.DDIM(eta=1.0), steps=5, t_start=1.5)
    with pytest.raises(ValueError, match="x0 must be finite"):
        invert(model, schedule, x0 * float("nan"), solver=dm.DDIM(eta=1.0), steps=5)
    inv = invert(model, schedule, x0, solver=dm.DDIM(eta=1.0), steps=5)
    assert isinstance(inv, Inversion) and isinstance(inv.noise(), RecordedNoise)
    with pytest.raises(ValueError, match="latent must have the inversion's shape"):
        reconstruct(model, schedule, inv, latent=torch.zeros(3, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="inversion must be an Inversion"):
        reconstruct(model, schedule, "inv")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not one of them"):
        inv.noise()(0.9, 0.1)
    # a grid that ends where sigma = 0 puts no noise on the last step
    flow = dm.LinearFlow(t_min=0.0)
    with pytest.raises(ValueError, match="puts no noise"):
        invert(MIX.as_denoiser(flow), flow, x0, solver=dm.DDIM(eta=1.0), steps=4)


def test_benchmark_quick_shows_the_claim(tmp_path):
    """benchmarks/methods/cycle_sde.py --quick: below 1e-10 (float64) and 1e-4 (float32) on the mixture oracle and
    on a UNet."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks/methods/cycle_sde.py"
    out = subprocess.run([sys.executable, str(script), "--quick", "--out", str(tmp_path / "r.md")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.split("RESULT ", 1)[1])
    assert res["ok"] and res["worst_f64"] < 1e-10 and res["worst_f32"] < 1e-4
