"""Losses: the oracle attains the analytic minimum (Monte Carlo within 3 standard errors), perturbed denoisers
score worse by the predicted amount, and one weighting means one objective for every parameterisation."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate

from sdekit.diffusion import (
    EDM,
    VP,
    DenoisingScoreMatching,
    EDMPrediction,
    FlowMatchingLoss,
    GaussianMixture,
    LinearFlow,
    LogNormalSampling,
    get_prediction,
)

F64 = torch.float64
N = 20_000


def _gaussian(d: int = 3) -> GaussianMixture:
    g = torch.Generator().manual_seed(0)
    A = torch.randn(d, d, generator=g, dtype=F64)
    return GaussianMixture([1.0], torch.randn(1, d, generator=g, dtype=F64), (A @ A.T / d + 0.1 * torch.eye(d))[None])


def _posterior_mse(gm: GaussianMixture, s, t: float) -> float:
    """tr Cov[x0 | x_t] / d for a single Gaussian N(m, S): S - a^2 S (a^2 S + s^2 I)^{-1} S."""
    a, sig = float(s.alpha(t)), float(s.sigma(t))
    S = gm.covariance
    C = a * a * S + sig * sig * torch.eye(gm.dim, dtype=F64)
    post = S - a * a * S @ torch.linalg.solve(C, S)
    return float(torch.trace(post)) / gm.dim


def _oracle_model(gm, s, prediction, shift=None):
    """A network that outputs, in ``prediction``'s parameterisation, the oracle denoiser (plus ``shift``)."""
    pred = get_prediction(prediction)

    def model(x_in, t_in, x_full):
        d = gm.denoiser(x_full, t_in, s)
        if shift is not None:
            d = d + shift
        return pred.from_x0(d, x_full, t_in, s)

    return pred, model


def _losses(loss, gm, model_fn, x0, t, noise):
    """Per-sample losses where the model may look at the unscaled state (so scaled-input predictions work)."""
    s = loss.schedule
    x_t = s.alpha(t)[:, None] * x0 + s.sigma(t)[:, None] * noise

    def model(x_in, t_in):
        return model_fn(x_in, t, x_t)

    return loss.per_sample(model, x0, t=t, noise=noise)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v", "score", "velocity", "edm"])
def test_oracle_attains_analytic_minimum_at_fixed_t(prediction):
    gm = _gaussian()
    s = VP()
    g = torch.Generator().manual_seed(11)
    x0 = gm.sample(N, g)
    noise = torch.randn(N, gm.dim, generator=g, dtype=F64)
    t_val = 0.3
    t = torch.full((N,), t_val, dtype=F64)
    loss = DenoisingScoreMatching(s, prediction=prediction)
    pred, model = _oracle_model(gm, s, prediction)
    per = _losses(loss, gm, model, x0, t, noise)
    c = float(pred.x0_error_scale(torch.tensor(t_val, dtype=F64), s))
    want = _posterior_mse(gm, s, t_val) / c**2
    se = float(per.std()) / math.sqrt(N)
    assert abs(float(per.mean()) - want) < 3 * se, (prediction, float(per.mean()), want, se)

    # a shifted denoiser is worse by exactly |delta|^2 / (d c^2) in expectation (paired difference)
    delta = torch.tensor([0.1, -0.05, 0.08], dtype=F64)
    _, shifted = _oracle_model(gm, s, prediction, shift=delta)
    diff = _losses(loss, gm, shifted, x0, t, noise) - per
    se_diff = float(diff.std()) / math.sqrt(N)
    expected = float((delta**2).mean()) / c**2
    assert float(diff.mean()) > 3 * se_diff
    assert abs(float(diff.mean()) - expected) < 3 * se_diff


