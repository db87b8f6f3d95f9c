"""sdeint(..., names=...): drift, diffusion and prior drift under other method names (torchsde's contract)."""

import pytest
import torch

import sdekit
from sdekit import BrownianPath

F64 = torch.float64


class Plain(torch.nn.Module):
    noise_type, sde_type = "diagonal", "ito"

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(0.3, dtype=F64))

    def f(self, t, y):
        return -self.a * y

    def g(self, t, y):
        return 0.2 * torch.sigmoid(y)

    def h(self, t, y):
        return torch.zeros_like(y)


class Renamed(torch.nn.Module):
    noise_type, sde_type = "diagonal", "ito"

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(0.3, dtype=F64))

    def forward(self, t, y):
        return -self.a * y

    def sigma(self, t, y):
        return 0.2 * torch.sigmoid(y)

    def prior(self, t, y):
        return torch.zeros_like(y)


class Combined(torch.nn.Module):
    noise_type, sde_type = "diagonal", "ito"

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(0.3, dtype=F64))

    def both(self, t, y):
        return -self.a * y, 0.2 * torch.sigmoid(y)


def _solve(sde, **kw):
    y0 = torch.full((3, 2), 0.5, dtype=F64)
    bm = BrownianPath(0.0, 1.0, (3, 2), seed=0, dtype=F64)
    return sdekit.sdeint(sde, y0, [0.0, 0.5, 1.0], dt=0.05, bm=bm, **kw)


def test_renamed_methods_give_the_same_solution():
    ref = _solve(Plain())
    assert torch.equal(_solve(Renamed(), names={"drift": "forward", "diffusion": "sigma"}), ref)
    assert torch.equal(_solve(Combined(), names={"drift_and_diffusion": "both"}), ref)


def test_prior_drift_as_drift_and_logqp():
    plain = Plain()
    ys_h = _solve(plain, names={"drift": "h"})
    ys, log_ratio = _solve(Renamed(), names={"drift": "forward", "diffusion": "sigma", "prior_drift": "prior"},
                           logqp=True)
    ys_ref, log_ratio_ref = _solve(plain, logqp=True)
    assert torch.equal(ys, ys_ref) and torch.equal(log_ratio, log_ratio_ref)
    assert not torch.equal(ys_h, ys_ref)  # the zero drift was used


def test_parameters_reach_adjoint_strategies_through_the_view():
    sde = Renamed()
    ys = _solve(sde, names={"drift": "forward", "diffusion": "sigma"}, adjoint=sdekit.ContinuousAdjoint())
    ys[-1].sum().backward()
    assert sde.a.grad is not None and sde.a.grad.abs() > 0


@pytest.mark.parametrize("names, error, match", [
    ({"drfit": "forward"}, ValueError, "unknown key 'drfit'"),
    ({"drift": "missing"}, ValueError, "no callable method 'missing'"),
    ({"drift": 3}, TypeError, "must be a method name"),
    (["drift"], TypeError, "must be a dict"),
])
def test_bad_names_are_named(names, error, match):
    with pytest.raises(error, match=match):
        _solve(Renamed(), names=names)
