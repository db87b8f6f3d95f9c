"""Time grids: shapes, ends, spacing in their own variable, and errors."""

from __future__ import annotations

import pytest
import torch

from sdekit.diffusion import (
    EDM,
    VE,
    VP,
    CosineVP,
    DiscreteVP,
    Karras,
    LinearFlow,
    SubVP,
    TimeTensor,
    UniformLogSNR,
    UniformTime,
    VPTime,
    get_time_grid,
)
from sdekit.diffusion.timesteps import default_timesteps, resolve_timesteps

SCHEDULES = [VP(), CosineVP(), DiscreteVP.linear(), SubVP(), VE(), EDM(), LinearFlow(t_max=0.999)]


@pytest.mark.parametrize("grid", [UniformTime(), UniformLogSNR(), Karras(), Karras(rho=1.0), VPTime(), VPTime(2.0)],
                         ids=repr)
@pytest.mark.parametrize("s", SCHEDULES, ids=lambda s: type(s).__name__)
def test_grid_contract(s, grid):
    ts = grid.times(s, 12)
    assert ts.shape == (13,) and ts.dtype == torch.float64
    assert float(ts[0]) == s.t_max and float(ts[-1]) == s.t_min
    assert bool((ts[1:] < ts[:-1]).all())
    sub = grid.times(s, 5, t_start=0.8 * s.t_max + 0.2 * s.t_min, t_end=0.5 * (s.t_min + s.t_max))
    assert float(sub[0]) == pytest.approx(0.8 * s.t_max + 0.2 * s.t_min) and sub.shape == (6,)


@pytest.mark.parametrize("s", SCHEDULES, ids=lambda s: type(s).__name__)
def test_spacing(s):
    lam = s.log_snr(UniformLogSNR().times(s, 10))
    torch.testing.assert_close(lam.diff(), lam.diff().mean().expand(10), rtol=1e-8, atol=1e-8)
    sig = torch.exp(-s.log_snr(Karras(rho=7.0).times(s, 10))) ** (1 / 7)
    torch.testing.assert_close(sig.diff(), sig.diff().mean().expand(10), rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(UniformTime().times(s, 10).diff(), torch.full((10,), -(s.t_max - s.t_min) / 10,
                                                                             dtype=torch.float64))


def test_karras_on_edm_is_the_papers_formula():
    s = EDM()
    i = torch.arange(19, dtype=torch.float64)
    want = (80 ** (1 / 7) + i / 18 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    torch.testing.assert_close(Karras().times(s, 18), want, rtol=1e-12, atol=1e-15)
    assert isinstance(default_timesteps(s), Karras) and isinstance(default_timesteps(VP()), UniformTime)
    assert default_timesteps(EDM(rho=5.0)).rho == 5.0


def test_vp_time_is_dpm_solvers_time_grids_carried_by_the_log_snr():
    """On VP(0.1, 20) itself power 1 is UniformTime and power 2 is DPM-Solver's "time_quadratic" formula
    (uniform in sqrt(t)); on another schedule the grid has the same log-SNRs as on VP between the same ends."""
    vp = VP()
    torch.testing.assert_close(VPTime().times(vp, 25), UniformTime().times(vp, 25), rtol=1e-12, atol=1e-14)
    i = torch.arange(26, dtype=torch.float64)
    quad = (1.0 + i / 25 * (1e-3 ** 0.5 - 1.0)) ** 2
    torch.testing.assert_close(VPTime(2.0).times(vp, 25), quad, rtol=1e-12, atol=1e-14)
    edm = EDM()
    for power in (1.0, 2.0):
        on_edm = edm.log_snr(VPTime(power).times(edm, 30))
        t0, t1 = (float(vp.t_of_log_snr(edm.log_snr(t))) for t in (edm.t_max, edm.t_min))
        wide = VP(t_min=t1 / 2, t_max=2 * t0)   # the same beta(t), an interval that holds EDM's ends
        on_vp = wide.log_snr(VPTime(power).times(wide, 30, t_start=t0, t_end=t1))
        torch.testing.assert_close(on_edm, on_vp, rtol=1e-10, atol=1e-10)
    # other betas: uniform in that schedule's own time
    vp2 = VP(beta_min=0.5, beta_max=10.0)
    torch.testing.assert_close(VPTime(beta_min=0.5, beta_max=10.0).times(vp2, 7), UniformTime().times(vp2, 7),
                               rtol=1e-12, atol=1e-14)
    assert isinstance(get_time_grid("vp-uniform"), VPTime) and get_time_grid("vp-quadratic").power == 2.0
    with pytest.raises(ValueError, match="power must be"):
        VPTime(power=0.0)
    with pytest.raises(ValueError, match="beta_max must exceed beta_min"):
        VPTime(beta_min=5.0, beta_max=1.0)


def test_resolution_and_errors():
    s = VP()
    assert isinstance(get_time_grid("logsnr"), UniformLogSNR)
    assert isinstance(get_time_grid([1.0, 0.5, 0.1]), TimeTensor)
    torch.testing.assert_close(resolve_timesteps(torch.tensor([1.0, 0.5, 0.1]), s, None),
                               torch.tensor([1.0, 0.5, 0.1], dtype=torch.float64))
    with pytest.raises(ValueError, match="strictly decreasing"):
        TimeTensor([0.1, 0.5, 1.0])
    with pytest.raises(ValueError, match="steps=3 does not match the 2 steps"):
        resolve_timesteps(torch.tensor([1.0, 0.5, 0.1]), s, 3)
    with pytest.raises(ValueError, match="unknown timesteps 'cosine'"):
        get_time_grid("cosine")
    with pytest.raises(ValueError, match="steps is required"):
        resolve_timesteps("uniform", s, None)
    with pytest.raises(ValueError, match="steps must be a positive int"):
        UniformTime().times(s, 0)
    with pytest.raises(ValueError, match="t_start=0.1 <= t_end=0.5"):
        UniformTime().times(s, 4, t_start=0.1, t_end=0.5)
    with pytest.raises(ValueError, match="finite log-SNR"):
        UniformLogSNR().times(LinearFlow(), 4)  # lambda(1) = -inf
    with pytest.raises(TypeError, match="timesteps must be"):
        get_time_grid(3)
