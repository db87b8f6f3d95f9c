"""The diffusion layer on CUDA gives the CPU's numbers (skipped without a GPU)."""

from __future__ import annotations

import pytest
import torch

import sdekit
from sdekit.diffusion import (
    DDIM,
    EDM,
    PFODE,
    VP,
    DenoisingScoreMatching,
    DiscreteVP,
    EmpiricalData,
    EulerMaruyama,
    GaussianMixture,
    LinearFlow,
    sample,
)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
F64 = torch.float64


def _gm():
    return GaussianMixture([0.5, 0.5], [[-1.0, 0.5], [1.0, -0.5]], [[[0.3, 0.1], [0.1, 0.2]], [[0.2, 0.0], [0.0, 0.4]]])


@pytest.mark.parametrize("s", [VP(), DiscreteVP.linear(), EDM(), LinearFlow()], ids=lambda s: type(s).__name__)
def test_oracles_and_schedules_on_cuda(s):
    gm = _gm()
    x = torch.randn(64, 2, dtype=F64)
    t = s.t_min + (s.t_max - s.t_min) * torch.rand(64, dtype=F64)
    for fn in (gm.denoiser, gm.score, gm.log_prob):
        torch.testing.assert_close(fn(x.cuda(), t.cuda(), s).cpu(), fn(x, t, s), rtol=1e-10, atol=1e-10)
    for name in ("alpha", "sigma", "log_snr", "f", "g2", "d_log_snr"):
        torch.testing.assert_close(getattr(s, name)(t.cuda()).cpu(), getattr(s, name)(t), rtol=1e-12, atol=1e-12)
    data = torch.randn(5000, 16, dtype=F64)
    y = torch.randn(32, 16, dtype=F64)
    emp = EmpiricalData(data, max_block=2**14)
    torch.testing.assert_close(EmpiricalData(data.cuda(), max_block=2**14).denoiser(y.cuda(), 0.5, s).cpu(),
                               emp.denoiser(y, 0.5, s), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("solver", [DDIM(), DDIM(eta=1.0), EulerMaruyama(), PFODE(), PFODE("rk4")], ids=repr)
def test_samplers_on_cuda_match_cpu(solver):
    gm = _gm()
    s = VP()
    x_T = torch.randn(128, 2, dtype=F64)
    bm_cpu = sdekit.BrownianPath(s.t_min, s.t_max, (128, 2), seed=3, dtype=F64)
    bm_gpu = sdekit.BrownianPath(s.t_min, s.t_max, (128, 2), seed=3, dtype=F64, device="cuda")
    a, info_a = sample(gm.as_denoiser(s), s, x_T, solver=solver, steps=20, bm=bm_cpu, return_info=True)
    b, info_b = sample(gm.as_denoiser(s), s, x_T.cuda(), solver=solver, steps=20, bm=bm_gpu, return_info=True)
    assert b.is_cuda and info_a.nfe == info_b.nfe
    torch.testing.assert_close(b.cpu(), a, rtol=1e-8, atol=1e-8)
    # the default noise source (bm=None) runs on the state's device too
    c = sample(gm.as_denoiser(s), s, x_T.cuda(), solver=solver, steps=5, generator=torch.Generator().manual_seed(0))
    assert c.is_cuda and torch.isfinite(c).all()


def test_losses_on_cuda():
    s = VP()
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).double()
    model = lambda x, t: net(x) * (1 + t[:, None])  # noqa: E731
    x0 = torch.randn(64, 2, dtype=F64)
    noise = torch.randn(64, 2, dtype=F64)
    t = 0.1 + 0.8 * torch.rand(64, dtype=F64)
    for loss in (DenoisingScoreMatching(s, "eps"), DenoisingScoreMatching(s, "v", "likelihood"),
                 DenoisingScoreMatching.edm()):
        cpu = loss.per_sample(model, x0, t=t, noise=noise)
        net.cuda()
        gpu = loss.per_sample(model, x0.cuda(), t=t.cuda(), noise=noise.cuda())
        net.cpu()
        torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-10, atol=1e-10)
    net.cuda()
    value = DenoisingScoreMatching(s)(model, x0.cuda())  # draws t and noise on the GPU
    value.backward()
    assert value.is_cuda and all(p.grad is not None for p in net.parameters())
