"""Bad input is refused at the boundary of sdeint / odeint, naming the argument, the value and what fits.

Regressions: ``ts="0,1"`` was iterated as characters ("could not convert string to float: ','"), and a
NaN in ``y0`` surfaced at step 1 as a FloatingPointError advising a smaller dt.
"""

from __future__ import annotations

import pytest
import torch

import sdekit

F64 = torch.float64
SDE = sdekit.SDE(lambda t, y: -y, lambda t, y: 0.1 * torch.ones_like(y))


def _solve(kind, y0, ts):
    if kind == "sdeint":
        return sdekit.sdeint(SDE, y0, ts, dt=0.1)
    return sdekit.odeint(lambda t, y: -y, y0, ts)


@pytest.mark.parametrize("kind", ["sdeint", "odeint"])
@pytest.mark.parametrize("ts, match", [
    ("0,1", r"ts must be a 1-D tensor or a sequence of numbers, got str '0,1'"),
    (b"01", r"got bytes"),
    ([0.0, "1"], r"ts\[1\] is '1' \(str\)"),
    ([0.0, None], r"ts\[1\] is None"),
    ((0.0, True), r"ts\[1\] is True \(bool\)"),
    (0.5, r"got float"),
])
def test_ts_that_is_not_numbers_is_a_type_error(kind, ts, match):
    with pytest.raises(TypeError, match=match):
        _solve(kind, torch.ones(3, 1, dtype=F64), ts)


@pytest.mark.parametrize("kind", ["sdeint", "odeint"])
def test_sequences_of_numbers_and_0d_tensors_are_accepted(kind):
    for ts in ([0, 1], (0.0, 0.5, 1.0), [torch.tensor(0.0), torch.tensor(1.0)], torch.tensor([1.0, 0.0])):
        ys = _solve(kind, torch.ones(3, 1, dtype=F64), ts)
        assert ys.shape[0] == len(ts) and bool(torch.isfinite(ys).all())


@pytest.mark.parametrize("kind", ["sdeint", "odeint"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_y0_is_a_value_error_naming_y0(kind, bad):
    y0 = torch.ones(3, 2, dtype=F64)
    y0[1, 1] = bad
    with pytest.raises(ValueError, match=r"y0 must be finite; 1 of 6 entries are NaN or inf \(the first: y0\[1, 1\]="):
        _solve(kind, y0, [0.0, 1.0])
    # a tuple state names its component
    with pytest.raises(ValueError, match=r"y0\[1\] must be finite"):
        sdekit.odeint(lambda t, y: tuple(-v for v in y), (torch.ones(2, dtype=F64), y0), [0.0, 1.0])
