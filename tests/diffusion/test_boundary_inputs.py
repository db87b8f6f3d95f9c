"""Bad input to the diffusion layer is refused at the boundary, naming the argument, the value and what fits.

Regressions: a NaN ``x_T`` failed at step 1 with a FloatingPointError; an explicit ``timesteps`` tensor
outside the schedule's ``[t_min, t_max]`` was used silently; ``EmpiricalData`` accepted NaN data (every
denoiser call then returned NaN).
"""

from __future__ import annotations

import pytest
import torch

from sdekit.diffusion import VP, EmpiricalData, GaussianMixture, LinearFlow, sample, sample_sharded

F64 = torch.float64
MIXTURE = GaussianMixture([1.0, 2.0], [[-2.0, 0.0], [2.0, 1.0]], [0.3, 0.2])


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_x_T_is_a_value_error_naming_x_T(bad):
    schedule = VP()
    x_T = torch.zeros(4, 2, dtype=F64)
    x_T[2, 0] = bad
    with pytest.raises(ValueError, match=r"x_T must be finite; 1 of 8 entries are NaN or inf \(the first: x_T\[2, 0\]"):
        sample(MIXTURE.as_denoiser(schedule), schedule, x_T, steps=5)


@pytest.mark.parametrize("times, index, value", [
    ([2.0, 0.5, 1e-3], 0, 2.0),
    ([1.0, 0.5, 1e-4], 2, 1e-4),
    ([1.0, 0.5, 0.0], 2, 0.0),
])
def test_timesteps_outside_the_schedule_interval_are_refused(times, index, value):
    schedule = VP()                                  # [t_min, t_max] = [1e-3, 1]
    model = MIXTURE.as_denoiser(schedule)
    match = (rf"timesteps must lie in the schedule's \[t_min, t_max\] = \[0.001, 1.0\] .*got "
             rf"timesteps\[{index}\]={value!r}")
    with pytest.raises(ValueError, match=match):
        sample(model, schedule, torch.zeros(3, 2, dtype=F64), timesteps=torch.tensor(times, dtype=F64))
    with pytest.raises(ValueError, match=match):          # deterministic and stochastic samplers alike
        sample_sharded(model, schedule, (2,), 4, solver="pc", timesteps=torch.tensor(times, dtype=F64))
    with pytest.raises(ValueError, match=match):
        sample_sharded(model, schedule, (2,), 4, solver="ddim", timesteps=torch.tensor(times, dtype=F64))


def test_timesteps_within_rounding_of_the_ends_are_moved_onto_them():
    """A few ulps of the given dtype are rounding, not a request: the grid is clamped to [t_min, t_max]
    (LinearFlow at t = 1 + 1 ulp would have alpha < 0)."""
    schedule = LinearFlow()
    model = MIXTURE.as_denoiser(schedule)
    x_T = torch.randn(3, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    eps = torch.finfo(F64).eps
    exact = sample(model, schedule, x_T, timesteps=torch.tensor([1.0, 0.5, 1e-3], dtype=F64), solver="ddim",
                   return_info=True)
    nudged = sample(model, schedule, x_T, timesteps=torch.tensor([1.0 + 2 * eps, 0.5, 1e-3 * (1 - 2 * eps)],
                                                                  dtype=F64), solver="ddim", return_info=True)
    assert nudged[1].timesteps.tolist() == [1.0, 0.5, 1e-3]
    torch.testing.assert_close(nudged[0], exact[0], rtol=0, atol=0)
    # float32 times are checked with float32 rounding: 1e-3 in float32 is inside, t_max in float32 too
    sample(model, schedule, x_T, timesteps=torch.tensor([1.0, 0.5, 1e-3], dtype=torch.float32), solver="ddim")
    with pytest.raises(ValueError, match="timesteps"):
        sample(model, schedule, x_T, timesteps=torch.tensor([1.0 + 1e-6, 0.5], dtype=torch.float32), solver="ddim")


def test_empirical_data_with_nan_is_refused():
    data = torch.randn(5, 3, dtype=F64)
    data[3, 1] = float("nan")
    with pytest.raises(ValueError, match=r"data must be finite; 1 of 15 entries .*\(the first: data\[3, 1\]=nan\)"):
        EmpiricalData(data)
