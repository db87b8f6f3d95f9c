"""Inpainting by replacement (sdekit.editing.inpaint): exact where replacement is exact (independent
coordinates), the SDE-over-ODE direction on a correlated Gaussian, NFE with resampling, refusals, and the
benchmark's --quick run (replacement against twisted SMC; the latter is tested in test_inpaint_tds.py)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sdekit import diffusion as dm
from sdekit.editing import inpaint

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("solver", "known_path"), [("sde-dpm++2m", None), ("dpm++2m", None),
                                                    ("sde-dpm++2m", "coherent")])
def test_independent_coordinates_get_their_exact_marginal(solver, known_path):
    """For N(mu, diag(v)) the masked coordinates are independent of the known ones: the inpainted coordinates
    have mean mu_u and variance v_u (within 4 se), whatever the known values (and whether the known region follows
    fresh forward draws or one coherent forward path); the known ones are returned exactly."""
    schedule = dm.VP()
    mu = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    v = torch.tensor([0.5, 1.5, 0.2, 1.0], dtype=torch.float64)
    model = dm.GaussianMixture([1.0], mu[None], v[None]).as_denoiser(schedule)
    n = 6000
    x_known = torch.randn(n, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    mask = torch.tensor([1, 0, 1, 0], dtype=torch.float64)
    x = inpaint(model, schedule, x_known, mask, solver=solver, steps=50, known_path=known_path,
                generator=torch.Generator().manual_seed(1))
    assert torch.equal(x[:, [0, 2]], x_known[:, [0, 2]])
    for i in (1, 3):
        assert abs(x[:, i].mean().item() - mu[i].item()) < 4 * math.sqrt(v[i].item() / n)
        assert abs(x[:, i].var().item() / v[i].item() - 1) < 4 * math.sqrt(2 / n) + 0.01


def test_sde_replacement_is_closer_to_the_conditional_than_ode():
    """Correlated Gaussian (rho = 0.8), x_0 = 2 known: the exact conditional mean of x_1 is 1.6. Replacement is
    biased toward the prior mean 0; the SDE version less so than the ODE version (by ~50 standard errors)."""
    schedule = dm.VP()
    model = dm.GaussianMixture([1.0], [[0.0, 0.0]], [[[1.0, 0.8], [0.8, 1.0]]]).as_denoiser(schedule)
    n = 4000
    x_known = torch.tensor([[2.0, 0.0]], dtype=torch.float64).expand(n, 2).clone()
    mask = torch.tensor([True, False])
    means = {}
    for solver in ("sde-dpm++2m", "dpm++2m"):
        x = inpaint(model, schedule, x_known, mask, solver=solver, steps=50, generator=torch.Generator().manual_seed(2))
        means[solver] = x[:, 1].mean().item()
    se = math.sqrt(0.6 / n)
    assert abs(means["sde-dpm++2m"] - 1.6) + 20 * se < abs(means["dpm++2m"] - 1.6)


def test_resampling_counts_nfe_and_moves_toward_the_conditional():
    schedule = dm.VP()
    model = dm.GaussianMixture([1.0], [[0.0, 0.0]], [[[1.0, 0.8], [0.8, 1.0]]]).as_denoiser(schedule)
    n = 4000
    x_known = torch.tensor([[2.0, 0.0]], dtype=torch.float64).expand(n, 2).clone()
    mask = torch.tensor([1.0, 0.0], dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    x1, info1 = inpaint(model, schedule, x_known, mask, solver=dm.DDIM(eta=1.0), steps=50, generator=g,
                        return_info=True)
    x5, info5 = inpaint(model, schedule, x_known, mask, solver=dm.DDIM(eta=1.0), steps=10, resample=5, generator=g,
                        return_info=True)
    assert info1.nfe == 50 and info5.nfe == 50
    assert abs(x5[:, 1].mean().item() - 1.6) + 10 * math.sqrt(0.6 / n) < abs(x1[:, 1].mean().item() - 1.6)


def test_refusals():
    schedule = dm.VP()
    model = dm.GaussianMixture([1.0], [[0.0, 0.0]], [[1.0, 1.0]]).as_denoiser(schedule)
    x = torch.zeros(5, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"mask must have the shape of the data \(5, 2\) or its event shape \(2,\)"):
        inpaint(model, schedule, x, torch.ones(3), steps=4)
    with pytest.raises(ValueError, match="mask must be binary"):
        inpaint(model, schedule, x, torch.tensor([0.5, 1.0]), steps=4)
    with pytest.raises(TypeError, match="mask must be a torch.Tensor"):
        inpaint(model, schedule, x, [1, 0], steps=4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="resample must be an int >= 1"):
        inpaint(model, schedule, x, torch.tensor([1.0, 0.0]), steps=4, resample=0)
    with pytest.raises(ValueError, match="x_known must be finite"):
        inpaint(model, schedule, x / 0.0, torch.tensor([1.0, 0.0]), steps=4)


def test_benchmark_quick_shows_the_direction(tmp_path):
    """benchmarks/methods/inpaint.py --quick: at NFE 100 twisted SMC is several times closer to the exact
    conditional than SDE and ODE replacement, in 2-D and 8-D (quick run: 2.3x and 0.8x the floor against 16-30x)."""
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/methods/inpaint.py"), "--quick",
                          "--out", str(tmp_path / "r.md")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.split("RESULT ", 1)[1])
    for d in (2, 8):
        for baseline in ("SDE replace", "SDE replace, coherent", "ODE replace"):
            assert res[f"d{d} SDE TDS 100"] < 0.3 * res[f"d{d} {baseline} 100"]
