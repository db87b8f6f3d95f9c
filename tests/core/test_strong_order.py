"""Strong and weak orders measured on closed-form SDEs, on the same Brownian path as the exact
solution. Slopes are least-squares fits of log mean |error| against log dt."""

import math

import numpy as np
import pytest
import torch

import sdekit
from sdekit import BrownianPath

from .problems import GBM, OU, Additive, Tanh

F64 = torch.float64
T = 1.0
DTS = [2.0**-k for k in range(4, 9)]  # 1/16 .. 1/256
BATCH = 400


def _strong_errors(sde, y0, method, seed=0, dts=DTS):
    bm = BrownianPath(0.0, T, (BATCH, y0.shape[-1]), seed=seed, dtype=F64, levy_area="space-time")
    exact = sde.exact(y0, T, bm(0.0, T))
    errs = []
    for dt in dts:
        ys = sdekit.sdeint(sde, y0, [0.0, T], method=method, dt=dt, bm=bm)
        errs.append((ys[-1] - exact).abs().mean().item())
    return errs


def _slope(dts, errs):
    return float(np.polyfit(np.log(dts), np.log(errs), 1)[0])


CASES = [
    # (problem factory, initial value, method, declared order, how the fitted slope is judged)
    # "match": within 0.2 of the declared order; "at least": not below it by more than 0.2 (on
    # the Kloeden-Platen additive problem the stochastic convolution integrand is constant in time,
    # so every deterministic-order-2 scheme converges at order 2 there).
    (lambda: GBM(), 1.0, "euler", 0.5, "match"),
    (lambda: GBM(), 1.0, "milstein", 1.0, "match"),
    (lambda: GBM(), 1.0, "milstein_grad_free", 1.0, "match"),
    (lambda: GBM(), 1.0, "srk", 1.5, "match"),
    (lambda: GBM(sde_type="stratonovich"), 1.0, "heun", 1.0, "match"),
    (lambda: GBM(sde_type="stratonovich"), 1.0, "midpoint", 1.0, "match"),
    (lambda: GBM(sde_type="stratonovich"), 1.0, "euler_heun", 1.0, "match"),
    (lambda: GBM(sde_type="stratonovich"), 1.0, "log_ode", 1.0, "match"),
    (lambda: Tanh(), 0.1, "euler", 0.5, "match"),
    (lambda: Tanh(), 0.1, "milstein", 1.0, "match"),
    (lambda: Tanh(), 0.1, "srk", 1.5, "match"),
    (lambda: Tanh(sde_type="stratonovich"), 0.1, "heun", 1.0, "match"),
    (lambda: Tanh(sde_type="stratonovich"), 0.1, "euler_heun", 1.0, "match"),
    (lambda: Tanh(sde_type="stratonovich"), 0.1, "log_ode", 1.0, "match"),
    (lambda: Additive(), 0.5, "euler", 1.0, "match"),
    (lambda: Additive(), 0.5, "milstein", 1.0, "match"),
    (lambda: Additive(), 0.5, "srk", 1.5, "at least"),
    (lambda: Additive(), 0.5, "heun", 1.0, "at least"),
    (lambda: Additive(), 0.5, "midpoint", 1.0, "at least"),
    (lambda: Additive(), 0.5, "reversible_heun", 1.0, "at least"),
    (lambda: Additive(), 0.5, "euler_heun", 1.0, "at least"),
    (lambda: Additive(), 0.5, "log_ode", 1.0, "at least"),
]


def _judge(slope, order, mode, label):
    if mode == "match":
        assert abs(slope - order) <= 0.2, f"{label}: fitted strong order {slope:.3f}, declared {order}"
    else:
        assert slope >= order - 0.2, f"{label}: fitted strong order {slope:.3f} below declared {order}"


@pytest.mark.parametrize("make, u0, method, order, mode", CASES,
                         ids=[f"{c[0]().__class__.__name__}-{c[2]}" for c in CASES])
def test_strong_order(make, u0, method, order, mode):
    sde = make()
    y0 = torch.full((BATCH, 1), u0, dtype=F64)
    errs = _strong_errors(sde, y0, method)
    _judge(_slope(DTS, errs), order, mode, f"{type(sde).__name__}/{method} errors {errs}")
    # the declared order is the one asserted
    solver = sdekit.core.solvers.sde_solver(method, sde.sde_type)
    assert solver.order_for(sde.noise_type) == order


