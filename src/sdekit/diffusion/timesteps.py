r"""Time grids for samplers: decreasing sequences ``t_0 = t_start > t_1 > ... > t_N = t_end``.

A grid is an object with ``times(schedule, steps, *, t_start=None, t_end=None)`` returning a float64
tensor of ``steps + 1`` strictly decreasing times (default ends: the schedule's ``t_max`` and
``t_min``). Any grid works with any sampler:

* :class:`UniformTime`: uniform in ``t`` (DDPM / DDIM, Song et al. 2021);
* :class:`UniformLogSNR`: uniform in ``lambda = log(alpha / sigma)`` (Lu et al. 2022, DPM-Solver,
  section 3.3), the natural grid of exponential integrators;
* :class:`Karras`: uniform in ``sigma~^(1/rho)``, ``sigma~ = sigma / alpha`` (Karras et al. 2022, eq. 5);
* :class:`VPTime`: uniform (``power=1``) or quadratic (``power=2``) in the time of the linear VP schedule,
  carried to any schedule through the log-SNR (DPM-Solver's "time_uniform" / "time_quadratic"; diffusers'
  default "linspace" spacing);
* :class:`TimeTensor`: a user-given decreasing tensor.

Names (``"uniform"``, ``"logsnr"``, ``"karras"``, ``"vp-uniform"``, ``"vp-quadratic"``) resolve in
:data:`TIME_GRIDS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import TypeAlias

import torch

from ._utils import check_real, resolve_name
from .schedules import Schedule, _linear_beta_integral, _t_of_linear_beta_integral

__all__ = ["TimeGrid", "UniformTime", "UniformLogSNR", "Karras", "VPTime", "TimeTensor", "TIME_GRIDS", "get_time_grid",
           "resolve_timesteps"]


def _check_steps(steps) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    return steps


def _check_decreasing(times: torch.Tensor, name: str) -> torch.Tensor:
    if times.dim() != 1 or times.numel() < 2:
        raise ValueError(f"{name} must be a 1-D tensor of at least two times, got shape {tuple(times.shape)}")
    if not bool(torch.isfinite(times).all()):
        raise ValueError(f"{name} must be finite, got {times.tolist()}")
    diffs = times[1:] - times[:-1]
    if not bool((diffs < 0).all()):
        i = int(torch.nonzero(diffs >= 0)[0]) + 1
        raise ValueError(
            f"{name} must be strictly decreasing (samplers run from noise to data); got "
            f"{name}[{i}]={times[i].item()} >= {name}[{i - 1}]={times[i - 1].item()}"
        )
    return times


class TimeGrid:
    """Base class of time grids: subclasses implement :meth:`times`."""

    def _ends(self, schedule: Schedule, t_start, t_end) -> tuple[float, float]:
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must be a sdekit.diffusion.Schedule, got {type(schedule).__name__}")
        t0 = schedule.t_max if t_start is None else check_real("t_start", t_start)
        t1 = schedule.t_min if t_end is None else check_real("t_end", t_end)
        if not t0 > t1:
            raise ValueError(f"the grid runs from t_start down to t_end; got t_start={t0} <= t_end={t1}")
        return t0, t1

    def times(self, schedule: Schedule, steps: int, *, t_start: float | None = None,
              t_end: float | None = None) -> torch.Tensor:
        """``steps + 1`` strictly decreasing float64 times from ``t_start`` (default ``t_max``) to
        ``t_end`` (default ``t_min``)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class UniformTime(TimeGrid):
    """Uniform in ``t``: ``t_i = t_start + (i / N) (t_end - t_start)``."""

    def times(self, schedule: Schedule, steps: int, *, t_start: float | None = None,
              t_end: float | None = None) -> torch.Tensor:
        t0, t1 = self._ends(schedule, t_start, t_end)
        return torch.linspace(t0, t1, _check_steps(steps) + 1, dtype=torch.float64)


def _finite_log_snr(schedule: Schedule, t: float, which: str) -> float:
    lam = float(schedule.log_snr(t))
    if not math.isfinite(lam):
        raise ValueError(
            f"this grid needs a finite log-SNR at the {which} t={t}, but {schedule!r} has log_snr={lam} "
            f"there; "
            "pick t_start / t_end (or the schedule's t_min / t_max) strictly inside, or use 'uniform'"
        )
    return lam


def _pin_ends(ts: torch.Tensor, t0: float, t1: float) -> torch.Tensor:
    ts[0], ts[-1] = t0, t1
    return _check_decreasing(ts, "timesteps")


