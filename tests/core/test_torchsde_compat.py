"""sdekit.torchsde: torchsde's API (signatures, defaults, errors) on sdekit's solvers and paths.

The full check runs torchsde's own test files: ``python benchmarks/torchsde_suite.py PATH``."""

import warnings

import pytest
import torch

import sdekit.torchsde as torchsde
from sdekit.torchsde._sdeint import default_method
from sdekit.torchsde.settings import LEVY_AREA_APPROXIMATIONS, METHODS, NOISE_TYPES, SDE_TYPES

F64 = torch.float64


class Diagonal(torchsde.SDEIto):
    def __init__(self):
        super().__init__(noise_type="diagonal")
        self.a = torch.nn.Parameter(torch.tensor([0.5, -0.3], dtype=F64))

    def f(self, t, y):
        return self.a * torch.sin(y)

    def g(self, t, y):
        return 0.3 * torch.sigmoid(y)

    def h(self, t, y):
        return torch.zeros_like(y)


class General(torch.nn.Module):
    noise_type = "general"

    def __init__(self, sde_type="stratonovich"):
        super().__init__()
        self.sde_type = sde_type
        self.w = torch.nn.Parameter(torch.tensor([[0.2, -0.1], [0.3, 0.4]], dtype=F64))

    def f(self, t, y):
        return -y

    def g(self, t, y):
        return torch.tanh(y).unsqueeze(-1) * self.w

    def g_prod(self, t, y, v):
        return (self.g(t, y) @ v.unsqueeze(-1)).squeeze(-1)


class GProdOnly(torch.nn.Module):
    noise_type, sde_type = "general", "stratonovich"

    def __init__(self):
        super().__init__()
        self.inner = General()

    def f_and_g_prod(self, t, y, v):
        return self.inner.f(t, y), (self.inner.g(t, y) @ v.unsqueeze(-1)).squeeze(-1)


def test_settings_and_defaults():
    assert "log_ode" in METHODS and "euler_heun" in METHODS and METHODS.log_ode_midpoint == "log_ode"
    assert NOISE_TYPES.all() == ["additive", "diagonal", "general", "scalar"]
    assert SDE_TYPES.all() == ["ito", "stratonovich"] and "foster" in LEVY_AREA_APPROXIMATIONS
    assert [default_method(n, "ito") for n in ("diagonal", "scalar", "additive", "general")] == \
        ["srk", "srk", "srk", "euler"]
    assert default_method("general", "stratonovich") == "midpoint"
    with pytest.raises(ValueError, match="noise type"):
        torchsde.SDEIto(noise_type="diag")


def test_sdeint_shapes_names_and_logqp():
    sde, y0 = Diagonal(), torch.full((4, 2), 0.1, dtype=F64)
    ts = torch.linspace(0, 0.5, 3, dtype=F64)
    assert torchsde.sdeint(sde, y0, ts, dt=0.05).shape == (3, 4, 2)
    ys, log_ratio = torchsde.sdeint(sde, y0, ts, dt=0.05, logqp=True, names={"drift": "f"})
    assert ys.shape == (3, 4, 2) and log_ratio.shape == (2, 4)
    # torchsde's diagonal logqp Brownian motion has d + 1 channels
    bm = torchsde.BrownianInterval(0.0, 0.5, size=(4, 3), dtype=F64, levy_area_approximation="space-time")
    ys, log_ratio = torchsde.sdeint(sde, y0, ts, bm, dt=0.05, logqp=True)
    assert log_ratio.shape == (2, 4)


@pytest.mark.parametrize("sde_type, method, bm_levy, match", [
    ("ito", "midpoint", None, "solver is for type stratonovich"),
    ("stratonovich", "euler", None, "solver is for type ito"),
    ("ito", "blah", None, "Expected method"),
    ("stratonovich", "log_ode", "space-time", "levy_area_approximation"),
])
def test_method_errors_are_torchsdes(sde_type, method, bm_levy, match):
    sde, y0 = General(sde_type), torch.full((3, 2), 0.1, dtype=F64)
    bm = None if bm_levy is None else torchsde.BrownianInterval(0, 1, size=(3, 2), dtype=F64,
                                                                levy_area_approximation=bm_levy)
    with pytest.raises(ValueError, match=match):
        torchsde.sdeint(sde, y0, [0.0, 1.0], bm, method=method, dt=0.1)
    with pytest.raises(ValueError, match="strictly increasing"):
        torchsde.sdeint(General(), y0, [1.0, 0.5], dt=0.1)