@pytest.mark.parametrize(
    "case", ["vp-eps-uniform", "edm-lognormal", "vp-v-likelihood", "flow-velocity"],
)
def test_oracle_attains_analytic_minimum_over_time(case):
    gm = _gaussian()
    if case == "vp-eps-uniform":
        loss = DenoisingScoreMatching(VP(), prediction="eps")
    elif case == "edm-lognormal":
        loss = DenoisingScoreMatching.edm(EDM(), sigma_data=0.5)
    elif case == "vp-v-likelihood":
        loss = DenoisingScoreMatching(VP(), prediction="v", weighting="likelihood")
    else:
        loss = FlowMatchingLoss()
    s = loss.schedule
    g = torch.Generator().manual_seed(5)
    x0 = gm.sample(N, g)
    noise = torch.randn(N, gm.dim, generator=g, dtype=F64)
    t = loss.time_sampling(N, s, g, F64, "cpu")
    pred, model = _oracle_model(gm, s, loss.prediction)
    per = _losses(loss, gm, model, x0, t, noise)

    def expected_at(tv: float) -> float:
        tt = torch.tensor(tv, dtype=F64)
        w = 1.0 / float(pred.x0_error_scale(tt, s)) ** 2 if loss.weighting is None else float(loss.weighting(tt, s))
        return w * _posterior_mse(gm, s, tv)

    if isinstance(loss.time_sampling, LogNormalSampling):
        ts = loss.time_sampling

        def integrand(z):
            tv = min(max(math.exp(ts.p_mean + ts.p_std * z), s.t_min), s.t_max)
            return expected_at(tv) * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)

        want = integrate.quad(integrand, -9, 9, limit=200)[0]
    else:
        want = integrate.quad(expected_at, s.t_min, s.t_max, limit=200)[0] / (s.t_max - s.t_min)
    se = float(per.std()) / math.sqrt(N)
    assert abs(float(per.mean()) - want) < 3 * se, (case, float(per.mean()), want, se)

    # a denoiser that shrinks towards zero is worse (paired difference, beyond the noise)
    def shrunk(x_in, t_in, x_full):
        return pred.from_x0(0.9 * gm.denoiser(x_full, t_in, s), x_full, t_in, s)

    diff = _losses(loss, gm, shrunk, x0, t, noise) - per
    assert float(diff.mean()) > 3 * float(diff.std()) / math.sqrt(N)


@pytest.mark.parametrize("weighting", ["x0", "snr", "v", "score", "likelihood", "edm", "min-snr"])
def test_a_weighting_is_one_objective_for_every_parameterisation(weighting):
    gm = _gaussian()
    s = VP()
    g = torch.Generator().manual_seed(2)
    x0 = gm.sample(64, g)
    noise = torch.randn(64, 3, generator=g, dtype=F64)
    t = 0.05 + 0.9 * torch.rand(64, generator=g, dtype=F64)
    shift = torch.tensor([0.3, -0.2, 0.1], dtype=F64)
    results = {}
    for prediction in ["eps", "x0", "v", "score", "velocity", "edm", "karras"]:
        loss = DenoisingScoreMatching(s, prediction=prediction, weighting=weighting)
        _, model = _oracle_model(gm, s, prediction, shift=shift)
        results[prediction] = _losses(loss, gm, model, x0, t, noise)
    for prediction, value in results.items():
        torch.testing.assert_close(value, results["x0"], rtol=1e-9, atol=1e-12, msg=prediction)


def test_default_weighting_is_plain_mse_on_the_target():
    s = VP()
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(16, 2, generator=g, dtype=F64)
    noise = torch.randn(16, 2, generator=g, dtype=F64)
    t = 0.1 + 0.8 * torch.rand(16, generator=g, dtype=F64)
    model = lambda x, tt: 0.5 * x  # noqa: E731
    plain = DenoisingScoreMatching(s, "eps").per_sample(model, x0, t=t, noise=noise)
    x_t = s.alpha(t)[:, None] * x0 + s.sigma(t)[:, None] * noise
    torch.testing.assert_close(plain, ((0.5 * x_t - noise) ** 2).mean(1))
    # DDPM's L_simple is the SNR weighting on the denoiser error
    snr = DenoisingScoreMatching(s, "eps", weighting="snr").per_sample(model, x0, t=t, noise=noise)
    torch.testing.assert_close(plain, snr)


