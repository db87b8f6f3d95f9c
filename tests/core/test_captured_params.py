"""Adjoint strategies differentiate the tensors that the SDE's / ODE's functions capture.

Regression: ``sdekit.SDE(lambda t, y: -w * y, ...)`` is an ``nn.Module`` without parameters, so
``Checkpointed()`` and ``ContinuousAdjoint()`` found nothing to differentiate, returned a solution with no
gradient path and warned about nothing (``backward()`` then failed with torch's "element 0 of tensors
does not require grad"); ``Backprop`` gave the right gradient.
"""

from __future__ import annotations

import functools
import warnings

import pytest
import torch

import sdekit
from sdekit import BrownianPath
from sdekit.core.adjoint import Backprop, Checkpointed, ContinuousAdjoint

F64 = torch.float64
W = torch.tensor(0.4, dtype=F64, requires_grad=True)     # a global the drift names


def _grads(adjoint, sde, inputs, *, bm_seed=3, dt=1e-3):
    y0 = torch.linspace(0.5, 1.5, 8, dtype=F64).reshape(4, 2)
    bm = BrownianPath(0.0, 1.0, (4, 2), seed=bm_seed, dtype=F64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # no "params" warning: the tensors are found
        ys = sdekit.sdeint(sde, y0, [0.0, 0.5, 1.0], dt=dt, bm=bm, method="euler", adjoint=adjoint)
    loss = (ys[1] ** 2).sum() + ys[-1].sum()
    return torch.autograd.grad(loss, inputs)


def _closure_sde():
    """Closures over local tensors (drift) and a default argument (diffusion); additive noise."""
    w = torch.tensor(0.7, dtype=F64, requires_grad=True)
    s = torch.tensor(0.3, dtype=F64, requires_grad=True)

    def g(t, y, scale=s):
        return scale * torch.ones_like(y)

    return sdekit.SDE(lambda t, y: -w * y, g), (w, s)


def _module_sde():
    """A closure over an nn.Module, a functools.partial and a global tensor."""
    net = torch.nn.Linear(2, 2).double()
    torch.nn.init.normal_(net.weight, std=0.2, generator=torch.Generator().manual_seed(0))
    s = torch.tensor(0.2, dtype=F64, requires_grad=True)

    def g(t, y, scale):
        return scale * torch.ones_like(y)

    sde = sdekit.SDE(lambda t, y: -W * y + torch.tanh(net(y)), functools.partial(g, scale=s))
    return sde, (W, s, net.weight, net.bias)


@pytest.mark.parametrize("make", [_closure_sde, _module_sde], ids=["closure", "module-partial-global"])
def test_checkpointed_and_continuous_equal_backprop_for_captured_tensors(make):
    sde, inputs = make()
    reference = _grads(Backprop(), sde, inputs)
    assert all(bool(r.abs().sum() > 0) for r in reference)
    exact = _grads(Checkpointed(), sde, inputs)                    # same steps, same increments
    for r, g in zip(reference, exact):
        torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-14)
    # The continuous adjoint approximates the same gradient to O(dt) (additive noise; Euler forward,
    # midpoint backward): at dt = 1e-3 within 1% here.
    continuous = _grads(ContinuousAdjoint(), sde, inputs)
    for r, g in zip(reference, continuous):
        torch.testing.assert_close(g, r, rtol=1e-2, atol=1e-4)


def test_continuous_adjoint_of_an_ode_closure_equals_backprop():
    """odeint with a plain lambda over a tensor: collected (no warning), gradient as Backprop's to the
    tolerances of the two adaptive solves."""
    w = torch.tensor([0.5, -0.3], dtype=F64, requires_grad=True)
    y0 = torch.tensor([1.0, 2.0], dtype=F64)

    def grad(adjoint):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ys = sdekit.odeint(lambda t, y: -w * y + torch.sin(t), y0, [0.0, 1.0], rtol=1e-10, atol=1e-12,
                               adjoint=adjoint)
        return torch.autograd.grad(ys[-1].sum(), w)[0]

    torch.testing.assert_close(grad(ContinuousAdjoint()), grad(Backprop()), rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(grad(Checkpointed()), grad(Backprop()), rtol=1e-12, atol=1e-14)


def test_explicit_params_replace_the_search_and_nothing_found_still_warns():
    sde, (w, s) = _closure_sde()
    y0 = torch.ones(2, 2, dtype=F64, requires_grad=True)
    ys = sdekit.sdeint(sde, y0, [0.0, 0.1], dt=1e-2, adjoint=Checkpointed(params=(w,)))
    gw, gs = torch.autograd.grad(ys[-1].sum(), (w, s), allow_unused=True)
    assert gw is not None and gs is None                        # only what was listed
    with pytest.warns(UserWarning, match="captures no tensor"):
        sdekit.odeint(lambda t, y: -y, y0, [0.0, 0.1], adjoint=ContinuousAdjoint())
