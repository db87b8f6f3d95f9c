"""Adjoint strategies for sdeint: agreement with backpropagation on neural SDEs of every noise type,
pathwise gradients of geometric Brownian motion against the closed form, reversible-Heun path
reconstruction, and the boundary errors."""

import math

import pytest
import torch

import sdekit
from sdekit import Backprop, BrownianPath, Checkpointed, ContinuousAdjoint, ReversibleAdjoint
from sdekit.core._grid import StepGrid, time_tensors
from sdekit.core.adjoint._reversible import _ReversibleAdjointFn, _ReversibleSpec
from sdekit.core.integrate import fixed_sde
from sdekit.core.sde import Problem
from sdekit.core.solvers import ReversibleHeun

F64 = torch.float64
NOISE_TYPES = ("diagonal", "scalar", "additive", "general")


class NeuralSDE(torch.nn.Module):
    """Small MLP drift and diffusion (diffusion scaled by 0.1) for every noise type.

    For Ito diagonal noise the diffusion acts elementwise (``g_i`` depends on ``y_i`` only), the
    meaning of diagonal noise that the Ito-to-Stratonovich conversion (and Milstein) rely on."""

    def __init__(self, noise_type="diagonal", sde_type="ito", d=3, m=2, hidden=8, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.noise_type, self.sde_type, self.d, self.m = noise_type, sde_type, d, m
        self.elementwise = noise_type == "diagonal"
        self.drift = torch.nn.Sequential(torch.nn.Linear(d + 1, hidden), torch.nn.Tanh(),
                                         torch.nn.Linear(hidden, d))
        width_in = 2 if self.elementwise else d + 1
        width_out = {"diagonal": 1, "scalar": d, "additive": d * m, "general": d * m}[noise_type]
        self.diffusion = torch.nn.Sequential(torch.nn.Linear(width_in, hidden), torch.nn.Tanh(),
                                             torch.nn.Linear(hidden, width_out))
        self.to(F64)

    def brownian_shape(self, batch):
        return {"diagonal": (batch, self.d), "scalar": (batch, 1)}.get(self.noise_type, (batch, self.m))

    def f(self, t, y):
        return self.drift(torch.cat([y, t.expand(*y.shape[:-1], 1)], -1))

    def g(self, t, y):
        if self.elementwise:
            return 0.1 * self.diffusion(torch.stack([y, t.expand_as(y)], -1)).squeeze(-1)
        x = torch.zeros_like(y) if self.noise_type == "additive" else y
        out = 0.1 * self.diffusion(torch.cat([x, t.expand(*y.shape[:-1], 1)], -1))
        if self.noise_type == "scalar":
            return out.unsqueeze(-1)
        return out.view(*y.shape, self.m)


def _gradients(sde, y0, ts, weights, **kwargs):
    y0 = y0.clone().requires_grad_(True)
    ys = sdekit.sdeint(sde, y0, ts, **kwargs)
    params = [p for p in sde.parameters()]
    grads = torch.autograd.grad((ys * weights).sum(), [y0, *params])
    return ys.detach(), grads


def _assert_gradients_close(got, expected, rtol):
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=rtol, atol=rtol * float(e.abs().max()))