class UniformLogSNR(TimeGrid):
    """Uniform in the log-SNR ``lambda`` (Lu et al. 2022, DPM-Solver, "time_uniform"/"logSNR" grids):
    ``lambda_i`` equally spaced from ``lambda(t_start)`` to ``lambda(t_end)``, ``t_i = t_of_log_snr``."""

    def times(self, schedule: Schedule, steps: int, *, t_start: float | None = None,
              t_end: float | None = None) -> torch.Tensor:
        t0, t1 = self._ends(schedule, t_start, t_end)
        lam = torch.linspace(_finite_log_snr(schedule, t0, "start"), _finite_log_snr(schedule, t1, "end"),
                             _check_steps(steps) + 1, dtype=torch.float64)
        return _pin_ends(schedule.t_of_log_snr(lam).to(torch.float64), t0, t1)


class Karras(TimeGrid):
    r"""The grid of Karras et al. 2022 (eq. 5) in the noise level ``sigma~ = sigma / alpha``:

    .. math:: \sigma~_i = \Big(\sigma~_{max}^{1/\rho} + \tfrac{i}{N}\big(\sigma~_{min}^{1/\rho}
              - \sigma~_{max}^{1/\rho}\big)\Big)^\rho,\qquad t_i = t(\lambda = -\log\sigma~_i).

    Arguments:
        rho: the exponent (default 7; ``rho = 1`` is uniform in ``sigma~``).
    """

    def __init__(self, rho: float = 7.0) -> None:
        self.rho = check_real("rho", rho, positive=True)

    def times(self, schedule: Schedule, steps: int, *, t_start: float | None = None,
              t_end: float | None = None) -> torch.Tensor:
        t0, t1 = self._ends(schedule, t_start, t_end)
        s_max = math.exp(-_finite_log_snr(schedule, t0, "start"))
        s_min = math.exp(-_finite_log_snr(schedule, t1, "end"))
        ramp = torch.linspace(0.0, 1.0, _check_steps(steps) + 1, dtype=torch.float64)
        inv = 1.0 / self.rho
        sig = (s_max**inv + ramp * (s_min**inv - s_max**inv)) ** self.rho
        return _pin_ends(schedule.t_of_log_snr(-torch.log(sig)).to(torch.float64), t0, t1)

    def __repr__(self) -> str:
        return f"Karras(rho={self.rho})"


class VPTime(TimeGrid):
    r"""Uniform in ``tau^(1/power)``, ``tau`` the time of the linear VP schedule ``beta(tau) = beta_min +
    tau (beta_max - beta_min)``, carried to any schedule through the log-SNR:

    .. math:: \tau_i = \Big(\tau_0^{1/p} + \tfrac{i}{N}\big(\tau_N^{1/p} - \tau_0^{1/p}\big)\Big)^p,\qquad
              t_i = t\big(\lambda = \lambda_{VP}(\tau_i)\big),

    with ``tau_0, tau_N`` the VP times of the grid's end log-SNRs and
    ``lambda_VP(tau) = -log(exp(int_0^tau beta) - 1) / 2``. ``power=1`` is DPM-Solver's "time_uniform" grid and
    ``power=2`` its "time_quadratic" grid (Lu et al. 2022, official code; DDIM's "quad" skip, Song et al. 2021);
    on ``VP(0.1, 20)`` itself ``power=1`` is :class:`UniformTime`, and on diffusers' default linear betas it is
    the "linspace" spacing. Against :class:`UniformLogSNR` and :class:`Karras` these grids spend more steps at
    high noise, where trajectories choose their mode: at 50 model calls on the sampler benchmark's mixtures
    ``power=2`` gives the lowest endpoint RMSE (``benchmarks/results/samplers.md``).

    Arguments:
        power: ``p`` above (default 1; 2 for the quadratic grid).
        beta_min, beta_max: the linear VP schedule whose time is spaced (default 0.1 and 20, as
            :class:`~sdekit.diffusion.VP`).
    """

    def __init__(self, power: float = 1.0, beta_min: float = 0.1, beta_max: float = 20.0) -> None:
        self.power = check_real("power", power, positive=True)
        self.beta_min = check_real("beta_min", beta_min, positive=True)
        self.beta_max = check_real("beta_max", beta_max, positive=True)
        if not self.beta_max > self.beta_min:
            raise ValueError(f"beta_max must exceed beta_min, got beta_min={beta_min}, beta_max={beta_max}")

    def times(self, schedule: Schedule, steps: int, *, t_start: float | None = None,
              t_end: float | None = None) -> torch.Tensor:
        t0, t1 = self._ends(schedule, t_start, t_end)
        lam = torch.tensor([_finite_log_snr(schedule, t0, "start"), _finite_log_snr(schedule, t1, "end")],
                           dtype=torch.float64)
        # lambda = -log(e^B - 1) / 2  <=>  B = softplus(-2 lambda); tau from B by the inverse beta integral
        tau = _t_of_linear_beta_integral(torch.nn.functional.softplus(-2.0 * lam), self.beta_min, self.beta_max)
        inv = 1.0 / self.power
        ramp = torch.linspace(0.0, 1.0, _check_steps(steps) + 1, dtype=torch.float64)
        taus = (tau[0] ** inv + ramp * (tau[1] ** inv - tau[0] ** inv)) ** self.power
        lams = -0.5 * torch.log(torch.expm1(_linear_beta_integral(taus, self.beta_min, self.beta_max)))
        return _pin_ends(schedule.t_of_log_snr(lams).to(torch.float64), t0, t1)

    def __repr__(self) -> str:
        return f"VPTime(power={self.power}, beta_min={self.beta_min}, beta_max={self.beta_max})"