def test_edm_loss_reads_like_the_paper():
    """EDM: lambda(sigma) |D(x0 + sigma n; sigma) - x0|^2 with D = c_skip x + c_out F(c_in x, c_noise)."""
    s = EDM()
    net = torch.nn.Linear(3, 3).double()
    loss = DenoisingScoreMatching.edm(s)
    g = torch.Generator().manual_seed(4)
    x0 = torch.randn(32, 3, generator=g, dtype=F64)
    noise = torch.randn(32, 3, generator=g, dtype=F64)
    sigma = torch.exp(-1.2 + 1.2 * torch.randn(32, generator=g, dtype=F64)).clamp(0.002, 80)
    seen = {}

    def model(x_in, c_noise):
        seen["c_noise"] = c_noise
        return net(x_in)

    got = loss.per_sample(model, x0, t=sigma, noise=noise)
    sd = 0.5
    x = x0 + sigma[:, None] * noise
    c_skip = sd**2 / (sigma**2 + sd**2)
    c_out = sigma * sd / torch.sqrt(sigma**2 + sd**2)
    c_in = 1 / torch.sqrt(sigma**2 + sd**2)
    D = c_skip[:, None] * x + c_out[:, None] * net(c_in[:, None] * x)
    lam = (sigma**2 + sd**2) / (sigma * sd) ** 2
    torch.testing.assert_close(got, lam * ((D - x0) ** 2).mean(1))
    torch.testing.assert_close(seen["c_noise"], torch.log(sigma) / 4)
    # gradients flow to the network
    loss(model, x0, generator=g).backward()
    assert net.weight.grad is not None and torch.isfinite(net.weight.grad).all()


def test_flow_matching_target_is_eps_minus_x0():
    loss = FlowMatchingLoss()
    assert isinstance(loss.schedule, LinearFlow)
    x0 = torch.randn(8, 2, dtype=F64)
    noise = torch.randn(8, 2, dtype=F64)
    t = torch.linspace(0.1, 0.9, 8, dtype=F64)
    got = loss.per_sample(lambda x, tt: torch.zeros_like(x), x0, t=t, noise=noise)
    torch.testing.assert_close(got, ((noise - x0) ** 2).mean(1))
    # generator determinism of the full call
    a = loss(lambda x, tt: x, x0, generator=torch.Generator().manual_seed(0))
    b = loss(lambda x, tt: x, x0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.dim() == 0


def test_lognormal_sampling_is_schedule_independent():
    ts = LogNormalSampling()
    n = 20_000
    for s in (EDM(), VP(t_min=1e-5)):
        t = ts(n, s, torch.Generator().manual_seed(0), F64, "cpu")
        log_sigma = -s.log_snr(t)
        se = 1.2 / math.sqrt(n)
        assert abs(float(log_sigma.mean()) + 1.2) < 4 * se
        assert abs(float(log_sigma.std()) - 1.2) < 4 * 1.2 / math.sqrt(2 * n)
        assert float(t.min()) >= s.t_min and float(t.max()) <= s.t_max


def test_model_kwargs_time_input_and_errors():
    s = VP()
    x0 = torch.randn(4, 2)
    seen = {}

    def model(x, t, *, label):
        seen["label"], seen["t"] = label, t
        return torch.zeros_like(x)

    loss = DenoisingScoreMatching(s, time_input=lambda t: 1000 * t)
    loss(model, x0, model_kwargs={"label": 3})
    assert seen["label"] == 3 and seen["t"].shape == (4,) and float(seen["t"].max()) > 1.0
    with pytest.raises(TypeError, match="model_kwargs must be a dict"):
        loss(model, x0, model_kwargs=[1])
    with pytest.raises(ValueError, match="unknown prediction 'epsilon'"):
        DenoisingScoreMatching(s, prediction="epsilon")
    with pytest.raises(ValueError, match="unknown weighting"):
        DenoisingScoreMatching(s, weighting="snr2")
    with pytest.raises(ValueError, match="unknown time_sampling"):
        DenoisingScoreMatching(s, time_sampling="beta")
    with pytest.raises(TypeError, match="Schedule"):
        DenoisingScoreMatching("VP")
    with pytest.raises(ValueError, match="must return a tensor of the shape of x"):
        DenoisingScoreMatching(s)(lambda x, t: x[:, :1], x0)
    with pytest.raises(ValueError, match="per-sample times"):
        DenoisingScoreMatching(s).per_sample(lambda x, t: x, x0, t=torch.ones(3) * 0.5)
    with pytest.raises(ValueError, match="sigma_data must be positive"):
        EDMPrediction(sigma_data=0.0)
