"""MLE fine-tuning of flows (issue 17 must-show 2, the exact parts): the encoder and the sampler invert each other
with the exact velocity of a mixture, the sampler is the plain fixed-step loop, the reconstruction loss trains
through the shared Trainer on tuple data, the residual field contracts (Jacobian bound at random points and two
trajectories approaching at the guaranteed rate), the base of ResFT is frozen, the stiffness measure is the
spectral radius, and bad input is refused."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sdekit.diffusion import GaussianMixture, LinearFlow
from sdekit.flows import (
    ContractingResidual,
    ReconstructionMLE,
    ResidualFlow,
    field_stiffness,
    flow_decode,
    flow_encode,
)
from sdekit.train import TrainConfig, Trainer

F64 = torch.float64


def _exact_velocity(mixture: GaussianMixture, schedule: LinearFlow):
    den = mixture.as_denoiser(schedule)

    def v(x, t, **_):                                    # x_t = (1 - t) x0 + t eps  =>  v = (x - D) / t
        tt = t.reshape(-1, 1).to(x.dtype)
        return (x - den(x, t)) / tt
    return v


def test_encode_then_decode_is_the_identity_with_the_exact_field():
    schedule = LinearFlow()
    mixture = GaussianMixture([0.5, 0.5], [[-1.0, 0.5], [1.0, -0.5]], [0.3, 0.3])
    v = _exact_velocity(mixture, schedule)
    x = mixture.sample(64, torch.Generator().manual_seed(0)).to(F64)
    z = flow_encode(v, x, steps=400)
    back = flow_decode(v, z, steps=400, method="rk4")
    assert float((back - x).abs().max()) <= 1e-5
    assert abs(float(z.std()) - 1.0) < 0.25                                  # the noise is roughly N(0, I)


def test_decode_is_the_plain_euler_loop():
    lin = nn.Linear(3, 3).double()

    def v(x, t):
        return lin(x) * t.reshape(-1, 1)
    z = torch.randn(5, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    x = z.clone()
    ts = torch.linspace(1.0, 1e-3, 5, dtype=F64)
    for k in range(4):
        x = x + (ts[k + 1] - ts[k]) * v(x, ts[k].expand(5))
    assert torch.allclose(flow_decode(v, z, steps=4), x, atol=1e-13)


class _Cond(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 32), nn.SiLU(), nn.Linear(32, 2))

    def forward(self, x, t, cond=None):
        return self.net(torch.cat([x, t.reshape(-1, 1).to(x.dtype), cond.reshape(-1, 1).to(x.dtype)], dim=1))


def test_reconstruction_mle_trains_through_the_trainer():
    torch.manual_seed(0)
    model = _Cond()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(256, 2, generator=g)
    z = torch.randn(256, 2, generator=g)
    cond = torch.rand(256, generator=g)
    loss = ReconstructionMLE(steps=3, scale=1.0)
    with torch.no_grad():
        before = float(loss(model, (x, z), model_kwargs={"cond": cond}))
    trainer = Trainer(model, loss, (x, z), TrainConfig(steps=60, batch_size=64, lr=3e-3, seed=0),
                      labels=cond, label_key="cond")
    trainer.fit()
    with torch.no_grad():
        after = float(loss(model, (x, z), model_kwargs={"cond": cond}))
    assert after < 0.8 * before


def test_the_residual_contracts():
    res = ContractingResidual(3, 16, rho=3.0, rate=0.4, seed=0).double()
    with torch.no_grad():                      # large raw weights: the spectral normalisation must still bound them
        res.v1.mul_(20.0)
        res.v2.mul_(50.0)
    g = torch.Generator().manual_seed(3)
    worst = -math.inf
    for _ in range(20):
        x = 3.0 * torch.randn(1, 3, dtype=F64, generator=g)
        t = torch.rand(1, dtype=F64, generator=g)
        jac = torch.autograd.functional.jacobian(lambda y, t=t: res(y, t), x).reshape(3, 3)
        worst = max(worst, float(torch.linalg.eigvalsh(0.5 * (jac + jac.T)).max()))
    assert res.contraction_rate == pytest.approx(0.4)
    assert worst <= -0.4 + 1e-12
    w1, w2 = res.weights()
    assert float(torch.linalg.matrix_norm(w2 @ w1, ord=2)) <= float(res.rho) + 1e-9 and abs(float(res.rho) - 3) < 1e-6
    # two solutions of dx/ds = r(x, s) approach at least as e^{-rate s}
    x = torch.randn(8, 3, dtype=F64, generator=g)
    y = x + 0.5 * torch.randn(8, 3, dtype=F64, generator=g)
    d0 = (x - y).norm(dim=1)
    n, s_end = 2000, 2.0
    h = s_end / n
    for k in range(n):
        s = torch.tensor(k * h, dtype=F64)
        x, y = x + h * res(x, s), y + h * res(y, s)
    ratio = (x - y).norm(dim=1) / d0
    assert bool((ratio <= math.exp(-0.4 * s_end) * 1.01).all()), ratio.tolist()


def test_residual_flow_freezes_the_base_and_subtracts_the_residual():
    base = nn.Linear(2, 2)
    res = ContractingResidual(2, 8, seed=1)
    flow = ResidualFlow(lambda_base := _Wrap(base), res)
    assert all(not p.requires_grad for p in lambda_base.parameters())
    trainable = [p for p in flow.parameters() if p.requires_grad]
    assert len(trainable) == len(list(res.parameters()))
    x, t = torch.randn(4, 2), torch.rand(4)
    assert torch.allclose(flow(x, t), base(x) - res(x, t))


class _Wrap(nn.Module):
    def __init__(self, lin):
        super().__init__()
        self.lin = lin

    def forward(self, x, t):
        return self.lin(x)


def test_field_stiffness_is_the_spectral_radius():
    a = torch.tensor([[0.0, 3.0], [-3.0, 0.0]], dtype=F64) + torch.diag(torch.tensor([1.0, -2.0], dtype=F64))

    def v(x, t):
        return x @ a.T
    got = field_stiffness(v, torch.randn(3, 2, dtype=F64), 0.5)
    assert torch.allclose(got, torch.linalg.eigvals(a).abs().max().expand(3).to(F64), atol=1e-12)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        ReconstructionMLE(steps=0)
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        ReconstructionMLE(scale=-1.0)
    with pytest.raises(ValueError, match="rate must be a finite number > 0"):
        ContractingResidual(2, rate=0.0)
    with pytest.raises(ValueError, match="velocity field must return a tensor of the shape of x"):
        flow_decode(lambda x, t: x[:, :1], torch.zeros(3, 2))
    with pytest.raises(ValueError, match="method must be"):
        flow_decode(lambda x, t: x, torch.zeros(3, 2), method="dopri5")
    with pytest.raises(ValueError, match="z must be a floating tensor"):
        flow_decode(lambda x, t: x, torch.zeros(3, dtype=torch.long))