class TimeTensor(TimeGrid):
    """A user-given strictly decreasing grid (``steps`` must be ``None`` or ``len(times) - 1``) inside the
    schedule's ``[t_min, t_max]``: a time outside it by more than the rounding of the given dtype (4 ulps of
    the bound) is refused with a ValueError; one within that slack is moved onto the bound."""

    _SLACK_ULPS = 4

    def __init__(self, times: torch.Tensor | Sequence[float]) -> None:
        if not isinstance(times, torch.Tensor):
            try:
                times = torch.as_tensor(times, dtype=torch.float64)
            except (TypeError, ValueError):
                raise TypeError(f"times must be a 1-D tensor or sequence of floats, got "
                                f"{type(times).__name__}") from None
        self._eps = torch.finfo(times.dtype).eps if times.is_floating_point() else torch.finfo(torch.float64).eps
        self._times = _check_decreasing(times.detach().to("cpu", torch.float64), "timesteps")

    def times(self, schedule: Schedule, steps: int | None = None, *, t_start: float | None = None,
              t_end: float | None = None) -> torch.Tensor:
        if steps is not None and steps != self._times.numel() - 1:
            raise ValueError(f"steps={steps} does not match the {self._times.numel() - 1} steps of the given "
                             "timesteps; pass steps=None")
        if t_start is not None or t_end is not None:
            raise ValueError("t_start / t_end do not apply to an explicit grid")
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must be a sdekit.diffusion.Schedule, got {type(schedule).__name__}")
        lo, hi = schedule.t_min, schedule.t_max
        slack_lo = self._SLACK_ULPS * self._eps * abs(lo)
        slack_hi = self._SLACK_ULPS * self._eps * abs(hi)
        t = self._times
        for i, bad in ((0, float(t[0]) > hi + slack_hi), (t.numel() - 1, float(t[-1]) < lo - slack_lo)):
            if bad:
                raise ValueError(
                    f"timesteps must lie in the schedule's [t_min, t_max] = [{lo}, {hi}] of {schedule!r}; got "
                    f"timesteps[{i}]={float(t[i])!r}. Pass times inside it (or a schedule built with a wider "
                    "t_min / t_max)"
                )
        return _check_decreasing(t.clamp(lo, hi), "timesteps")

    def __repr__(self) -> str:
        return f"TimeTensor({self._times.tolist()})"


#: what ``sample``'s ``timesteps`` accepts: a grid name, a :class:`TimeGrid`, a decreasing tensor or sequence of
#: times, or ``None`` (the schedule's default grid)
TimestepsLike: TypeAlias = "str | TimeGrid | torch.Tensor | Sequence[float] | None"

TIME_GRIDS: dict[str, Callable[..., TimeGrid]] = {
    "uniform": UniformTime, "logsnr": UniformLogSNR, "karras": Karras,
    "vp-uniform": VPTime, "vp-quadratic": partial(VPTime, power=2.0),
}


def get_time_grid(timesteps: str | TimeGrid | torch.Tensor | Sequence[float]) -> TimeGrid:
    """Resolve a grid name (see :data:`TIME_GRIDS`), a tensor/sequence (:class:`TimeTensor`) or pass a
    :class:`TimeGrid` through."""
    resolved = resolve_name(timesteps, TIME_GRIDS, TimeGrid, "timesteps",
                            ", pass a TimeGrid or a decreasing tensor of times")
    if resolved is not None:
        return resolved
    if isinstance(timesteps, (torch.Tensor, list, tuple)):
        return TimeTensor(timesteps)
    raise TypeError(f"timesteps must be a name, a TimeGrid or a decreasing tensor, got "
                    f"{type(timesteps).__name__}")


def default_timesteps(schedule: Schedule) -> TimeGrid:
    """The time grid samplers use on ``schedule`` when none is given (:meth:`Schedule.default_grid`)."""
    name, kwargs = schedule.default_grid()
    return TIME_GRIDS[name](**kwargs)


def resolve_timesteps(timesteps: TimestepsLike, schedule: Schedule, steps: int | None) -> torch.Tensor:
    """The float64 grid for ``sample``: ``timesteps`` (``None``: the schedule's default grid) with
    ``steps`` steps."""
    grid = default_timesteps(schedule) if timesteps is None else get_time_grid(timesteps)
    if isinstance(grid, TimeTensor):
        return grid.times(schedule, steps)
    if steps is None:
        raise ValueError(f"steps is required with timesteps={timesteps!r}; pass steps=N or a tensor of times")
    return grid.times(schedule, steps)
