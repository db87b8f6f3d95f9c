"""SDEdit (sdekit.editing.sdedit) against exact answers: Gaussian data with its linear score, where the edited
marginals stay Gaussian and their moments solve linear ODEs; the benchmark's --quick run; refusals."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sdekit import diffusion as dm
from sdekit import odeint
from sdekit.editing import sdedit

MU = torch.tensor([0.5, -0.3], dtype=torch.float64)
S = torch.tensor([[1.0, 0.6], [0.6, 0.8]], dtype=torch.float64)
MU_G = torch.tensor([2.0, 1.0], dtype=torch.float64)
S_G = torch.tensor([[0.3, 0.0], [0.0, 0.5]], dtype=torch.float64)
ROOT = Path(__file__).resolve().parents[2]


def _moments(schedule, tau: float, t0: float, t1: float):
    """Mean and covariance at t1 of the reverse SDE (tau = 1) / ODE (tau = 0) with the exact score of
    N(mu, S), started at t0 from q_t0 = N(a mu_g, a^2 S_g + s^2 I)."""
    eye = torch.eye(2, dtype=torch.float64)
    c = (1 + tau * tau) / 2

    def rhs(t, y):
        m, P = y
        a, s, f, g2 = schedule.alpha(t), schedule.sigma(t), schedule.f(t), schedule.g2(t)
        Cinv = torch.linalg.inv(a * a * S + s * s * eye)
        A = f * eye + c * g2 * Cinv
        return f * m + c * g2 * Cinv @ (m - a * MU), A @ P + P @ A.T - tau * tau * g2 * eye

    a0, s0 = float(schedule.alpha(t0)), float(schedule.sigma(t0))
    m, P = odeint(rhs, (a0 * MU_G, a0 * a0 * S_G + s0 * s0 * eye), torch.tensor([t0, t1], dtype=torch.float64),
                  rtol=1e-10, atol=1e-12)
    return m[-1], P[-1]


@pytest.mark.parametrize("solver,tau", [(dm.DDIM(eta=1.0), 1.0), (dm.DDIM(eta=0.0), 0.0)], ids=["sde", "ode"])
def test_edited_moments_match_the_moment_equations(solver, tau):
    """Mean and covariance of 20000 edits at t_end = 0.1 within 4 standard errors of the exact moments (the
    SDE's and the ODE's differ by many standard errors, so a wrong reverse process fails)."""
    schedule = dm.VP()
    n, t0, t_end = 20000, 0.5, 0.1
    g = torch.Generator().manual_seed(0)
    guide = MU_G + torch.randn(n, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(S_G).T
    model = dm.GaussianMixture([1.0], MU[None], S[None]).as_denoiser(schedule)
    x = sdedit(model, schedule, guide, t0, solver=solver, steps=100, timesteps="uniform", t_end=t_end, generator=g)
    m, P = _moments(schedule, tau, t0, t_end)
    other_m, _ = _moments(schedule, 1.0 - tau, t0, t_end)
    se_m = (P.diagonal() / n).sqrt()
    assert ((x.mean(0) - m).abs() < 4 * se_m).all(), (x.mean(0), m)
    assert ((other_m - m).abs() > 20 * se_m).any()
    se_P = ((P.diagonal()[:, None] * P.diagonal()[None, :] + P**2) / n).sqrt()
    assert ((torch.cov(x.T) - P).abs() < 4 * se_P + 2e-3 * P.abs()).all(), (torch.cov(x.T), P)


def test_sdedit_at_t_max_is_plain_sampling_and_counts_nfe():
    """From t0 = t_max the guide is forgotten: the edit is distributed as the data (means of a two-point mixture
    within 4 se), and info.nfe is the sampler's count."""
    schedule = dm.VP()
    mix = dm.GaussianMixture([0.5, 0.5], [[-2.0], [2.0]], [[0.1], [0.1]])
    guide = torch.full((8000, 1), 5.0, dtype=torch.float64)
    x, info = sdedit(mix.as_denoiser(schedule), schedule, guide, 1.0, solver="sde-dpm++2m", steps=40,
                     generator=torch.Generator().manual_seed(1), return_info=True)
    assert info.nfe == 40
    frac = (x[:, 0] > 0).double().mean().item()
    assert abs(frac - 0.5) < 4 * math.sqrt(0.25 / 8000)


def test_refusals():
    schedule = dm.VP()
    model = dm.GaussianMixture([1.0], MU[None], S[None]).as_denoiser(schedule)
    x = torch.zeros(4, 2, dtype=torch.float64)
    for bad in (0.0, 1e-4, 1.5, float("nan")):
        with pytest.raises(ValueError, match="t0 must lie in"):
            sdedit(model, schedule, x, bad, steps=5)
    with pytest.raises(TypeError, match="t0 must be a real number"):
        sdedit(model, schedule, x, "0.5", steps=5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="t_end must lie in"):
        sdedit(model, schedule, x, 0.5, steps=5, t_end=0.6)
    with pytest.raises(ValueError, match="steps must be an int"):
        sdedit(model, schedule, x, 0.5, steps=0)
    with pytest.raises(TypeError, match="timesteps must be a grid name"):
        sdedit(model, schedule, x, 0.5, steps=5, timesteps=torch.linspace(0.5, 0.01, 6))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="x_guide must be finite"):
        sdedit(model, schedule, x / 0.0, 0.5, steps=5)
    with pytest.raises(TypeError, match="x_guide must be a torch.Tensor"):
        sdedit(model, schedule, [[0.0, 0.0]], 0.5, steps=5)  # type: ignore[arg-type]


def test_benchmark_quick_shows_the_claim(tmp_path):
    """benchmarks/methods/sde_editing.py --quick: the KL estimate follows the exact curve, decreases under the SDE,
    stays flat under the ODE; on the mixture the SDE ends far below the ODE."""
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/methods/sde_editing.py"), "--quick",
                          "--out", str(tmp_path / "r.md")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    import json

    res = json.loads(out.stdout.split("RESULT ", 1)[1])
    assert res["checks"] == {"match": True, "sde_monotone": True, "ode_flat": True}
    assert res["mix_sde"][-1] < 0.3 * res["mix_sde"][0]
    assert abs(res["mix_ode"][-1] / res["mix_ode"][0] - 1) < 0.1