def test_additive_orders_on_ornstein_uhlenbeck():
    # Additive noise with a state-dependent drift: here Euler, Heun, midpoint and reversible Heun
    # (and Euler-Heun, log-ODE) show their additive order 1 exactly; SRA1 at least 1.5 (2 on this linear problem).
    sde = OU()
    y0 = torch.full((BATCH, 1), 0.5, dtype=F64)
    bm = BrownianPath(0.0, T, (BATCH, 1), seed=1, dtype=F64, levy_area="space-time")
    ref = sde.reference(y0, T, bm)
    for method, order, mode in [("euler", 1.0, "match"), ("heun", 1.0, "match"), ("midpoint", 1.0, "match"),
                                ("reversible_heun", 1.0, "match"), ("euler_heun", 1.0, "match"),
                                ("log_ode", 1.0, "match"), ("srk", 1.5, "at least")]:
        errs = [(sdekit.sdeint(sde, y0, [0.0, T], method=method, dt=dt, bm=bm)[-1] - ref).abs().mean().item()
                for dt in DTS]
        _judge(_slope(DTS, errs), order, mode, f"OU/{method} errors {errs}")


def test_weak_order_of_euler_maruyama():
    # E[u_T] = u0 exp(mu T) for GBM. Common random numbers across dt (one Brownian path); the
    # standard error of each difference is far below the weak error being fitted.
    mu, sigma, n = 1.0, 0.2, 100_000
    sde = GBM(mu=mu, sigma=sigma)
    y0 = torch.ones(n, 1, dtype=F64)
    bm = BrownianPath(0.0, T, (n, 1), seed=123, dtype=F64)
    dts = [2.0**-k for k in range(3, 7)]
    errs, ses = [], []
    for dt in dts:
        yT = sdekit.sdeint(sde, y0, [0.0, T], method="euler", dt=dt, bm=bm)[-1]
        errs.append(abs(yT.mean().item() - math.exp(mu * T)))
        ses.append(yT.std().item() / math.sqrt(n))
    assert max(ses) < 0.1 * min(errs), (ses, errs)
    slope = _slope(dts, errs)
    assert abs(slope - 1.0) <= 0.2, f"weak order {slope:.3f}, errors {errs}"


class _NonCommutative(torch.nn.Module):
    """dy = B1 y o dW1 + B2 y o dW2 (Stratonovich) with [B1, B2] != 0: general, non-commutative noise."""

    noise_type, sde_type = "general", "stratonovich"

    def __init__(self):
        super().__init__()
        self.B = torch.tensor([[[0.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, 0.0]]], dtype=F64)

    def f(self, t, y):
        return torch.zeros_like(y)

    def g(self, t, y):
        return torch.einsum("kij,bj->bik", self.B, y)


def test_log_ode_on_non_commutative_noise():
    # Both reach their strong order 0.5 against a fine midpoint reference on the same path; the
    # log-ODE method's space-time Levy area term removes part of the error (the conditional
    # expectation of the Levy area), so its error is clearly smaller at every step size.
    sde = _NonCommutative()
    n = 100
    y0 = torch.tensor([[1.0, 0.5]], dtype=F64).expand(n, 2)
    bm = BrownianPath(0.0, T, (n, 2), seed=3, dtype=F64, levy_area="space-time")
    ref = sdekit.sdeint(sde, y0, [0.0, T], method="log_ode", dt=2.0**-9, bm=bm)[-1]
    dts = [2.0**-k for k in range(2, 6)]
    errors = {}
    for method in ("midpoint", "log_ode"):
        errors[method] = [(sdekit.sdeint(sde, y0, [0.0, T], method=method, dt=dt, bm=bm)[-1] - ref)
                          .norm(dim=-1).mean().item() for dt in dts]
    _judge(_slope(dts, errors["log_ode"]), 0.5, "at least", f"log_ode errors {errors['log_ode']}")
    assert all(a < 0.8 * b for a, b in zip(errors["log_ode"], errors["midpoint"])), errors
    assert sdekit.core.solvers.sde_solver("log_ode").order_for("general") == 0.5
