"""Argument checks of the editing functions: every error names the argument, the value and what fits."""

from __future__ import annotations

import math
import numbers

import torch

from ..diffusion.schedules import Schedule

__all__ = ["check_schedule", "check_state", "check_time", "check_mask", "check_count", "grid_from"]


def check_schedule(schedule: object) -> Schedule:
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a sdekit.diffusion.Schedule, got {type(schedule).__name__}")
    return schedule


def check_state(name: str, x: object, *, min_dim: int = 1) -> torch.Tensor:
    """A floating, finite tensor with at least ``min_dim`` dimensions."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dimension(s) (batch, *event); got shape "
                         f"{tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} must be finite; it holds {int((~torch.isfinite(x)).sum())} NaN/inf entries")
    return x


def check_time(name: str, t: object, schedule: Schedule, *, upper: float | None = None) -> float:
    """A real time in ``(t_min, upper]`` (``upper`` defaults to the schedule's ``t_max``)."""
    if isinstance(t, torch.Tensor) and t.dim() == 0 and t.is_floating_point():
        t = float(t)
    if isinstance(t, bool) or not isinstance(t, numbers.Real):
        raise TypeError(f"{name} must be a real number (a time of the schedule), got {type(t).__name__}")
    t = float(t)
    hi = schedule.t_max if upper is None else upper
    if not (math.isfinite(t) and schedule.t_min < t <= hi):
        raise ValueError(f"{name} must lie in ({schedule.t_min}, {hi}] (the schedule's interval above t_min"
                         f"{'' if upper is None else ', below the start'}) of {schedule!r}; got {name}={t!r}")
    return t


def check_count(name: str, value: object, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_mask(mask: object, x: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """A binary mask of ``x``'s shape or of its event shape ``x.shape[1:]`` (shared by the batch), returned
    as a float tensor of ``x``'s dtype and device, broadcastable against ``x``. Values must be exactly 0 or 1
    (``bool`` tensors are accepted); nothing is rounded."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of 0s and 1s, got {type(mask).__name__}")
    if tuple(mask.shape) not in (tuple(x.shape), tuple(x.shape[1:])):
        raise ValueError(f"{name} must have the shape of the data {tuple(x.shape)} or its event shape "
                         f"{tuple(x.shape[1:])}; got {tuple(mask.shape)}")
    if mask.dtype != torch.bool:
        if mask.is_complex():
            raise TypeError(f"{name} must be real (0s and 1s), got dtype {mask.dtype}")
        binary = (mask == 0) | (mask == 1)
        if not bool(binary.all()):
            bad = mask[~binary].flatten()[:3].tolist()
            raise ValueError(f"{name} must be binary (every entry 0 or 1; 1 marks the known / kept region); got "
                             f"{int((~binary).sum())} other entries, e.g. {bad}")
    return mask.to(dtype=x.dtype, device=x.device)


def grid_from(schedule: Schedule, timesteps: object, steps: int, t_start: float, t_end: float | None = None
              ) -> torch.Tensor:
    """``steps + 1`` decreasing float64 times from ``t_start`` to ``t_end`` (default ``t_min``) on the grid
    named by ``timesteps`` (``None``: the schedule's default grid)."""
    from ..diffusion.timesteps import TimeGrid, default_timesteps, get_time_grid

    if isinstance(timesteps, (torch.Tensor, list, tuple)):
        raise TypeError("timesteps must be a grid name ('uniform', 'logsnr', 'karras') or a TimeGrid here: the "
                        "grid starts at the edit time, so an explicit tensor of times does not apply")
    if timesteps is not None and not isinstance(timesteps, (str, TimeGrid)):
        raise TypeError(f"timesteps must be None, a grid name or a TimeGrid, got {type(timesteps).__name__}")
    grid = default_timesteps(schedule) if timesteps is None else get_time_grid(timesteps)
    return grid.times(schedule, check_count("steps", steps), t_start=t_start, t_end=t_end)
