"""Directed-chain SDE generators and the opinion-dynamics data (issue 18, must-shows 4 and 5)."""

from __future__ import annotations

import math

import pytest
import torch

from sdekit import BrownianGrid
from sdekit.timeseries import (
    DirectedChainSDE,
    NeuralSDEGenerator,
    OpinionDynamics,
    SignatureMMDLoss,
    opinion_dynamics,
    signature_mmd,
    time_augment,
)
from sdekit.train import TrainConfig, Trainer

F64 = torch.float64


def test_opinion_drift_against_a_pairwise_loop():
    sde = OpinionDynamics(block=3)  # blocks of 3 agents: the blocked sum must equal the plain double loop
    x = torch.tensor([[-1.5], [-1.2], [-0.3], [0.1], [0.9], [1.05], [2.0]], dtype=F64)
    n = x.shape[0]
    ref = torch.zeros_like(x)
    for i in range(n):
        for j in range(n):
            r = abs(float(x[i, 0] - x[j, 0]))
            phi = 6 * math.exp(-0.01 / (1 - (r - 0.2) ** 2)) if r < 1.2 else 0.0
            ref[i, 0] -= phi * float(x[i, 0] - x[j, 0]) / n
    torch.testing.assert_close(sde.f(0.0, x), ref, rtol=1e-12, atol=1e-14)
    assert float(sde.phi(torch.tensor(1.2, dtype=F64))) == 0.0
    torch.testing.assert_close(sde.g(0.0, x), torch.full_like(x, 0.1))


def test_opinion_dynamics_is_the_euler_scheme_and_conserves_the_mean():
    """The simulator equals a hand-written Euler loop on the same Brownian increments; the interaction is
    antisymmetric, so the agents' mean moves only by sigma times the mean Brownian increment (exactly)."""
    n, steps = 64, 20
    ts, paths = opinion_dynamics(n, steps=steps, seed=3, dtype=F64)
    assert ts.shape == (steps + 1,) and paths.shape == (n, steps + 1, 1)
    bm = BrownianGrid(ts, (n, 1), seed=4, dtype=F64)  # the simulator's source is seeded by seed + 1
    sde = OpinionDynamics()
    x = paths[:, 0]
    assert bool((x.abs() <= 2).all())
    for k in range(steps):
        dw = bm.increment(k)
        x = x + sde.f(0.0, x) * (ts[k + 1] - ts[k]) + 0.1 * dw
        torch.testing.assert_close(paths[:, k + 1], x, rtol=1e-12, atol=1e-12)
        drift_sum = float(sde.f(0.0, paths[:, k]).sum())
        assert abs(drift_sum) < 1e-12


def test_opinion_marginals_split_into_two_clusters():
    """At t = 0.5 the agents form two clusters (the paper's bimodal marginals): the density near the centre is
    well below the density near the two cluster centres (the gap in counts is > 4 of its standard errors)."""
    _, paths = opinion_dynamics(1024, steps=25, t_end=0.5, seed=0)
    x = paths[:, -1, 0]
    centre = int(((x > -0.25) & (x < 0.25)).sum())
    left = int(((x > -1.25) & (x < -0.75)).sum())
    right = int(((x > 0.75) & (x < 1.25)).sum())
    side = min(left, right)
    assert side - centre > 4 * math.sqrt(side + centre), (left, centre, right)


def _euler_reference(model: NeuralSDEGenerator, ts, x0, bm, neighbour=None):
    """Euler–Maruyama written out with the model's own networks (the wiring a solve should produce)."""
    x, out = x0, [x0]
    for k in range(ts.numel() - 1):
        inp = [ts[k].reshape(1, 1).expand(x.shape[0], 1), x]
        if neighbour is not None:
            inp.append(neighbour[:, k])
        z = torch.cat(inp, dim=1)
        g = model.diffusion(z).view(x.shape[0], model.channels, model.noise)
        x = x + model.drift(z) * (ts[k + 1] - ts[k]) + (g @ bm.increment(k).unsqueeze(-1)).squeeze(-1)
        out.append(x)
    return torch.stack(out, dim=1)


def test_generators_solve_their_sde_on_the_data_grid():
    torch.manual_seed(0)
    ts = torch.tensor([0.0, 0.1, 0.25, 0.3, 0.6, 1.0], dtype=F64)
    B = 5
    x0 = torch.randn(B, 2, dtype=F64)
    nb = torch.randn(B, ts.numel(), 2, dtype=F64)
    for model, kw in ((NeuralSDEGenerator(2, noise=3, width=16).double(), {}),
                      (DirectedChainSDE(2, noise=3, width=16).double(), {"neighbour": nb})):
        bm = BrownianGrid(ts, (B, 3), seed=1, dtype=F64)
        out = model.sample(ts, x0, bm=bm, **kw)
        assert out.shape == (B, ts.numel(), 2)
        ref = _euler_reference(model, ts, x0, BrownianGrid(ts, (B, 3), seed=1, dtype=F64), kw.get("neighbour"))
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)


def test_neighbour_is_interpolated_between_its_times():
    model = DirectedChainSDE(1, width=8).double()
    ts = torch.tensor([0.0, 0.5, 1.0], dtype=F64)
    nb = torch.tensor([[[0.0], [1.0], [3.0]], [[2.0], [2.0], [0.0]]], dtype=F64)
    model.set_neighbour(ts, nb)
    x = torch.zeros(2, 1, dtype=F64)
    torch.testing.assert_close(model._at(0.75, x), torch.tensor([[2.0], [1.0]], dtype=F64))
    torch.testing.assert_close(model._at(1.0, x), nb[:, 2])
    torch.testing.assert_close(model._at(0.0, x), nb[:, 0])


