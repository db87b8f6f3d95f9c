"""Reflected sampling, training and guidance against exact answers: the uniform law on the box is a fixed
point of every reflected sampler (its reflected score is zero at every t); the loss regresses the reflected
kernel's score; classifier-free guidance is the affine combination of two model calls; refusals."""

from __future__ import annotations

import pytest
import torch
from scipy import stats

from sdekit.diffusion import VE, VP, EulerMaruyama, PredictorCorrector, sample
from sdekit.domains import (
    Box,
    ClassifierFreeGuidance,
    LabelDropout,
    ReflectedPFODE,
    ReflectedSampler,
    ReflectedScoreMatching,
    ThresholdedSampler,
    reflected_kernel_score,
)

F64 = torch.float64


def _zero_model(x, t, **kwargs):
    return torch.zeros_like(x)


@pytest.mark.parametrize("solver", [EulerMaruyama(), PredictorCorrector(snr=0.16, corrector_steps=1)],
                         ids=["em", "pc"])
def test_uniform_is_returned_uniform(solver):
    """U[0,1]^2 has reflected score 0 at every t (the reflected heat flow keeps it): the reverse sampler
    started from the uniform prior returns uniform samples, KS p > 0.01 per coordinate on 10^5 samples,
    and takes every step (NFE = steps x calls per step)."""
    box = Box(0.0, 1.0)
    x_T = box.uniform((100_000, 2), torch.Generator().manual_seed(0), dtype=F64)
    sampler = ReflectedSampler(solver, box)
    x, info = sample(_zero_model, VE(0.01, 5.0), x_T, solver=sampler, prediction="eps", steps=20,
                     generator=torch.Generator().manual_seed(1), return_info=True)
    assert info.nfe == 20 * solver.nfe_per_step
    assert bool(box.contains(x).all())
    assert not torch.equal(x, x_T)
    for j in range(2):
        assert stats.kstest(x[:, j].numpy(), "uniform").pvalue > 0.01


def test_uniform_on_a_general_box_and_the_ode():
    """On [-1, 2] x [0, 0.5] the reflected EM keeps the uniform law; the reflected PF-ODE with a zero score
    is the identity after its start squeeze to U[margin, 1 - margin] (unit coordinates)."""
    box = Box([-1.0, 0.0], [2.0, 0.5])
    x_T = box.uniform((100_000, 2), torch.Generator().manual_seed(5), dtype=F64)
    x = sample(_zero_model, VE(0.01, 15.0), x_T, solver=ReflectedSampler("euler-maruyama", box), prediction="eps",
               steps=10, generator=torch.Generator().manual_seed(15))
    for j in range(2):
        u = box.to_unit(x)[:, j].numpy()
        assert stats.kstest(u, "uniform").pvalue > 0.01
    ode = sample(_zero_model, VE(0.01, 15.0), x_T, solver=ReflectedPFODE(box, "rk4"), prediction="eps", steps=5)
    torch.testing.assert_close(box.to_unit(ode), 0.01 + 0.98 * box.to_unit(x_T))


def test_thresholding_does_not_keep_the_uniform_law():
    """The contrast: the same zero score sampled as an unreflected VE with clipping piles the mass at the faces
    (the VE prior N(0, 25) is clipped onto them at the first step and later steps spread it only by the
    remaining noise): far from uniform (KS p < 1e-6), with > 20% of the mass within 0.02 of a face (uniform: 7.8%)."""
    box = Box(0.0, 1.0)
    x_T = VE(0.01, 5.0).prior_sample((20_000, 2), torch.Generator().manual_seed(0), dtype=F64)
    x = sample(_zero_model, VE(0.01, 5.0), x_T, solver=ThresholdedSampler("euler-maruyama", box), prediction="eps",
               steps=20, generator=torch.Generator().manual_seed(1))
    assert stats.kstest(x[:, 0].numpy(), "uniform").pvalue < 1e-6
    assert (box.boundary_distance(x) < 0.02).double().mean().item() > 0.2


def test_denoise_final_is_one_more_reflected_call():
    box = Box(0.0, 1.0)
    x_T = box.uniform((1000, 2), torch.Generator().manual_seed(0), dtype=F64)

    def push_out(x, t, **kwargs):          # eps-prediction: D = x - sigma * out, pushes x past the faces
        return torch.full_like(x, -100.0)

    x, info = sample(push_out, VE(0.01, 5.0), x_T, solver=ReflectedSampler("euler-maruyama", box, denoise_final=True),
                     prediction="eps", steps=7, generator=torch.Generator().manual_seed(1), return_info=True)
    assert info.nfe == 8 == ReflectedSampler("euler-maruyama", box, denoise_final=True).nfe(7)
    assert bool(box.contains(x).all())


def test_pc_projection_hook():
    """PredictorCorrector(project=...) applies the map after the corrector and after the predictor: with a
    1-Lipschitz map that is the identity on the path it changes nothing; with the reflection, corrector
    states stay in the box (checked by a model that refuses points outside)."""
    box = Box(0.0, 1.0)
    x_T = box.uniform((4000, 2), torch.Generator().manual_seed(0), dtype=F64)
    kw: dict = dict(prediction="eps", steps=10)
    plain = sample(_zero_model, VE(0.01, 5.0), x_T, solver=PredictorCorrector(),
                   generator=torch.Generator().manual_seed(1), **kw)
    ident = sample(_zero_model, VE(0.01, 5.0), x_T, solver=PredictorCorrector(project=lambda x: x),
                   generator=torch.Generator().manual_seed(1), **kw)
    torch.testing.assert_close(plain, ident, rtol=0, atol=0)
    seen = []

    def checking(x, t, **kwargs):
        seen.append(bool(box.contains(x).all()))
        return torch.zeros_like(x)

    sample(checking, VE(0.01, 5.0), x_T, solver=ReflectedSampler(PredictorCorrector(corrector_steps=2), box),
           generator=torch.Generator().manual_seed(1), **kw)
    assert len(seen) == 30 and all(seen)
    with pytest.raises(TypeError, match="project must be a callable"):
        PredictorCorrector(project=3)  # type: ignore[arg-type]


