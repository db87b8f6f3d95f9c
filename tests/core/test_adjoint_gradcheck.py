"""Adjoint strategies against finite differences (float64 ``torch.autograd.gradcheck``) and, for
odeint, against backpropagation; the ODE boundary errors."""

import pytest
import torch

import sdekit
from sdekit import Backprop, BrownianPath, Checkpointed, ContinuousAdjoint, ReversibleAdjoint

F64 = torch.float64


# --------------------------------------------------------------------------------------------
# SDEs: a two-dimensional SDE whose coefficients read a parameter vector theta
# --------------------------------------------------------------------------------------------
class ThetaSDE:
    """dy = tanh(A y + b) dt + s(y) o dW, diagonal noise; theta = (A (4), b (2), c (2))."""

    noise_type = "diagonal"

    def __init__(self, theta, sde_type):
        self.theta, self.sde_type = theta, sde_type

    def f(self, t, y):
        A = self.theta[:4].view(2, 2)
        return torch.tanh(y @ A.T + self.theta[4:6]) + 0.1 * t

    def g(self, t, y):
        return 0.3 * torch.sigmoid(self.theta[6:8] * y)


def _sde_loss(adjoint, method, sde_type, dt):
    bm = BrownianPath(0.0, 1.0, (2, 2), seed=4, dtype=F64, depth=12)

    def loss(y0, theta):
        strategy = adjoint(theta) if callable(adjoint) else adjoint
        ys = sdekit.sdeint(ThetaSDE(theta, sde_type), y0, [0.0, 0.4, 1.0], method=method, dt=dt, bm=bm,
                           adjoint=strategy)
        return (ys[1:] ** 2).sum(dim=(0, 2))  # (batch,): several outputs

    return loss


def _inputs():
    gen = torch.Generator().manual_seed(0)
    y0 = torch.randn(2, 2, generator=gen, dtype=F64).requires_grad_(True)
    theta = (0.5 * torch.randn(8, generator=gen, dtype=F64)).requires_grad_(True)
    return y0, theta


@pytest.mark.parametrize("name,adjoint,method,sde_type", [
    ("backprop", Backprop(), "euler", "ito"),
    ("checkpointed", lambda theta: Checkpointed(segments=4, params=(theta,)), "milstein", "ito"),
    ("reversible", lambda theta: ReversibleAdjoint(params=(theta,)), "reversible_heun", "stratonovich"),
])
def test_exact_strategies_pass_gradcheck(name, adjoint, method, sde_type):
    """Backprop, Checkpointed and ReversibleAdjoint differentiate the discrete solve exactly."""
    loss = _sde_loss(adjoint, method, sde_type, dt=0.05)
    assert torch.autograd.gradcheck(loss, _inputs(), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("method,sde_type", [("midpoint", "stratonovich"), ("euler", "ito")])
def test_continuous_adjoint_gradcheck(method, sde_type):
    """The continuous adjoint differentiates the exact solution: against finite differences of the
    discrete solve it agrees up to the discretisation error (fine steps, loosened tolerance)."""
    loss = _sde_loss(lambda theta: ContinuousAdjoint(params=(theta,)), method, sde_type, dt=1e-2)
    tol = 2e-4 if sde_type == "stratonovich" else 2e-2
    assert torch.autograd.gradcheck(loss, _inputs(), eps=1e-6, atol=tol, rtol=tol)


# --------------------------------------------------------------------------------------------
# ODEs
# --------------------------------------------------------------------------------------------
class Field(torch.nn.Module):
    def __init__(self, d=3, hidden=16):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(d + 1, hidden), torch.nn.Tanh(),
                                       torch.nn.Linear(hidden, d))
        self.to(F64)

    def forward(self, t, y):
        return self.net(torch.cat([y, t.expand(*y.shape[:-1], 1)], -1))


def _ode_gradients(f, y0, ts, weights, **kwargs):
    y0 = y0.clone().requires_grad_(True)
    ys = sdekit.odeint(f, y0, ts, **kwargs)
    return torch.autograd.grad((ys * weights).sum(), [y0, *f.parameters()])


def _close(got, expected, rtol):
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=rtol, atol=rtol * float(e.abs().max()))


@pytest.mark.parametrize("ts", [[0.0, 0.5, 1.3, 2.0], [2.0, 1.0, 0.0]])
@pytest.mark.parametrize("method,kwargs", [("dopri5", dict(rtol=1e-9, atol=1e-10)), ("rk4", dict(dt=0.02)),
                                           ("tsit5", dict(rtol=1e-9, atol=1e-10))])