def test_g_prod_only_and_log_ode_with_foster_area():
    y0 = torch.full((3, 2), 0.1, dtype=F64)

    def solve(sde, method):
        bm = torchsde.BrownianInterval(0, 1, size=(3, 2), dtype=F64, entropy=7, levy_area_approximation="foster")
        return torchsde.sdeint(sde, y0, [0.0, 1.0], bm, method=method, dt=0.25)

    for method in ("midpoint", "euler_heun", "heun"):
        assert torch.allclose(solve(GProdOnly(), method), solve(General(), method), rtol=0, atol=1e-14)
    assert solve(General(), "log_ode").shape == (2, 3, 2)


def test_brownian_interval_conditioning_and_consistency():
    W = torch.tensor([0.3, -1.2], dtype=F64)
    H = torch.tensor([0.1, 0.05], dtype=F64)
    bm = torchsde.BrownianInterval(0.0, 2.0, W=W, H=H, levy_area_approximation="space-time", entropy=1)
    W_all, U_all = bm(0.0, 2.0, return_U=True)
    assert torch.allclose(W_all, W) and torch.allclose(U_all / 2.0 - 0.5 * W_all, H)
    (W1, U1), (W2, U2) = bm(0.0, 0.7, return_U=True), bm(0.7, 2.0, return_U=True)
    assert torch.allclose(W1 + W2, W_all) and torch.allclose(U1 + U2 + 1.3 * W1, U_all)
    again = torchsde.BrownianInterval(0.0, 2.0, W=W, H=H, levy_area_approximation="space-time", entropy=1)
    assert torch.equal(again(0.7, 2.0), W2)  # the same entropy, queried in another order
    scalar = torchsde.BrownianInterval(0.0, 1.0, size=(), levy_area_approximation="davie")
    assert scalar(0.2, 0.4).shape == () and scalar(0.2, 0.4, return_A=True)[1].shape == ()
    with pytest.raises(ValueError, match="tol"):
        torchsde.BrownianInterval(0.0, 1.0, size=(2,), halfway_tree=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert torch.equal(bm(1.5, 3.0), bm(1.5, 2.0))  # clamped to t1, as torchsde, with a warning
    assert caught


def test_brownian_path_tree_and_reverse():
    w0 = torch.ones(5, 2, dtype=F64)
    path = torchsde.BrownianPath(t0=0.0, w0=w0)
    assert torch.equal(path(0.0), w0) and path(0.5).shape == (5, 2)
    tree = torchsde.BrownianTree(t0=0.0, t1=1.0, w0=w0, w1=w0 + 2.0, entropy=0)
    assert torch.allclose(tree(1.0), w0 + 2.0)
    rev = torchsde.ReverseBrownian(tree)
    assert torch.equal(rev(-0.75, -0.25), tree(0.25, 0.75))


def test_extra_solver_state_reverses_reversible_heun():
    sde = General()
    y0 = torch.full((3, 2), 0.1, dtype=F64)
    ts = torch.linspace(0, 1, 6, dtype=F64)
    bm = torchsde.BrownianInterval(0.0, 1.0, size=(3, 2), dtype=F64, entropy=3)
    ys, (f, g, z) = torchsde.sdeint(sde, y0, ts, bm, method="reversible_heun", dt=0.2, extra=True)

    class Minus(torch.nn.Module):
        noise_type, sde_type = "general", "stratonovich"

        def f(self, t, y):
            return -sde.f(-t, y)

        def g(self, t, y):
            return -sde.g(-t, y)

    back = torchsde.sdeint(Minus(), ys[-1], -ts.flip(0), torchsde.ReverseBrownian(bm), method="reversible_heun",
                           dt=0.2, extra_solver_state=(-f, -g, z)).flip(0)
    assert torch.allclose(back, ys, atol=1e-12)


@pytest.mark.parametrize("method", ["midpoint", "reversible_heun", "milstein"])
def test_sdeint_adjoint_matches_sdeint(method):
    sde = General() if method != "milstein" else Diagonal()
    y0 = torch.full((3, 2), 0.1, dtype=F64, requires_grad=True)
    ts = torch.linspace(0, 0.5, 3, dtype=F64)
    bm = torchsde.BrownianInterval(0.0, 0.5, size=(3, 2), dtype=F64, entropy=5)
    grads = []
    for solve in (torchsde.sdeint, torchsde.sdeint_adjoint):
        ys = solve(sde, y0, ts, bm, method=method, dt=0.01)
        grads.append(torch.autograd.grad(ys.square().sum(), (y0, *sde.parameters())))
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=2e-2, atol=1e-3)
    with pytest.raises(ValueError, match="nn.Module"):
        torchsde.sdeint_adjoint(type("Plain", (), {"f": sde.f, "g": sde.g, "noise_type": sde.noise_type,
                                                   "sde_type": sde.sde_type})(), y0, ts, dt=0.1)