def test_chain_feeds_each_link_to_the_next():
    torch.manual_seed(1)
    model = DirectedChainSDE(1, noise=2, width=16).double()
    ts = torch.linspace(0, 1, 6, dtype=F64)
    start = torch.randn(4, 6, 1, dtype=F64)
    x0 = torch.randn(3, 4, 1, dtype=F64)
    bms = [BrownianGrid(ts, (4, 2), seed=s, dtype=F64) for s in range(3)]
    links = model.chain(ts, x0, start, bm=bms)
    assert links.shape == (3, 4, 6, 1)
    prev = start
    for k in range(3):
        ref = model.sample(ts, x0[k], neighbour=prev, bm=BrownianGrid(ts, (4, 2), seed=k, dtype=F64))
        torch.testing.assert_close(links[k], ref, rtol=1e-12, atol=1e-12)
        prev = ref


def test_training_by_signature_mmd_moves_the_generator_towards_the_data():
    """A few Trainer steps of the signature-MMD loss lower the held-out signature MMD of a DC-SDE by far more
    than its seed-to-seed spread at initialisation (opinion dynamics, 256 agents, 21 times)."""
    ts, train = opinion_dynamics(256, steps=20, seed=10)
    _, test = opinion_dynamics(256, steps=20, seed=11)
    torch.manual_seed(0)
    model = DirectedChainSDE(1, noise=3, width=32)
    loss = SignatureMMDLoss(ts, depth=5)

    def held_out() -> float:
        with torch.no_grad():
            torch.manual_seed(5)
            fake = model.sample(ts, test[:, 0], neighbour=train[torch.randperm(256)])
            return float(signature_mmd(time_augment(fake, ts), time_augment(test, ts), depth=5, basepoint=True))

    before = held_out()
    Trainer(model, loss, train, TrainConfig(steps=60, batch_size=64, lr=3e-3, ema_decay=None, seed=0,
                                            progress=False)).fit()
    after = held_out()
    assert after < 0.25 * before, (before, after)


def test_loss_forms_and_model_check():
    ts = torch.linspace(0, 1, 5)
    paths = torch.randn(6, 5, 1)
    torch.manual_seed(0)
    model = NeuralSDEGenerator(1, width=8)
    torch.manual_seed(2)
    biased = SignatureMMDLoss(ts, depth=3, unbiased=False)(model, paths)
    torch.manual_seed(2)
    fake = model.sample(ts, paths[:, 0])
    ref = signature_mmd(time_augment(fake, ts), time_augment(paths, ts), depth=3, basepoint=True, unbiased=False)
    torch.testing.assert_close(biased, ref.sqrt())
    pde = SignatureMMDLoss(ts, depth=None, dyadic_order=0)(model, paths)
    assert pde.requires_grad and pde.shape == ()
    with pytest.raises(TypeError, match="NeuralSDEGenerator or DirectedChainSDE, got Linear"):
        SignatureMMDLoss(ts)(torch.nn.Linear(1, 1), paths)
    with pytest.raises(ValueError, match=r"paths must have shape \(B, 5, d\) to match ts, got \(6, 4, 1\)"):
        SignatureMMDLoss(ts)(model, paths[:, :4])


def test_bad_input_is_refused_clearly():
    model = DirectedChainSDE(1, width=8)
    ts = torch.linspace(0, 1, 4)
    x0 = torch.zeros(2, 1)
    nb = torch.zeros(2, 4, 1)
    with pytest.raises(ValueError, match=r"ts must be strictly increasing; got ts\[2\] = 0.2 <= ts\[1\] = 0.5"):
        model.sample(torch.tensor([0.0, 0.5, 0.2, 1.0]), x0, neighbour=nb)
    with pytest.raises(ValueError, match=r"ts must be strictly increasing"):
        SignatureMMDLoss(torch.tensor([0.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match=r"neighbour must have shape \(B, 4, 1\) .* got \(2, 3, 1\)"):
        model.sample(ts, x0, neighbour=torch.zeros(2, 3, 1))  # a series of another length than ts
    with pytest.raises(ValueError, match="neighbour contains NaN"):
        model.sample(ts, x0, neighbour=torch.full((2, 4, 1), float("nan")))
    with pytest.raises(ValueError, match="needs neighbour="):
        model.sample(ts, x0)
    with pytest.raises(ValueError, match=r"x0 must have shape \(B, 1\), got \(2, 3\)"):
        model.sample(ts, torch.zeros(2, 3), neighbour=nb)
    with pytest.raises(TypeError, match="x0 must be a floating tensor"):
        model.sample(ts, torch.zeros(2, 1, dtype=torch.long), neighbour=nb)
    with pytest.raises(ValueError, match="neighbour batch"):
        model.sample(ts, torch.zeros(3, 1), neighbour=nb)
    with pytest.raises(ValueError, match=r"x0 must be a tensor \(K, B, 1\)"):
        model.chain(ts, x0, nb)
    with pytest.raises(ValueError, match="one Brownian source per link"):
        model.chain(ts, x0[None], nb, bm=[None, None])
    with pytest.raises(ValueError, match="noise must be an int >= 1, got 0"):
        DirectedChainSDE(1, noise=0)
    with pytest.raises(ValueError, match="n must be an int >= 2, got 1"):
        opinion_dynamics(1)
    with pytest.raises(ValueError, match="sigma must be a finite number >= 0"):
        OpinionDynamics(sigma=-1.0)