def _setup(noise_type, sde_type, batch=4, T=1.0, seed=0):
    sde = NeuralSDE(noise_type, sde_type, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    y0 = torch.randn(batch, sde.d, generator=gen, dtype=F64)
    ts = [0.0, 0.3 * T, 0.7 * T, T]
    weights = torch.randn(len(ts), batch, sde.d, generator=gen, dtype=F64)
    # depth 10: dyadic leaves of T/1024, finer than the steps (queries inside a leaf are exact bridges)
    bm = BrownianPath(0.0, T, sde.brownian_shape(batch), seed=seed + 2, dtype=F64, depth=10)
    return sde, y0, ts, weights, bm


@pytest.mark.parametrize("sde_type", ["ito", "stratonovich"])
@pytest.mark.parametrize("noise_type", NOISE_TYPES)
def test_continuous_adjoint_matches_backprop(noise_type, sde_type):
    sde, y0, ts, weights, bm = _setup(noise_type, sde_type)
    method = "euler" if sde_type == "ito" else "midpoint"
    kwargs = dict(method=method, dt=2e-3, bm=bm)
    ys_bp, expected = _gradients(sde, y0, ts, weights, **kwargs)
    ys_adj, got = _gradients(sde, y0, ts, weights, adjoint=ContinuousAdjoint(), **kwargs)
    torch.testing.assert_close(ys_adj, ys_bp, rtol=0, atol=0)  # the forward pass is the same solve
    _assert_gradients_close(got, expected, rtol=1e-2)


@pytest.mark.parametrize("noise_type", NOISE_TYPES)
def test_reversible_adjoint_matches_backprop_through_reversible_heun(noise_type):
    sde, y0, ts, weights, bm = _setup(noise_type, "stratonovich")
    kwargs = dict(method="reversible_heun", dt=2e-3, bm=bm)
    _, expected = _gradients(sde, y0, ts, weights, **kwargs)
    _, got = _gradients(sde, y0, ts, weights, adjoint=ReversibleAdjoint(), **kwargs)
    _assert_gradients_close(got, expected, rtol=1e-6)


@pytest.mark.parametrize("method,sde_type", [("euler", "ito"), ("milstein", "ito"), ("srk", "ito"),
                                             ("heun", "stratonovich"), ("reversible_heun", "stratonovich")])
@pytest.mark.parametrize("segments", [None, 3])
def test_checkpointed_equals_backprop(method, sde_type, segments):
    noise_type = "diagonal"
    sde, y0, ts, weights, _ = _setup(noise_type, sde_type, T=0.2)
    levy = "space-time" if method == "srk" else None
    bm = BrownianPath(0.0, 0.2, sde.brownian_shape(4), seed=5, dtype=F64, levy_area=levy)
    kwargs = dict(method=method, dt=1e-2, bm=bm)
    _, expected = _gradients(sde, y0, ts, weights, **kwargs)
    _, got = _gradients(sde, y0, ts, weights, adjoint=Checkpointed(segments=segments), **kwargs)
    _, again = _gradients(sde, y0, ts, weights, adjoint=Backprop(), **kwargs)
    _assert_gradients_close(got, expected, rtol=1e-12)
    _assert_gradients_close(again, expected, rtol=0)


@pytest.mark.parametrize("noise_type", ["scalar", "general"])
def test_checkpointed_equals_backprop_other_noise(noise_type):
    sde, y0, ts, weights, bm = _setup(noise_type, "ito", T=1.0)
    kwargs = dict(method="euler", dt=2e-2, bm=bm)
    _, expected = _gradients(sde, y0, ts, weights, **kwargs)
    _, got = _gradients(sde, y0, ts, weights, adjoint=Checkpointed(), **kwargs)
    _assert_gradients_close(got, expected, rtol=1e-12)


@pytest.mark.parametrize("adjoint", [Checkpointed(), ContinuousAdjoint(), ReversibleAdjoint()])
def test_decreasing_times_and_tuple_states(adjoint):
    """Reversed time and a tuple state go through the same packing as sdeint."""

    class Pair(torch.nn.Module):
        noise_type, sde_type = "diagonal", "stratonovich"

        def __init__(self):
            super().__init__()
            self.a = torch.nn.Parameter(torch.tensor([0.5, -0.3], dtype=F64))
            self.s = torch.nn.Parameter(torch.tensor(0.2, dtype=F64))

        def f(self, t, y):
            u, v = y
            return self.a[0] * torch.tanh(v).expand_as(u), self.a[1] * torch.sin(u).sum(-1, keepdim=True)

        def g(self, t, y):
            u, v = y
            return self.s * torch.cos(u), self.s * torch.ones_like(v)

    sde = Pair()
    u0 = torch.randn(3, 2, dtype=F64, requires_grad=True)
    v0 = torch.randn(3, 1, dtype=F64, requires_grad=True)
    bm = BrownianPath(0.0, 1.0, (9,), seed=3, dtype=F64)
    ts = [1.0, 0.6, 0.0]
    method = "reversible_heun" if isinstance(adjoint, ReversibleAdjoint) else "midpoint"

    def grads(strategy):
        us, vs = sdekit.sdeint(sde, (u0, v0), ts, method=method, dt=2e-3, bm=bm, adjoint=strategy)
        loss = (us**2).sum() + vs.sum()
        return torch.autograd.grad(loss, [u0, v0, sde.a, sde.s])

    _assert_gradients_close(grads(adjoint), grads(None), rtol=1e-2 if isinstance(adjoint, ContinuousAdjoint)
                            else 1e-9)


@pytest.mark.parametrize("noise_type", ["diagonal", "general"])
def test_continuous_adjoint_decreasing_times_ito(noise_type):
    """ts decreasing: the forward solver sees the time-reversed Ito SDE; the adjoint is that one's."""
    sde, y0, _, _, bm = _setup(noise_type, "ito", T=0.6)
    ts = [0.6, 0.2, 0.0]
    weights = torch.randn(3, 4, 3, dtype=F64, generator=torch.Generator().manual_seed(3))
    kwargs = dict(method="euler", dt=2e-3, bm=bm)
    _, expected = _gradients(sde, y0, ts, weights, **kwargs)
    _, got = _gradients(sde, y0, ts, weights, adjoint=ContinuousAdjoint(), **kwargs)
    _assert_gradients_close(got, expected, rtol=1e-2)


def test_continuous_adjoint_float32_default_brownian():
    """bm=None: the adjoint builds a seeded grid both solves share (float32 times snap to it)."""
    sde = NeuralSDE("general", "ito").float()
    y0 = torch.randn(4, 3, requires_grad=True)
    for ts in ([0.0, 0.1, 0.45, 1.0], torch.linspace(1.0, 0.0, 5)):
        ys = sdekit.sdeint(sde, y0, ts, dt=1e-2, adjoint=ContinuousAdjoint())
        grads = torch.autograd.grad(ys.sum(), [y0, *sde.parameters()])
        assert all(torch.isfinite(g).all() for g in grads)
        assert grads[0].dtype == torch.float32


def test_continuous_adjoint_adaptive_and_custom_method():
    sde, y0, ts, weights, _ = _setup("diagonal", "stratonovich", T=0.5)
    bm = BrownianPath(0.0, 0.5, (4, 3), seed=9, dtype=F64)  # full depth: queries off the forward grid
    _, expected = _gradients(sde, y0, ts, weights, method="midpoint", dt=2e-3, bm=bm)
    for strategy in (ContinuousAdjoint(method="heun"),  # on the forward grid
                     ContinuousAdjoint(dt=1e-3),  # a finer grid: shared times snap to the forward ones
                     ContinuousAdjoint(adaptive=True, dt=1e-2, rtol=1e-4, atol=1e-6)):
        _, got = _gradients(sde, y0, ts, weights, method="midpoint", dt=2e-3, bm=bm, adjoint=strategy)
        _assert_gradients_close(got, expected, rtol=1e-2)
    # An adaptive forward solve: backprop through its accepted steps against the adjoint.
    kwargs = dict(method="midpoint", dt=1e-2, bm=bm, adaptive=True, rtol=1e-4, atol=1e-6)
    _, expected = _gradients(sde, y0, ts, weights, **kwargs)
    _, got = _gradients(sde, y0, ts, weights, adjoint=ContinuousAdjoint(adaptive=True), **kwargs)
    _assert_gradients_close(got, expected, rtol=2e-2)


def test_explicit_params_for_plain_callables():
    w = torch.tensor([0.7, -0.4], dtype=F64, requires_grad=True)
    s = torch.tensor(0.3, dtype=F64, requires_grad=True)
    sde = sdekit.SDE(lambda t, y: -w * y, lambda t, y: s * torch.ones_like(y), sde_type="stratonovich")
    # SDE is an nn.Module without parameters: w and s must be named explicitly.
    y0 = torch.ones(5, 2, dtype=F64)
    bm = BrownianPath(0.0, 1.0, (5, 2), seed=0, dtype=F64)

    def grads(adjoint, method):
        ys = sdekit.sdeint(sde, y0, [0.0, 1.0], method=method, dt=1e-2, bm=bm, adjoint=adjoint)
        return torch.autograd.grad((ys**2).sum(), [w, s])

    _assert_gradients_close(grads(ReversibleAdjoint(params=(w, s)), "reversible_heun"),
                            grads(None, "reversible_heun"), rtol=1e-9)
    _assert_gradients_close(grads(ContinuousAdjoint(params=[w, s], dt=1e-3), "midpoint"),
                            grads(None, "midpoint"), rtol=1e-2)


def test_plain_callable_without_params_warns():
    class Plain:
        noise_type, sde_type = "diagonal", "ito"

        def f(self, t, y):
            return -y

        def g(self, t, y):
            return 0.1 * torch.ones_like(y)

    y0 = torch.ones(2, 2, dtype=F64, requires_grad=True)
    with pytest.warns(UserWarning, match="params"):
        sdekit.sdeint(Plain(), y0, [0.0, 0.1], dt=1e-2, adjoint=ContinuousAdjoint())
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ys = sdekit.sdeint(Plain(), y0, [0.0, 0.1], dt=1e-2, adjoint=ContinuousAdjoint(params=()))
    (grad,) = torch.autograd.grad(ys[-1].sum(), y0)
    assert torch.isfinite(grad).all()


# --------------------------------------------------------------------------------------------
# Geometric Brownian motion: pathwise gradients in closed form
# --------------------------------------------------------------------------------------------
class ParamGBM(torch.nn.Module):
    """du = mu u dt + sigma u dW (Ito), or the same process in Stratonovich form."""

    noise_type = "diagonal"

    def __init__(self, mu, sigma, sde_type="ito"):
        super().__init__()
        self.sde_type = sde_type
        self.mu = torch.nn.Parameter(torch.tensor(mu, dtype=F64))
        self.sigma = torch.nn.Parameter(torch.tensor(sigma, dtype=F64))

    def f(self, t, y):
        drift = self.mu if self.sde_type == "ito" else self.mu - 0.5 * self.sigma**2
        return drift * y

    def g(self, t, y):
        return self.sigma * y


@pytest.mark.parametrize("adjoint,method,sde_type,dt", [
    (Backprop(), "milstein", "ito", 2e-3),
    (Checkpointed(), "milstein", "ito", 2e-3),
    (ContinuousAdjoint(), "milstein", "ito", 2e-3),
    (ContinuousAdjoint(), "midpoint", "stratonovich", 2e-3),
    (ReversibleAdjoint(), "reversible_heun", "stratonovich", 1e-3),
])
def test_gbm_pathwise_gradients_match_closed_form(adjoint, method, sde_type, dt):
    """u_t = u0 exp((mu - sigma^2/2) t + sigma W_t): du/dmu = t u, du/dsigma = (W_t - sigma t) u,
    du/du0 = u / u0, for the loss sum_t u_t^2 / 2 on the same Brownian path."""
    mu, sigma, batch = 0.4, 0.5, 6
    sde = ParamGBM(mu, sigma, sde_type)
    bm = BrownianPath(0.0, 1.0, (batch, 1), seed=11, dtype=F64, depth=12)
    u0 = torch.linspace(0.5, 1.5, batch, dtype=F64).unsqueeze(-1).requires_grad_(True)
    ts = torch.linspace(0.0, 1.0, 6, dtype=F64)
    us = sdekit.sdeint(sde, u0, ts, method=method, dt=dt, bm=bm, adjoint=adjoint)
    g_mu, g_sigma, g_u0 = torch.autograd.grad(0.5 * (us**2).sum(), [sde.mu, sde.sigma, u0])

    W = torch.stack([bm(0.0, float(t)) for t in ts])  # (len(ts), batch, 1)
    t = ts.view(-1, 1, 1)
    with torch.no_grad():
        u = u0 * torch.exp((mu - 0.5 * sigma**2) * t + sigma * W)
        exact_mu = (u * t * u).sum()
        exact_sigma = (u * (W - sigma * t) * u).sum()
        exact_u0 = (u * u / u0).sum(0)
    torch.testing.assert_close(g_mu, exact_mu, rtol=1e-2, atol=0)
    torch.testing.assert_close(g_sigma, exact_sigma, rtol=2e-2, atol=1e-2 * float(exact_sigma.abs()))
    torch.testing.assert_close(g_u0, exact_u0, rtol=1e-2, atol=0)


# --------------------------------------------------------------------------------------------
# Reversible Heun: the backward pass rebuilds the forward path
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("noise_type", ["diagonal", "general"])
def test_reversible_heun_reconstructs_the_forward_path(noise_type):
    sde, y0, _, _, bm = _setup(noise_type, "stratonovich")
    n, dt = 500, 2e-3
    problem = Problem(sde, y0, torch.tensor(0.0, dtype=F64))
    solver = ReversibleHeun()
    spec = _ReversibleSpec(fixed_sde(problem, solver, [0.0, 1.0], dt, bm, False, bounded_memory=True), solver,
                           trace=[])
    params = tuple(sde.parameters())
    ys = _ReversibleAdjointFn.apply(spec, y0.clone().requires_grad_(True), *params)
    ys.sum().backward()
    rebuilt = torch.stack(spec.trace[::-1])  # y at grid points 0 .. n-1
    assert len(spec.setup.grid) == n + 1
    # The forward path at every grid point (the very same times, so the same Brownian increments).
    grid = [spec.setup.grid[k] for k in range(n + 1)]
    forward = sdekit.sdeint(sde, y0, grid, method="reversible_heun", dt=dt, bm=bm).detach()
    assert rebuilt.shape == forward[:-1].shape
    torch.testing.assert_close(rebuilt, forward[:-1], rtol=0, atol=1e-6)
    assert float((rebuilt - forward[:-1]).abs().max()) < 1e-10  # in fact exact to rounding


@pytest.mark.parametrize("ts,dt", [([0.0, 1.0], 1e-3), ([0.0, 0.1, 0.45, 1.0], 0.03),
                                   ([-1.0, -0.7, 0.2, 0.21], 0.05), ([0.0, 1e-3, 2.5], 7e-4)])
def test_step_grid(ts, dt):
    """The one fixed grid (loop and strategies): per output interval [a, b], n = ceil((b - a) / dt) equal
    steps a + (b - a) k / n and b itself, the same floats by index, by iteration, in views and in the time
    tensors, lazily or not."""
    expected, saves = [ts[0]], [0]
    for a, b in zip(ts[:-1], ts[1:]):
        n = max(1, math.ceil((b - a) / dt - 1e-9))
        assert (b - a) / n <= dt * (1 + 1e-12)
        expected += [a + (b - a) * k / n for k in range(1, n)] + [b]
        saves.append(len(expected) - 1)
    grid = StepGrid(ts, dt)
    assert len(grid) == len(expected) and grid.saves == saves
    assert [grid[k] for k in range(len(grid))] == expected == list(grid)  # bit for bit
    view = grid[len(grid) - 1:0:-2]
    assert [view[k] for k in range(len(view))] == list(view) == expected[len(expected) - 1:0:-2]
    assert list(view.negated()) == [-t for t in expected[len(expected) - 1:0:-2]]
    t_of = time_tensors(F64, "cpu")
    eager = torch.stack(t_of(expected))
    lazy = t_of(grid)
    assert torch.equal(torch.stack(list(lazy)), eager)
    assert torch.equal(torch.stack([lazy[k] for k in reversed(range(len(grid)))]), eager.flip(0))


def _saved_bytes(sde, y0, steps, adjoint):
    """Bytes of the distinct tensors the forward pass saves for the backward pass."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        sdekit.sdeint(sde, y0, [0.0, 0.5, 1.0], method="reversible_heun", dt=1.0 / steps, adjoint=adjoint)
    return sum(storages.values())


def test_saved_memory_scales_as_documented():
    """Graph memory from 100 to 1600 steps: constant for the adjoints, ~sqrt for Checkpointed (x4),
    linear for Backprop (x16). (benchmarks/adjoint.py measures the whole heap.)"""
    sde = NeuralSDE("diagonal", "stratonovich")
    y0 = torch.randn(8, 3, dtype=F64, requires_grad=True)
    ratio = {}
    for name, adjoint in [("backprop", Backprop()), ("checkpointed", Checkpointed()),
                          ("continuous", ContinuousAdjoint()), ("reversible", ReversibleAdjoint())]:
        ratio[name] = _saved_bytes(sde, y0, 1600, adjoint) / _saved_bytes(sde, y0, 100, adjoint)
    assert ratio["continuous"] == 1.0 and ratio["reversible"] == 1.0
    assert 2.5 < ratio["checkpointed"] < 5.0
    assert ratio["backprop"] > 14.0


# --------------------------------------------------------------------------------------------
# Boundary errors
# --------------------------------------------------------------------------------------------
def _tiny():
    sde = NeuralSDE("diagonal", "ito")
    return sde, torch.zeros(2, 3, dtype=F64, requires_grad=True)


def test_reversible_adjoint_rejects_other_methods():
    sde, y0 = _tiny()
    with pytest.raises(ValueError, match=r"reversible_heun.*'euler'|'euler'.*reversible_heun"):
        sdekit.sdeint(sde, y0, [0.0, 0.1], method="euler", adjoint=ReversibleAdjoint())
    strat = NeuralSDE("general", "stratonovich")
    with pytest.raises(ValueError, match="fixed steps"):
        sdekit.sdeint(strat, y0, [0.0, 0.1], method="reversible_heun", adaptive=True,
                      adjoint=ReversibleAdjoint())


def test_strategy_boundary_errors():
    sde, y0 = _tiny()
    with pytest.raises(ValueError, match="fixed steps"):
        sdekit.sdeint(sde, y0, [0.0, 0.1], adaptive=True, adjoint=Checkpointed())
    with pytest.raises(ValueError, match="midpoint"):
        sdekit.sdeint(sde, y0, [0.0, 0.1], adjoint=ContinuousAdjoint(method="milstein"))
    with pytest.raises(ValueError, match="additive"):
        sdekit.sdeint(sde, y0, [0.0, 0.1], adjoint=ContinuousAdjoint(method="euler"))
    with pytest.raises(TypeError, match="ContinuousAdjoint"):
        sdekit.sdeint(sde, y0, [0.0, 0.1], adjoint="adjoint")
    with pytest.raises(TypeError, match="instance"):
        sdekit.sdeint(sde, y0, [0.0, 0.1], adjoint=ContinuousAdjoint)
    with pytest.raises(TypeError, match="tuple of tensors"):
        ContinuousAdjoint(params=torch.zeros(2))
    with pytest.raises(TypeError, match=r"params\[1\]"):
        ReversibleAdjoint(params=(torch.zeros(2), 1.0))
    with pytest.raises(ValueError, match="segments"):
        Checkpointed(segments=0)
    with pytest.raises(ValueError, match="dt"):
        ContinuousAdjoint(dt=-1.0)
    with pytest.raises(TypeError, match="adaptive"):
        ContinuousAdjoint(adaptive="yes")
