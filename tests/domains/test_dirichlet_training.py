"""DDSM training and the dilated sampler (issue 14): the importance weights of :class:`DirichletScoreMatching`
against a direct quadrature of the Jacobi series, its forward draws against the exact transition law, the
loss and its importance sampling against direct computations, time dilation and the final mean step of
:func:`dirichlet_reverse_sample`, the Sudoku network's symmetry, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from sdekit.core.brownian import BrownianGrid
from sdekit.core.integrate import sdeint
from sdekit.domains import (
    DirichletScoreMatching,
    JacobiReverseSDE,
    JacobiScoreTable,
    SudokuScoreNet,
    dirichlet_reverse_sample,
    jacobi_density,
    jacobi_score,
    stick_breaking,
    stick_parameters,
)
from sdekit.domains.dirichlet import _ClampedEuler
from sdekit.train import TrainConfig, Trainer

torch.set_num_threads(1)

K = 4


@pytest.fixture(scope="module")
def loss() -> DirichletScoreMatching:
    return DirichletScoreMatching(K, t_min=0.01, t_max=5.0, num_t=12)


def test_importance_weights_match_a_direct_quadrature(loss):
    """``w(t) = mean_k sum_v0 P(v0) int p_t(v | v0) v (1 - v) score^2 dv`` by the series on a fine grid (trapezoid
    in logit coordinates, 3001 points), at four grid times in ``[0.05, 5]``: relative error below 2e-3."""
    a, b = stick_parameters(K)
    u = torch.linspace(-13, 13, 3001, dtype=torch.float64)
    v = torch.sigmoid(u)
    for i in (4, 6, 8, 11):
        t = float(loss.times[i])
        assert t >= 0.05
        order = min(200, math.ceil(math.sqrt(400 / t)) + 10)     # truncation negligible (module docstring)
        total = 0.0
        for k in range(K - 1):
            for v0, prob in ((0.0, 1 - 1 / K), (1.0, 1 / K)):
                p = jacobi_density(v, torch.tensor(v0), t, a[k], b[k], order=order).clamp(min=0)
                s = jacobi_score(v, torch.tensor(v0), t, a[k], b[k], order=order)
                f = p * (v * (1 - v)) ** 2 * s ** 2
                total += prob * float(torch.trapezoid(f, u))
        direct = total / (K - 1)
        assert abs(float(loss.raw_weights[i]) - direct) < 2e-3 * direct, (t, float(loss.raw_weights[i]), direct)
    assert abs(float(loss.weights.mean()) - 1) < 1e-12
    assert torch.allclose(loss.probs, loss.weights / loss.weights.sum())


def test_forward_draws_follow_the_exact_transition_law(loss):
    """Stick 1 of category 0 (start 1, Beta(1, 3) stationary law) and stick 2 (start 0): KS against the CDF of
    the series at three grid times (20000 draws each), and the closed-form mean
    ``E[v_t | v0] = a/(a+b) + (v0 - a/(a+b)) exp(-s (a + b) t / 2)`` within 4 standard errors."""
    a, b = stick_parameters(K)
    g = torch.Generator().manual_seed(0)
    n = 20000
    x0 = torch.zeros(n, dtype=torch.long)
    u = torch.linspace(-13, 13, 20001, dtype=torch.float64)
    vg = torch.sigmoid(u)
    for i in (3, 7, 11):
        loss_i = DirichletScoreMatching(K, loss.table)
        loss_i.probs = torch.zeros_like(loss.probs)
        loss_i.probs[i] = 1.0
        v, t, _, index = loss_i.perturb(x0, g)
        assert bool((index == i).all()) and bool((t == loss.times[i]).all())
        for k, v0 in ((0, 1.0), (1, 0.0)):
            tt = float(loss.times[i])
            dens = jacobi_density(vg, torch.tensor(v0), tt, a[k], b[k]).clamp(min=0) * vg * (1 - vg)
            cdf = torch.cat([torch.zeros(1, dtype=torch.float64),
                             torch.cumsum(0.5 * (dens[1:] + dens[:-1]) * (u[1] - u[0]), 0)])
            cdf = cdf / cdf[-1]

            def exact_cdf(x, cdf=cdf):
                return np.interp(x, vg.numpy(), cdf.numpy())

            p = stats.kstest(v[:, k].numpy(), exact_cdf).pvalue
            assert p > 0.01, (i, k, p)
            m = float(a[k] / (a[k] + b[k]))
            mean = m + (v0 - m) * math.exp(-float(a[k] + b[k]) * tt / 2)
            se = float(v[:, k].std()) / math.sqrt(n)
            assert abs(float(v[:, k].mean()) - mean) < 4 * se, (i, k)


class _Stationary(torch.nn.Module):
    """The stationary score ``-(b - 1)/(1 - v)`` plus a learnable constant (a fixed, non-trivial model)."""

    def __init__(self) -> None:
        super().__init__()
        self.c = torch.nn.Parameter(torch.tensor(0.3))

    def forward(self, v, t):
        b = torch.arange(K - 1, 0, -1, dtype=v.dtype)
        return -(b - 1) / (1 - v) + self.c / t.reshape(-1, *([1] * (v.dim() - 1)))


def test_loss_is_the_weighted_score_error(loss):
    """The loss equals ``mean_batch [mean_(cells, sticks) v (1 - v) (s_hat - s)^2 / w(t_i)]`` computed from the
    same draws (same seed)."""
    model = _Stationary()
    x0 = torch.randint(0, K, (64, 5), generator=torch.Generator().manual_seed(1))
    value = loss(model, x0, generator=torch.Generator().manual_seed(2))
    v, t, s, index = loss.perturb(x0, torch.Generator().manual_seed(2))
    pred = model(v.float(), t.float()).double()
    direct = (v * (1 - v) * (pred - s) ** 2).mean((1, 2)) / loss.weights[index]
    assert abs(float(value.detach()) - float(direct.mean())) < 1e-5 * float(direct.mean())
    assert value.requires_grad


def test_importance_sampling_is_unbiased_for_the_uniform_time_average(loss):
    """With ``gamma = 1`` (times drawn with ``q ~ w``, weighted by ``1/w``) and ``gamma = 0`` (uniform times, no
    weights) the loss estimates the same grid average of the unnormalised error: 400 batches each, the two means
    agree within 4 combined standard errors."""
    uniform = DirichletScoreMatching(K, loss.table, importance=0.0)
    model = _Stationary()
    x0 = torch.randint(0, K, (32, 4), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a = torch.tensor([float(loss(model, x0, torch.Generator().manual_seed(s))) for s in range(400)])
        b = torch.tensor([float(uniform(model, x0, torch.Generator().manual_seed(10_000 + s))) for s in range(400)])
    se = math.sqrt(float(a.var()) / len(a) + float(b.var()) / len(b))
    assert abs(float(a.mean()) - float(b.mean())) < 4 * se, (float(a.mean()), float(b.mean()), se)
    assert float(a.std()) < float(b.std())                         # the point of importance sampling


def test_trainer_runs_the_loss_and_lowers_it(loss):
    """``sdekit.train.Trainer`` with integer 4x4 grids as data: 60 steps of a tiny network lower the loss
    (mean of the last 10 below the mean of the first 10 by 20%)."""
    from sdekit.domains import sudoku_grids

    data = sudoku_grids(512, 4, generator=torch.Generator().manual_seed(0)) - 1
    torch.manual_seed(0)
    net = SudokuScoreNet(4, dim=32, depth=1, heads=2)
    tr = Trainer(net, loss, data, TrainConfig(steps=60, batch_size=64, lr=3e-3, progress=False, ema_decay=None))
    hist = tr.fit()
    assert sum(hist[-10:]) < 0.8 * sum(hist[:10])


def _stationary_score(v, t):
    b = torch.arange(K - 1, 0, -1, dtype=v.dtype)
    return -(b - 1) / (1 - v)


def test_dilation_one_is_the_plain_sampler():
    """``dilation=1`` is the undilated reverse SDE run by ``sdeint`` on the geometric grid with the same draws
    (written out here as the sampler did before dilation existed): bit for bit."""
    shape = (50, 2, K - 1)
    out = dirichlet_reverse_sample(_stationary_score, K, (50, 2), steps=20, seed=5, dilation=1)
    gen = torch.Generator().manual_seed(5)
    _, b = stick_parameters(K)
    v0 = (1 - torch.rand(shape, generator=gen, dtype=torch.float64) ** (1 / b)).clamp(1e-6, 1 - 1e-6)
    ts = torch.logspace(1, -2, 21, dtype=torch.float64)
    ts[0], ts[-1] = 10.0, 0.01
    bm = BrownianGrid(ts, shape, seed=int(torch.randint(0, 2 ** 62, (1,), generator=gen)), dtype=torch.float64)
    vs = sdeint(JacobiReverseSDE(_stationary_score, K), v0, ts, method=_ClampedEuler(1e-6), dt=10 - 0.01, bm=bm)
    assert torch.equal(out, stick_breaking(vs[-1]))


def test_dilation_runs_c_times_the_steps_each_c_times_longer():
    """With ``dilation = c`` the score is called at the ``c * steps`` times of the geometric grid, and the SDE's
    drift and squared diffusion are ``c`` times those of the undilated one (each step moves the state as an
    undilated step ``c`` times as long)."""
    for c in (1, 2, 4):
        times: list[float] = []

        def score(v, t, times=times):
            times.append(float(t))
            return _stationary_score(v, t)

        dirichlet_reverse_sample(score, K, (3,), steps=5, seed=0, dilation=c)
        grid = torch.logspace(1, -2, 5 * c + 1, dtype=torch.float64)[:-1]
        distinct = sorted(set(times), reverse=True)               # sdeint probes f once more at the start time
        assert len(times) in (5 * c, 5 * c + 1) and len(distinct) == 5 * c
        assert torch.allclose(torch.tensor(distinct, dtype=torch.float64), grid, rtol=1e-12)
    v = torch.rand(7, K - 1, dtype=torch.float64)
    t = torch.tensor(0.3, dtype=torch.float64)
    plain, dilated = JacobiReverseSDE(_stationary_score, K), JacobiReverseSDE(_stationary_score, K, dilation=4)
    assert torch.allclose(dilated.f(t, v), 4 * plain.f(t, v), rtol=1e-14)
    assert torch.allclose(dilated.g(t, v) ** 2, 4 * plain.g(t, v) ** 2, rtol=1e-14)


def test_dilated_sampler_keeps_the_stationary_law():
    """If the data are the flat Dirichlet, the score at every time is the stationary ``-(b - 1)/(1 - v)`` and
    the reverse SDE is the (reversible) forward one, so any dilation must return ``Beta(1, b)`` sticks: KS per
    stick, 4000 samples, ``c = 4``."""
    x = dirichlet_reverse_sample(_stationary_score, K, (4000,), steps=50, seed=7, dilation=4)
    _, b = stick_parameters(K)
    v = x[:, :-1] / (1 - torch.cumsum(x, -1)[:, :-1] + x[:, :-1])
    for k in range(K - 1):
        assert stats.kstest(v[:, k].numpy(), stats.beta(1, float(b[k])).cdf).pvalue > 0.01


def test_denoise_last_takes_the_mean_step():
    """With one step and ``denoise_last`` the result is the drift step from the stationary draw, without noise:
    ``v1 = clamp(v0 + f(t_max, v0) (t_min - t_max))``."""
    x = dirichlet_reverse_sample(_stationary_score, K, (6,), steps=1, seed=9, t_max=0.5, t_min=0.4,
                                 denoise_last=True)
    gen = torch.Generator().manual_seed(9)
    _, b = stick_parameters(K)
    v0 = (1 - torch.rand((6, K - 1), generator=gen, dtype=torch.float64) ** (1 / b)).clamp(1e-6, 1 - 1e-6)
    sde = JacobiReverseSDE(_stationary_score, K)
    v1 = (v0 + sde.f(torch.tensor(0.5, dtype=torch.float64), v0) * (0.4 - 0.5)).clamp(1e-6, 1 - 1e-6)
    assert torch.allclose(x, stick_breaking(v1), rtol=0, atol=1e-15)


def test_sudoku_net_is_equivariant_under_sudoku_symmetries():
    """Permuting rows within a band and the bands, or columns within a stack, permutes the output the same way
    (the attention bias sees only same-cell/row/column/box relations; no positions); moving a column across
    stacks changes the boxes, and the output is not permuted with it."""
    torch.manual_seed(0)
    net = SudokuScoreNet(9, dim=32, depth=2, heads=4)
    torch.nn.init.normal_(net.out.weight, std=0.1)
    torch.nn.init.normal_(net.relation_bias, std=1.0)
    v = torch.rand(3, 9, 9, 8, dtype=torch.float32)
    t = torch.tensor([0.02, 0.3, 2.0])
    out = net(v, t)
    rows = torch.tensor([1, 0, 2, 6, 7, 8, 3, 4, 5])
    assert torch.allclose(net(v[:, rows], t), out[:, rows], rtol=1e-3, atol=1e-4)
    cols = torch.tensor([0, 2, 1, 3, 4, 5, 8, 7, 6])
    assert torch.allclose(net(v[:, :, cols], t), out[:, :, cols], rtol=1e-3, atol=1e-4)
    across = torch.tensor([0, 3, 1, 2, 4, 5, 6, 7, 8])
    assert not torch.allclose(net(v[:, :, across], t), out[:, :, across], rtol=1e-2, atol=1e-2)


def test_bad_input_is_refused(loss):
    with pytest.raises(ValueError, match="dilation"):
        dirichlet_reverse_sample(_stationary_score, K, (4,), steps=2, dilation=0)
    with pytest.raises(ValueError, match="dilation"):
        dirichlet_reverse_sample(_stationary_score, K, (4,), steps=2, dilation=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dilation"):
        JacobiReverseSDE(_stationary_score, K, dilation=0.5)
    with pytest.raises(ValueError, match="K"):
        DirichletScoreMatching(1)
    with pytest.raises(ValueError, match="importance"):
        DirichletScoreMatching(K, loss.table, importance=-1.0)
    with pytest.raises(ValueError, match="sum to one"):
        DirichletScoreMatching(K, loss.table, category_probs=torch.tensor([0.5, 0.5, 0.5, 0.5]))
    with pytest.raises(ValueError, match="category_probs"):
        DirichletScoreMatching(K, loss.table, category_probs=torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="sticks of stick_parameters"):
        DirichletScoreMatching(3, loss.table)
    a, b = stick_parameters(K)
    with pytest.raises(TypeError, match="JacobiScoreTable"):
        DirichletScoreMatching(K, table="table")  # type: ignore[arg-type]
    assert isinstance(loss.table, JacobiScoreTable)
    with pytest.raises(TypeError, match="integer categories"):
        loss(_Stationary(), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="categories in 0 .. 3"):
        loss(_Stationary(), torch.full((4, 3), K))
    with pytest.raises(ValueError, match="stick score of shape"):
        loss(lambda v, t: v[..., :1], torch.zeros(4, 3, dtype=torch.long))
    net = SudokuScoreNet(4, dim=16, depth=1, heads=2)
    with pytest.raises(ValueError, match="v must have shape"):
        net(torch.rand(2, 4, 4, 4), torch.ones(2))
    with pytest.raises(ValueError, match="t must be positive"):
        net(torch.rand(2, 4, 4, 3), torch.zeros(2))
    with pytest.raises(ValueError, match="dim"):
        SudokuScoreNet(4, dim=30, heads=4)
    with pytest.raises(ValueError, match="size"):
        SudokuScoreNet(5)