def test_loss_regresses_the_reflected_kernel_score():
    """With fixed t and noise the loss is sigma^2 |s_theta - grad log p(x_t | x0)|^2 / d, x_t = reflect(x0 +
    sigma z), for the paper's eps parameterisation (s_theta = -out / sigma), and zero for the exact target."""
    box = Box([0.0, -1.0], [1.0, 1.0])
    schedule = VE(0.01, 5.0)
    g = torch.Generator().manual_seed(0)
    x0 = box.uniform((256, 2), g, dtype=F64)
    noise = torch.randn(256, 2, generator=g, dtype=F64)
    t = torch.rand(256, generator=g, dtype=F64)
    sigma = schedule.sigma(t)
    x_t = box.reflect(x0 + sigma[:, None] * noise)
    score = reflected_kernel_score(x_t, x0, sigma, box)
    loss = ReflectedScoreMatching(schedule, box)

    def model(x, tt):
        return torch.sin(3 * x) * tt[:, None]

    got = loss.per_sample(model, x0, t=t, noise=noise)
    s_theta = -model(x_t, t) / sigma[:, None]
    want = (sigma[:, None] ** 2 * (s_theta - score) ** 2).mean(1)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)

    def exact(x, tt):
        torch.testing.assert_close(x, x_t)
        return -sigma[:, None] * score

    assert loss.per_sample(exact, x0, t=t, noise=noise).abs().max().item() < 1e-20
    # the score parameterisation regresses the same target
    by_score = ReflectedScoreMatching(schedule, box, prediction="score", weighting="eps")
    torch.testing.assert_close(by_score.per_sample(lambda x, tt: s_theta, x0, t=t, noise=noise), want)


def test_label_dropout_and_guidance():
    """LabelDropout replaces a fraction p of labels by the null label (binomial, within 4 SE); the guided
    denoiser is (1 + w) D_c - w D_u of two separate calls."""
    seen = {}

    def loss(model, x0, generator=None, model_kwargs=None):
        seen.update(model_kwargs or {})
        return torch.zeros((), requires_grad=True)

    labels = torch.randint(0, 3, (20_000,), generator=torch.Generator().manual_seed(0))
    LabelDropout(loss, 0.2, 3)(_zero_model, torch.zeros(20_000, 2), torch.Generator().manual_seed(1),
                               {"class_labels": labels})
    frac = (seen["class_labels"] == 3).double().mean().item()
    assert abs(frac - 0.2) < 4 * (0.2 * 0.8 / 20_000) ** 0.5
    kept = seen["class_labels"] != 3
    assert torch.equal(seen["class_labels"][kept], labels[kept])

    schedule = VE(0.01, 5.0)

    def net(x, t, class_labels):
        return x * (1.0 + class_labels[:, None].double()) + t[:, None]

    x = torch.rand(5, 2, dtype=F64)
    lab = torch.tensor([0, 1, 2, 0, 1])
    for w in (0.0, 1.0, 5.0):
        cfg = ClassifierFreeGuidance(net, schedule, lab, 3, w)
        sigma = float(schedule.sigma(0.3))
        d_c = x - sigma * net(x, torch.full((5,), 0.3, dtype=F64), lab)
        d_u = x - sigma * net(x, torch.full((5,), 0.3, dtype=F64), torch.full_like(lab, 3))
        torch.testing.assert_close(cfg(x, 0.3), (1 + w) * d_c - w * d_u)


def test_bad_input_is_refused():
    box = Box(0.0, 1.0)
    with pytest.raises(ValueError, match=r"x_T must lie in the box"):
        sample(_zero_model, VE(0.01, 5.0), torch.full((4, 2), 1.5), solver=ReflectedSampler("euler-maruyama", box),
               prediction="eps", steps=2)
    with pytest.raises(ValueError, match=r"x_T must lie in the box"):
        sample(_zero_model, VE(0.01, 5.0), torch.full((4, 2), -0.5), solver=ReflectedPFODE(box), prediction="eps",
               steps=2)
    with pytest.raises(ValueError, match="alpha"):
        ReflectedScoreMatching(VP(), box)
    with pytest.raises(ValueError, match=r"x0 must lie in the box .* x0\[1, 0\]=2.0"):
        ReflectedScoreMatching(VE(), box)(_zero_model, torch.tensor([[0.5, 0.5], [2.0, 0.5]]))
    with pytest.raises(ValueError, match=r"x0 must have shape \(batch, 3\)"):
        ReflectedScoreMatching(VE(), Box([0, 0, 0], [1, 1, 1]))(_zero_model, torch.full((4, 2), 0.5))
    with pytest.raises(TypeError, match="box must be a sdekit.domains.Box"):
        ReflectedSampler("euler-maruyama", (0.0, 1.0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="weight must be"):
        ClassifierFreeGuidance(_zero_model, VE(), torch.zeros(3, dtype=torch.long), 3, -1.0)
    with pytest.raises(ValueError, match="p must be a probability"):
        LabelDropout(_zero_model, 1.5, 3)
    with pytest.raises(ValueError, match="margin"):
        ReflectedPFODE(box, margin=0.5)
