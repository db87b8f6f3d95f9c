"""GITS: the dynamic programme against brute force, the fitted grid as a TimeGrid, and the paper's claim
on an exact oracle: a fitted grid lowers a sampler's error at NFE 5 and 8 against its default grid."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from sdekit.diffusion import DDIM, EDM, GITS, PFODE, VP, GaussianMixture, gits_path, sample


def _mixture() -> GaussianMixture:
    # Five well-separated components on a circle of radius 4.
    angles = [2 * math.pi * k / 5 for k in range(5)]
    return GaussianMixture([1.0] * 5, [[4 * math.cos(a), 4 * math.sin(a)] for a in angles], [0.1] * 5)


@pytest.fixture(scope="module")
def problem():
    schedule = EDM()
    oracle = _mixture()
    denoiser = oracle.as_denoiser(schedule)
    x_T = oracle.at(schedule.t_max, schedule).sample(600, torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = sample(denoiser, schedule, x_T, solver=PFODE("dopri5", rtol=1e-8, atol=1e-8), steps=1)
    return schedule, denoiser, x_T, ref


def test_dynamic_programme_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    m = 7
    cost = torch.rand(m + 1, m + 1, generator=g, dtype=torch.float64)
    for steps, coeff in itertools.product((1, 2, 3, 5, 7), (1.0, 1.15, 0.7)):
        best, best_path = math.inf, None
        for inner in itertools.combinations(range(1, m), steps - 1):
            path = [0, *inner, m]
            value = sum(coeff**k * float(cost[a, b]) for k, (a, b) in enumerate(zip(path[:-1], path[1:])))
            if value < best:
                best, best_path = value, path
        path, value = gits_path(cost, steps, coeff)
        assert path == best_path
        assert value == pytest.approx(best, rel=1e-12)
    with pytest.raises(ValueError, match="steps"):
        gits_path(cost, 8)


@pytest.mark.parametrize("nfe", [5, 8])
def test_gits_beats_the_default_grid(problem, nfe):
    schedule, denoiser, x_T, ref = problem
    grid = GITS.fit(denoiser, schedule, nfe, shape=(2,), warmup=256, generator=torch.Generator().manual_seed(2),
                    dtype=torch.float64)
    assert grid.steps == nfe and grid.indices[0] == 0 and grid.indices[-1] == 60
    with torch.no_grad():
        x_default, info_default = sample(denoiser, schedule, x_T, solver="ddim", steps=nfe, return_info=True)
        x_gits, info_gits = sample(denoiser, schedule, x_T, solver="ddim", timesteps=grid, return_info=True)
    assert info_default.nfe == info_gits.nfe == nfe
    err_default = (x_default - ref).norm(dim=1)
    err_gits = (x_gits - ref).norm(dim=1)
    gain = err_default - err_gits                      # paired over the same 600 initial states
    stderr = gain.std() / math.sqrt(gain.numel())
    print(f"NFE {nfe}: DDIM endpoint error default Karras grid {err_default.mean():.4f}, GITS "
          f"{err_gits.mean():.4f} (paired gain {gain.mean():.4f} +- {stderr:.4f}); grid {grid}")
    assert gain.mean() > 8 * stderr
    assert err_gits.mean() < 0.8 * err_default.mean()


def test_grid_is_a_time_grid_for_any_sampler_and_schedule(problem):
    schedule, denoiser, x_T, _ = problem
    grid = GITS.fit(denoiser, schedule, 4, shape=(2,), warmup=32, fine_steps=20,
                    generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ts = grid.times(schedule)
    assert ts.shape == (5,) and ts[0] == schedule.t_max and ts[-1] == schedule.t_min
    assert bool((ts[1:] < ts[:-1]).all())
    assert torch.equal(ts, grid.times(schedule, 4))
    with pytest.raises(ValueError, match="steps"):
        grid.times(schedule, 5)
    # fit_nfe: RK4 teacher (4 calls per fine step on 20 steps) + one student call per fine point.
    assert grid.fit_nfe == 4 * 20 + 20
    # The same log-SNR on another schedule: sigma / alpha is preserved.
    vp = VP(t_min=1e-5, t_max=1.0)
    if float(vp.sigma_tilde(vp.t_max)) > schedule.t_max:
        t_vp = grid.times(vp)
        torch.testing.assert_close(vp.sigma_tilde(t_vp), ts, rtol=1e-9, atol=0)
    with pytest.raises(ValueError, match="outside"):
        grid.times(VP())                                 # sigma~ of VP at t_min=1e-3 is ~0.01 > 0.002
    x = sample(denoiser, schedule, x_T[:8], solver=DDIM(), timesteps=grid)
    assert x.shape == (8, 2)


def test_fit_rejects_what_it_cannot_score(problem):
    schedule, denoiser, _, _ = problem
    with pytest.raises(ValueError, match="deterministic"):
        GITS.fit(denoiser, schedule, 5, shape=(2,), student=DDIM(eta=1.0))
    with pytest.raises(ValueError, match="fine_steps"):
        GITS.fit(denoiser, schedule, 30, shape=(2,), fine_steps=20)
    with pytest.raises(ValueError, match="shape"):
        GITS.fit(denoiser, schedule, 5)
    with pytest.raises(ValueError, match="nfe"):
        GITS.fit(denoiser, schedule, 0, shape=(2,))


def test_several_weights_are_judged_by_the_target_sampler_against_the_teacher(problem):
    schedule, denoiser, _, _ = problem
    coeffs = (0.8, 1.0, 1.15, 1.5)
    grid = GITS.fit(denoiser, schedule, 6, shape=(2,), warmup=64, fine_steps=30, coeff=coeffs, sampler="dpm++2m",
                    generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert set(grid.validation) == set(coeffs) and grid.coeff in coeffs
    assert grid.validation[grid.coeff] == min(grid.validation.values())
    assert grid.indices == gits_path(grid.cost, 6, grid.coeff)[0]
    distinct = len({tuple(gits_path(grid.cost, 6, c)[0]) for c in coeffs})
    # Teacher (RK4, 30 steps) + one student call per fine point + one 6-step run per distinct path.
    assert grid.fit_nfe == 4 * 30 + 30 + 6 * distinct


@pytest.mark.parametrize("solver", ["dpm++2m", "unipc"])
def test_refinement_lowers_the_error_on_fresh_states(problem, solver):
    """The polished grid is judged on the 600 test states (not the warm-up states it was tuned on):
    the paired gain over the dynamic-programming grid is positive by many standard errors."""
    schedule, denoiser, x_T, ref = problem
    def fit(**extra):
        return GITS.fit(denoiser, schedule, 8, shape=(2,), warmup=256, sampler=solver, coeff=(0.9, 1.15, 1.3),
                        dtype=torch.float64, generator=torch.Generator().manual_seed(2), **extra)

    plain, polished = fit(), fit(refine=12)
    assert polished.indices == plain.indices and plain.refinement == []
    h = polished.refinement
    assert len(h) >= 2 and all(b < a for a, b in zip(h[:-1], h[1:]))       # every kept sweep gained
    assert h[0] == pytest.approx(plain.validation[plain.coeff], rel=1e-12)  # it starts from the plain grid
    ts, t0 = polished.times(schedule), plain.times(schedule)
    assert ts[0] == t0[0] and ts[-1] == t0[-1] and bool((ts[1:] < ts[:-1]).all())
    assert polished.fit_nfe > plain.fit_nfe
    with torch.no_grad():
        err = {name: (sample(denoiser, schedule, x_T, solver=solver, timesteps=g) - ref).norm(dim=1)
               for name, g in (("plain", plain), ("polished", polished))}
    gain = err["plain"] - err["polished"]
    stderr = gain.std() / math.sqrt(gain.numel())
    print(f"{solver} NFE 8: plain GITS {err['plain'].mean():.4f}, polished {err['polished'].mean():.4f} "
          f"(gain {gain.mean():.4f} +- {stderr:.4f}); warm-up distances {h}")
    assert gain.mean() > 5 * stderr
    with pytest.raises(ValueError, match="refine"):
        fit(refine=-1)