def test_ode_strategies_match_backprop(ts, method, kwargs):
    f = Field()
    gen = torch.Generator().manual_seed(1)
    y0 = torch.randn(4, 3, generator=gen, dtype=F64)
    weights = torch.randn(len(ts), 4, 3, generator=gen, dtype=F64)
    expected = _ode_gradients(f, y0, ts, weights, method=method, **kwargs)
    _close(_ode_gradients(f, y0, ts, weights, method=method, adjoint=Backprop(), **kwargs), expected, 0)
    for segments in (None, 2):
        # Checkpointed replays the very same steps (an adaptive grid is recorded first).
        got = _ode_gradients(f, y0, ts, weights, method=method, adjoint=Checkpointed(segments), **kwargs)
        _close(got, expected, 1e-12)
    got = _ode_gradients(f, y0, ts, weights, method=method, adjoint=ContinuousAdjoint(), **kwargs)
    _close(got, expected, 1e-6)


def test_ode_continuous_adjoint_tuple_state_and_other_backward_method():
    w = torch.tensor([[0.0, 1.0], [-1.0, -0.1]], dtype=F64, requires_grad=True)

    def f(t, state):  # a damped oscillator as a tuple state (x, v)
        x, v = state
        return v, x * w[1, 0] + v * w[1, 1]

    x0 = torch.ones(3, dtype=F64, requires_grad=True)
    v0 = torch.zeros(3, dtype=F64, requires_grad=True)

    def grads(adjoint, **kw):
        xs, vs = sdekit.odeint(f, (x0, v0), [0.0, 1.0, 3.0], rtol=1e-10, atol=1e-12, adjoint=adjoint, **kw)
        return torch.autograd.grad((xs**2).sum() + vs.sum(), [x0, v0, w], allow_unused=True)

    expected = grads(None)
    _close(grads(ContinuousAdjoint(params=(w,))), expected, 1e-6)
    _close(grads(ContinuousAdjoint(method="rk4", dt=1e-2, params=(w,))), expected, 1e-6)
    _close(grads(Checkpointed(params=(w,))), expected, 1e-12)


def test_ode_gradcheck():
    theta0 = torch.tensor([0.3, -0.7, 0.2], dtype=F64, requires_grad=True)
    y00 = torch.tensor([[0.5, -1.0], [1.5, 0.2]], dtype=F64, requires_grad=True)

    def field(theta):
        return lambda t, y: torch.stack([theta[0] * y[:, 1], theta[1] * torch.sin(y[:, 0]) + theta[2] * t],
                                        -1)

    def loss_with(adjoint, **kw):
        def loss(y0, theta):
            strategy = adjoint(theta)
            return sdekit.odeint(field(theta), y0, [0.0, 0.5, 1.0], adjoint=strategy, **kw)[1:].sum((0, 2))
        return loss

    exact = dict(method="rk4", dt=0.05)
    checkpointed = loss_with(lambda th: Checkpointed(segments=3, params=(th,)), **exact)
    assert torch.autograd.gradcheck(checkpointed, (y00, theta0))
    assert torch.autograd.gradcheck(loss_with(lambda th: Backprop(), **exact), (y00, theta0))
    assert torch.autograd.gradcheck(
        loss_with(lambda th: ContinuousAdjoint(params=(th,)), rtol=1e-11, atol=1e-12), (y00, theta0),
        atol=1e-6, rtol=1e-5,
    )


def test_ode_boundary_errors():
    f = Field()
    y0 = torch.zeros(2, 3, dtype=F64, requires_grad=True)
    with pytest.raises(ValueError, match="reversible_heun"):
        sdekit.odeint(f, y0, [0.0, 1.0], adjoint=ReversibleAdjoint())
    with pytest.raises(ValueError, match="dt"):
        sdekit.odeint(f, y0, [0.0, 1.0], adjoint=ContinuousAdjoint(method="rk4"))
    with pytest.raises(TypeError, match="ODE method"):
        sdekit.odeint(f, y0, [0.0, 1.0], adjoint=ContinuousAdjoint(method=sdekit.core.solvers.Heun()))
    with pytest.raises(TypeError, match="adjoint"):
        sdekit.odeint(f, y0, [0.0, 1.0], adjoint=object())
