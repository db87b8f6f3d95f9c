"""odeint: orders against the matrix exponential, adaptive accuracy, dense output at ts, tableaus."""

import numpy as np
import pytest
import torch

import sdekit
from sdekit.core.solvers import ODE_METHODS, ExplicitRK

F64 = torch.float64


def _linear_problem(seed=0, d=4):
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(d, d, dtype=F64, generator=g)
    A = 0.5 * (M - M.T) - 0.3 * torch.eye(d, dtype=F64)  # rotation with decay
    y0 = torch.randn(3, d, dtype=F64, generator=g)

    def f(t, y):
        return y @ A.T

    def exact(t):
        return y0 @ torch.linalg.matrix_exp(A * t).T

    return f, y0, exact


@pytest.mark.parametrize("method", ["euler", "midpoint", "heun", "rk4", "bosh3", "dopri5", "tsit5"])
def test_fixed_step_order_matches_tableau(method):
    f, y0, exact = _linear_problem()
    solver = sdekit.core.solvers.ode_solver(method)
    first = {5: 3, 4: 2}.get(solver.order, 4)  # asymptotic range, above float64 round-off
    dts = [2.0**-k for k in range(first, first + 4)]
    errs = []
    for dt in dts:
        # force fixed steps through the generic stepper: one step of size dt each loop iteration
        y, t = y0, 0.0
        state = ()
        while t < 1.0 - 1e-12:
            y, _, state = solver.step(f, torch.tensor(t, dtype=F64), torch.tensor(t + dt, dtype=F64), y, state)
            t += dt
        errs.append((y - exact(1.0)).abs().max().item())
    slope = np.polyfit(np.log(dts), np.log(errs), 1)[0]
    assert abs(slope - solver.order) <= 0.3, (method, slope, errs)


def test_rk4_through_odeint_has_order_four():
    f, y0, exact = _linear_problem(1)
    dts = [0.1, 0.05, 0.025, 0.0125]
    errs = [(sdekit.odeint(f, y0, [0.0, 2.0], method="rk4", dt=dt)[-1] - exact(2.0)).abs().max().item()
            for dt in dts]
    assert abs(np.polyfit(np.log(dts), np.log(errs), 1)[0] - 4) <= 0.3, errs


@pytest.mark.parametrize("method", ["dopri5", "tsit5", "bosh3"])
def test_adaptive_methods_meet_tolerance_at_every_output_time(method):
    f, y0, exact = _linear_problem(2)
    ts = torch.linspace(0, 3, 31, dtype=F64)
    for rtol in (1e-5, 1e-8):
        ys = sdekit.odeint(f, y0, ts, method=method, rtol=rtol, atol=rtol * 1e-2)
        err = max((ys[i] - exact(float(t))).abs().max().item() for i, t in enumerate(ts))
        assert err < 100 * rtol, (method, rtol, err)


@pytest.mark.parametrize("method", ["dopri5", "tsit5", "bosh3", "heun"])
def test_embedded_error_estimate_has_declared_order(method):
    f, y0, _ = _linear_problem(3)
    solver = sdekit.core.solvers.ode_solver(method)
    hs = [0.2, 0.1, 0.05]
    errs = [solver.step(f, torch.tensor(0.0, dtype=F64), torch.tensor(h, dtype=F64), y0, ())[1].abs().max().item()
            for h in hs]
    slope = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert abs(slope - (solver.error_order + 1)) <= 0.3, (method, slope)


def test_backwards_in_time_and_tuple_state():
    f, y0, exact = _linear_problem(4)
    y2 = exact(2.0)
    back = sdekit.odeint(f, y2, [2.0, 1.0, 0.0], rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(back[-1], y0, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(back[1], exact(1.0), rtol=1e-6, atol=1e-7)
    xs, vs = sdekit.odeint(lambda t, s: (s[1], -s[0]), (torch.ones(2, dtype=F64), torch.zeros(2, dtype=F64)),
                           [0.0, np.pi / 2], rtol=1e-9, atol=1e-11)
    assert abs(xs[-1, 0].item()) < 1e-7 and abs(vs[-1, 0].item() + 1) < 1e-7


def test_tableaus_are_valid_and_named():
    for name, tab in ODE_METHODS.items():
        tab.validate()
        assert ExplicitRK(tab).name == name


def test_odeint_boundary_errors():
    f, y0, _ = _linear_problem()
    with pytest.raises(ValueError, match="takes fixed steps: pass dt"):
        sdekit.odeint(f, y0, [0.0, 1.0], method="rk4")
    with pytest.raises(ValueError, match="unknown ODE method 'rk5'"):
        sdekit.odeint(f, y0, [0.0, 1.0], method="rk5")
    with pytest.raises(ValueError, match=r"f\(t, y\) must return a tensor of the shape of y"):
        sdekit.odeint(lambda t, y: y[:, :2], y0, [0.0, 1.0])
    with pytest.raises(ValueError, match="strictly monotone"):
        sdekit.odeint(f, y0, [0.0, 1.0, 1.0])
    with pytest.raises(RuntimeError, match="max_steps=5"):
        sdekit.odeint(f, y0, [0.0, 100.0], rtol=1e-10, atol=1e-12, max_steps=5)
