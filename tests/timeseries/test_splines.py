"""Control paths: natural / Hermite cubic splines against scipy, missing data, gradients (issue 18, must-show 1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.interpolate import CubicHermiteSpline, CubicSpline

from sdekit.timeseries import CubicPath, control_path, hermite_cubic_spline, natural_cubic_spline

F64 = torch.float64


def _data(B=3, L=9, C=2, seed=0, shared=False):
    g = torch.Generator().manual_seed(seed)
    if shared:
        t = torch.sort(torch.rand(L, generator=g, dtype=F64)).values
    else:
        t = torch.sort(torch.rand(B, L, generator=g, dtype=F64), -1).values
    x = torch.randn(B, L, C, generator=g, dtype=F64)
    return t, x


def _query(t: torch.Tensor) -> list[float]:
    tmin = float(t[..., 0].max())
    tmax = float(t[..., -1].min())
    return list(np.linspace(tmin, tmax, 37))


@pytest.mark.parametrize("shared", [False, True])
def test_natural_spline_matches_scipy_to_1e10(shared):
    t, x = _data(shared=shared)
    path = natural_cubic_spline(x, t)
    tb = t.expand(x.shape[0], -1)
    err = 0.0
    for s in _query(t):
        value, deriv = path.evaluate(s), path.derivative(s)
        for b in range(x.shape[0]):
            for c in range(x.shape[2]):
                ref = CubicSpline(tb[b].numpy(), x[b, :, c].numpy(), bc_type="natural")
                err = max(err, abs(ref(s) - float(value[b, c])), abs(ref(s, 1) - float(deriv[b, c])))
    assert err < 1e-10


def test_natural_spline_second_derivative_and_knots():
    """Exact at the knots, and the stored coefficients are scipy's polynomial pieces."""
    t, x = _data(B=1, L=7, C=1)
    path = natural_cubic_spline(x, t)
    ref = CubicSpline(t[0].numpy(), x[0, :, 0].numpy(), bc_type="natural")
    # scipy's c[m, k] is the coefficient of (t - t_k)^(3 - m)
    ours = path.coeffs[0, :, 0, :].numpy()[:, ::-1].T
    assert np.abs(ours - ref.c).max() < 1e-10


def test_hermite_backward_differences_match_scipy():
    t, x = _data()
    path = hermite_cubic_spline(x, t)
    err = 0.0
    for s in _query(t):
        value, deriv = path.evaluate(s), path.derivative(s)
        for b in range(x.shape[0]):
            for c in range(x.shape[2]):
                tb, xb = t[b].numpy(), x[b, :, c].numpy()
                m = np.diff(xb) / np.diff(tb)
                ref = CubicHermiteSpline(tb, xb, np.r_[m[0], m])
                err = max(err, abs(ref(s) - float(value[b, c])), abs(ref(s, 1) - float(deriv[b, c])))
    assert err < 1e-10


def test_natural_spline_with_missing_values_is_the_spline_of_the_observed_points():
    """Per channel: scipy's natural spline through the observed points, held constant before the first one."""
    t, x = _data(B=3, L=10, C=2, seed=1)
    x = x.clone()
    x[0, 3, 0] = x[0, 4, 0] = float("nan")  # interior gap
    x[1, 0, 1] = x[1, 1, 1] = float("nan")  # leading gap: held at the first observation
    x[2, 8:, 0] = float("nan")  # trailing gap: held at the last observation
    path = natural_cubic_spline(x, t)
    err = 0.0
    for s in _query(t):
        value = path.evaluate(s)
        for b in range(3):
            for c in range(2):
                obs = ~torch.isnan(x[b, :, c])
                tb, xb = t[b][obs].numpy(), x[b, :, c][obs].numpy()
                idx = obs.nonzero()[:, 0]
                first, last = int(idx[0]), int(idx[-1])
                tb = np.r_[t[b, :first].numpy(), tb, t[b, last + 1:].numpy()]
                xb = np.r_[np.full(first, xb[0]), xb, np.full(9 - last, xb[-1])]
                ref = CubicSpline(tb, xb, bc_type="natural")
                err = max(err, abs(ref(s) - float(value[b, c])))
    assert err < 1e-10
    # a single observation gives a constant channel
    y = torch.full((1, 5, 1), float("nan"), dtype=F64)
    y[0, 2, 0] = 1.5
    p = natural_cubic_spline(y)
    assert torch.allclose(p.evaluate(0.3), torch.tensor([[1.5]], dtype=F64), atol=1e-14)
    assert torch.allclose(p.derivative(0.7), torch.zeros(1, 1, dtype=F64), atol=1e-14)


def test_hermite_with_missing_values_fills_linearly():
    t, x = _data(B=1, L=8, C=1, seed=2)
    x = x.clone()
    x[0, [2, 3, 6], 0] = float("nan")
    path = hermite_cubic_spline(x, t)
    obs = ~torch.isnan(x[0, :, 0])
    filled = np.interp(t[0].numpy(), t[0][obs].numpy(), x[0, :, 0][obs].numpy())
    at_knots = torch.stack([path.evaluate(float(s)) for s in t[0, :-1]])[:, 0, 0].numpy()
    assert np.abs(at_knots - filled[:-1]).max() < 1e-12
    m = np.diff(filled) / np.diff(t[0].numpy())
    ref = CubicHermiteSpline(t[0].numpy(), filled, np.r_[m[0], m])
    for s in _query(t):
        assert abs(ref(s) - float(path.evaluate(s)[0, 0])) < 1e-10


def test_control_path_channels_time_values_and_observation_count():
    t, x = _data(B=2, L=6, C=1, seed=3, shared=True)
    x = x.clone()
    x[0, 2, 0] = float("nan")
    path = control_path(x, t)
    assert path.channels == 3
    knots = torch.stack([path.evaluate(float(s)) for s in t[:-1]], 1)  # (B, L - 1, 3)
    assert torch.allclose(knots[..., 0], t[:-1].expand(2, -1), atol=1e-12)  # time channel is t itself
    counts = torch.tensor([[1, 2, 2, 3, 4], [1, 2, 3, 4, 5]], dtype=F64)
    assert torch.allclose(knots[..., 2], counts, atol=1e-12)
    assert control_path(x, t, observed="mask", time_channel=False).channels == 2
    assert control_path(x, t, observed=None, kind="hermite").channels == 2


def test_pack_unpack_roundtrip():
    t, x = _data()
    path = natural_cubic_spline(x, t)
    again = CubicPath.unpack(path.pack())
    for s in _query(t):
        assert torch.equal(again.evaluate(s), path.evaluate(s))


def test_gradcheck_through_the_splines():
    t, x = _data(B=2, L=5, C=1, seed=4)
    x = x.clone()
    x[0, 2, 0] = float("nan")
    keep = ~torch.isnan(x)
    base = x.nan_to_num()

    def fn(v, tt):
        values = torch.where(keep, v, torch.full_like(v, float("nan")))
        outs = []
        for spline in (natural_cubic_spline, hermite_cubic_spline):
            p = spline(values, tt)
            outs += [p.evaluate(0.55), p.derivative(0.55)]
        return torch.cat(outs, -1)

    assert torch.autograd.gradcheck(fn, (base.requires_grad_(), t.clone().requires_grad_()))
