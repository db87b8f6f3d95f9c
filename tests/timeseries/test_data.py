"""Seeded missingness, stacking irregular series, normalisation, and refusal of bad input (issue 18,
must-show 5)."""

from __future__ import annotations

import pytest
import torch

from sdekit.timeseries import (
    check_series,
    control_path,
    drop_observations,
    hermite_cubic_spline,
    natural_cubic_spline,
    normalise,
    stack_series,
)


def test_drop_observations_drops_exactly_round_rate_L_per_series_in_all_channels():
    x = torch.randn(50, 24, 3)
    for rate in (0.0, 0.3, 0.5, 0.7):
        d = drop_observations(x, rate, seed=4)
        nan = torch.isnan(d)
        assert (nan.sum(1) == round(rate * 24)).all()  # per series and channel
        assert (nan == nan[..., :1]).all()  # the same time indices in every channel
        assert torch.equal(d[~nan], x[~nan])  # kept values untouched
    a, b, c = (drop_observations(x, 0.5, seed=s) for s in (1, 1, 2))
    assert torch.equal(torch.isnan(a), torch.isnan(b))
    assert not torch.equal(torch.isnan(a), torch.isnan(c))
    # per series: different series get different patterns; over many series every index is dropped at rate 0.5
    frac = torch.isnan(drop_observations(torch.zeros(4000, 10, 1), 0.5, seed=0))[..., 0].float().mean(0)
    assert (frac - 0.5).abs().max() < 4 * (0.25 / 4000) ** 0.5


def test_stack_series_places_irregular_series_on_the_union_of_times():
    a = torch.tensor([[1.0], [2.0], [3.0]])
    b = torch.tensor([[5.0], [6.0]])
    values, grid = stack_series([a, b], times=[torch.tensor([0.0, 0.5, 1.0]), torch.tensor([0.25, 0.5])])
    assert torch.equal(grid, torch.tensor([0.0, 0.25, 0.5, 1.0]))
    expect = torch.tensor([[1.0, float("nan"), 2.0, 3.0], [float("nan"), 5.0, 6.0, float("nan")]])[..., None]
    assert torch.equal(torch.isnan(values), torch.isnan(expect))
    assert torch.equal(values.nan_to_num(), expect.nan_to_num())
    v, t = stack_series([a, a])
    assert v.shape == (2, 3, 1) and torch.equal(t, torch.linspace(0, 1, 3))


def test_normalise_uses_the_observed_entries_of_the_reference():
    ref = torch.tensor([[[1.0], [float("nan")], [3.0]]])
    out = normalise(torch.tensor([[[2.0], [4.0], [float("nan")]]]), ref)
    assert torch.allclose(out[0, :2, 0], torch.tensor([0.0, 2.0]))
    assert torch.isnan(out[0, 2, 0])


def test_bad_input_is_refused_with_the_argument_named():
    x = torch.randn(2, 5, 1)
    allnan = x.clone()
    allnan[1] = float("nan")
    for fn in (natural_cubic_spline, hermite_cubic_spline, control_path):
        with pytest.raises(ValueError, match="every value missing"):
            fn(allnan)
    with pytest.raises(ValueError, match=r"strictly increasing; got times\[3\] = 0.2 <= times\[2\] = 0.5"):
        natural_cubic_spline(x, torch.tensor([0.0, 0.1, 0.5, 0.2, 0.9]))
    with pytest.raises(ValueError, match="strictly increasing"):
        natural_cubic_spline(x, torch.tensor([[0.0, 0.1, 0.2, 0.3, 0.4], [0.0, 0.1, 0.1, 0.3, 0.4]]))
    with pytest.raises(ValueError, match="times must have shape"):
        natural_cubic_spline(x, torch.linspace(0, 1, 4))
    with pytest.raises(ValueError, match="times must be finite"):
        natural_cubic_spline(x, torch.tensor([0.0, float("nan"), 0.5, 0.7, 0.9]))
    with pytest.raises(ValueError, match="inf"):
        natural_cubic_spline(torch.full((1, 3, 1), float("inf")))
    with pytest.raises(ValueError, match="NaN .* not allowed"):
        check_series(x.masked_fill(torch.eye(5)[None, :, :1].bool(), float("nan")), allow_nan=False)
    with pytest.raises(TypeError, match="values must be a floating tensor"):
        natural_cubic_spline(torch.ones(2, 5, 1, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"\(\*B, L, C\)"):
        natural_cubic_spline(torch.randn(5, 1))
    with pytest.raises(ValueError, match="kind"):
        control_path(x, kind="linear")
    with pytest.raises(ValueError, match="inconsistent lengths .* times="):
        stack_series([torch.randn(4, 1), torch.randn(5, 1)])
    with pytest.raises(ValueError, match=r"times\[1\] must be strictly increasing"):
        stack_series([torch.randn(2, 1), torch.randn(2, 1)], times=[torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.5])])
    with pytest.raises(ValueError, match="rate must lie in"):
        drop_observations(x, 1.0)
