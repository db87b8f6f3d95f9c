"""Parameterisations and the denoiser contract: conversions invert each other, targets agree with the
conversions, and adapters call the network with the documented inputs."""

from __future__ import annotations

import math

import pytest
import torch

from sdekit.diffusion import (
    EDM,
    PREDICTIONS,
    VE,
    VP,
    Denoiser,
    DiscreteVP,
    GaussianMixture,
    LinearFlow,
    ProbabilityFlowODE,
    SubVP,
    as_denoiser,
    convert,
    get_prediction,
)
from sdekit.diffusion.prediction import (
    eps_from_score,
    eps_from_x0,
    score_from_eps,
    score_from_x0,
    v_from_x0,
    velocity_from_x0,
    x0_from_eps,
    x0_from_score,
    x0_from_v,
    x0_from_velocity,
)

F64 = torch.float64
SCHEDULES = [VP(), SubVP(), VE(), EDM(), LinearFlow(), DiscreteVP.linear()]
NAMES = sorted(set(PREDICTIONS) - {"k-diffusion"})


def _setup(s, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(6, 3, generator=g, dtype=F64)
    noise = torch.randn(6, 3, generator=g, dtype=F64)
    t = s.t_min + (0.05 + 0.9 * torch.rand(6, generator=g, dtype=F64)) * (s.t_max - s.t_min)
    x = s.alpha(t)[:, None] * x0 + s.sigma(t)[:, None] * noise
    return x0, noise, t, x


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("s", SCHEDULES, ids=lambda s: type(s).__name__)
def test_round_trip_target_and_error_scale(s, name):
    pred = get_prediction(name)
    x0, noise, t, x = _setup(s)
    out = pred.from_x0(x0, x, t, s)
    torch.testing.assert_close(pred.to_x0(out, x, t, s), x0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(pred.target(x0, noise, x, t, s), out, rtol=1e-9, atol=1e-9)
    # D - x0 = c (out - target) for any output
    other = torch.randn(6, 3, generator=torch.Generator().manual_seed(9), dtype=F64)
    c = pred.x0_error_scale(t, s)[:, None]
    torch.testing.assert_close(pred.to_x0(other, x, t, s) - x0, c * (other - out), rtol=1e-8, atol=1e-9)


def test_named_conversions():
    s = VP()
    x0, noise, t, x = _setup(s, 1)
    a, sig = s.alpha(t)[:, None], s.sigma(t)[:, None]
    da, dsig = s.d_alpha(t)[:, None], s.d_sigma(t)[:, None]
    torch.testing.assert_close(eps_from_x0(x, t, x0, s), noise)
    torch.testing.assert_close(x0_from_eps(x, t, noise, s), x0)
    torch.testing.assert_close(score_from_x0(x, t, x0, s), -noise / sig)
    torch.testing.assert_close(x0_from_score(x, t, -noise / sig, s), x0)
    torch.testing.assert_close(v_from_x0(x, t, x0, s), a * noise - sig * x0)
    torch.testing.assert_close(x0_from_v(x, t, a * noise - sig * x0, s), x0)
    torch.testing.assert_close(velocity_from_x0(x, t, x0, s), da * x0 + dsig * noise)
    torch.testing.assert_close(x0_from_velocity(x, t, da * x0 + dsig * noise, s), x0)
    torch.testing.assert_close(eps_from_score(x, t, -noise / sig, s), noise)
    torch.testing.assert_close(score_from_eps(x, t, noise, s), -noise / sig)
    torch.testing.assert_close(convert(x, t, noise, s, source="eps", target="v"), a * noise - sig * x0)
    # flow matching's velocity for the linear interpolant is eps - x0
    lf = LinearFlow()
    x0, noise, t, x = _setup(lf, 2)
    torch.testing.assert_close(velocity_from_x0(x, t, x0, lf), noise - x0)


def _gm():
    return GaussianMixture([0.4, 0.6], [[-1.0, 0.5], [1.5, -0.5]], [[0.3, 0.2], [0.1, 0.4]])


@pytest.mark.parametrize("name", NAMES)
def test_denoiser_adapter_recovers_the_oracle(name):
    """A network that outputs the oracle in any parameterisation gives back the oracle's D(x, t)."""
    gm = _gm()
    s = VP()
    pred = get_prediction(name)
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    t = 0.37

    def net(x_in, t_in):
        # undo the input scaling of the scaled parameterisations to find x
        a = float(s.alpha(t))
        if name == "karras":
            xf = a * x_in
        elif name == "edm":
            st = float(s.sigma_tilde(t))
            xf = a * x_in * math.sqrt(st**2 + pred.sigma_data**2)
        else:
            xf = x_in
        return pred.from_x0(gm.denoiser(xf, t, s), xf, torch.tensor(t, dtype=F64), s)

    D = as_denoiser(net, s, prediction=name)
    torch.testing.assert_close(D(x, t), gm.denoiser(x, t, s), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(D.score(x, t), gm.score(x, t, s), rtol=1e-8, atol=1e-8)


def test_network_inputs():
    s = VP()
    seen = {}

    def net(x, t, *, label=None):
        seen.update(x=x, t=t, label=label)
        return torch.zeros_like(x)

    x = torch.randn(4, 1, 2, 2)  # float32, image shaped
    D = Denoiser(net, s, "eps", model_kwargs={"label": torch.arange(4)})
    out = D(x, 0.5)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert seen["t"].shape == (4,) and seen["t"].dtype == torch.float32 and torch.all(seen["t"] == 0.5)
    assert torch.equal(seen["label"], torch.arange(4))
    # per-sample times
    D(x, torch.tensor([0.1, 0.2, 0.3, 0.4]))
    torch.testing.assert_close(seen["t"], torch.tensor([0.1, 0.2, 0.3, 0.4]))
    # k-diffusion style: D~(x / alpha, sigma / alpha)
    Dk = Denoiser(net, s, "karras")
    Dk(x, 0.5)
    torch.testing.assert_close(seen["x"], x / float(s.alpha(0.5)))
    torch.testing.assert_close(seen["t"], torch.full((4,), float(s.sigma(0.5) / s.alpha(0.5))))
    # a discrete-time network gets its step index through time_input
    dvp = DiscreteVP.linear()
    Denoiser(net, dvp, "eps", time_input=dvp.timestep)(x, 0.5)
    torch.testing.assert_close(seen["t"], torch.full((4,), 499.0))


def test_denoiser_errors():
    s = VP()
    with pytest.raises(TypeError, match="model must be callable"):
        Denoiser(3, s)
    with pytest.raises(TypeError, match="Schedule"):
        Denoiser(lambda x, t: x, "vp")
    with pytest.raises(TypeError, match="model_kwargs must be a dict"):
        Denoiser(lambda x, t: x, s, model_kwargs=(1,))
    with pytest.raises(ValueError, match=r"unknown prediction 'noise'; choose one of"):
        Denoiser(lambda x, t: x, s, "noise")
    with pytest.raises(ValueError, match=r"must return a tensor of the shape of x, \(2, 3\); got shape \(2, 1\)"):
        Denoiser(lambda x, t: x[:, :1], s)(torch.zeros(2, 3), 0.5)
    with pytest.raises(ValueError, match="per-sample times"):
        Denoiser(lambda x, t: x, s)(torch.zeros(2, 3), torch.ones(3) * 0.5)
    D = _gm().as_denoiser(s)
    assert as_denoiser(D, s) is D
    with pytest.raises(ValueError, match="built for"):
        as_denoiser(D, VP())
    with pytest.raises(ValueError, match="already a Denoiser"):
        as_denoiser(D, s, model_kwargs={"a": 1})


def test_probability_flow_drift():
    gm = _gm()
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    for s in (VP(), SubVP(), VE(), EDM(), LinearFlow()):
        t = 0.5 * (s.t_min + s.t_max)
        drift = ProbabilityFlowODE(gm.as_denoiser(s), s)(torch.tensor(t, dtype=F64), x)
        want = float(s.f(t)) * x - 0.5 * float(s.g2(t)) * gm.score(x, t, s)
        torch.testing.assert_close(drift, want, rtol=1e-9, atol=1e-9)
    # finite where alpha = 0 (the linear interpolant at t = 1): u = x - D
    lf = LinearFlow()
    drift = ProbabilityFlowODE(gm.as_denoiser(lf), lf)(1.0, x)
    torch.testing.assert_close(drift, x - gm.denoiser(x, 1.0, lf))
