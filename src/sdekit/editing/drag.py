"""SDE-Drag (Nie et al. 2024): move image content from source points to target points by copying a latent
patch at an intermediate time and regenerating with the recorded-noise (Cycle-SDE) reverse sampler."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, overload

import torch

from ..core.integrate import fixed_loop
from ..diffusion.prediction import Prediction, as_denoiser
from ..diffusion.samplers import DDIM, sample
from ..diffusion.samplers.base import BrownianSource, Sampler, SamplerContext
from ..diffusion.samplers.registry import get_sampler
from ..diffusion.schedules import Schedule
from ..diffusion.timesteps import TimeGrid
from ._checks import check_count, check_mask, check_schedule, check_state, check_time, grid_from
from ._forward import Replacing, _normal
from .cycle import invert

__all__ = ["DragInfo", "drag"]

_DDPM = DDIM(eta=1.0)  # the default solver of drag (the paper's DDIM with eta = 1)


@dataclass
class DragInfo:
    """What :func:`drag` did.

    Attributes:
        increments: rounds run, the largest per-image increment count.
        per_image: ``(batch,)`` long, each image's increment count ``max(1, round(max_p |d_p| / 2))``.
        nfe: model calls made in all (inversions and reverse runs).
        times: float64 ``(steps + 1,)``, the decreasing grid from ``t0`` to ``t_min`` of every round.
    """

    increments: int
    per_image: torch.Tensor
    nfe: int
    times: torch.Tensor


def _points(name: str, points: object, x: torch.Tensor) -> torch.Tensor:
    """``(2,)``, ``(batch, 2)`` or ``(batch, points, 2)`` integer (row, col) inside the image -> ``(batch, P, 2)``."""
    if not isinstance(points, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of integer (row, col) pixel positions, got "
                        f"{type(points).__name__}")
    if points.is_floating_point() or points.is_complex() or points.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer pixel positions (row, col), got dtype {points.dtype}")
    batch, (height, width) = x.shape[0], x.shape[-2:]
    shape = tuple(points.shape)
    if shape == (2,):
        points = points.expand(batch, 1, 2)
    elif len(shape) == 2 and shape == (batch, 2):
        points = points[:, None]
    elif not (len(shape) == 3 and shape[0] == batch and shape[2] == 2 and shape[1] >= 1):
        raise ValueError(f"{name} must have shape (2,), (batch, 2) or (batch, points, 2) with batch={batch} "
                         f"(row, col per point); got {shape}")
    points = points.to(device=x.device, dtype=torch.long)
    rows, cols = points[..., 0], points[..., 1]
    outside = (rows < 0) | (rows >= height) | (cols < 0) | (cols >= width)
    if bool(outside.any()):
        b, p = (int(i) for i in outside.nonzero()[0])
        raise ValueError(f"{name} must lie inside the image: rows in [0, {height - 1}], cols in [0, {width - 1}]; "
                         f"got {name}[{b}, {p}] = {points[b, p].tolist()}")
    return points


def _check_scale(name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low <= float(value) <= high):
        raise ValueError(f"{name} must be a real number in [{low}, {high}], got {value!r}")
    return float(value)


def _copy_paste(z: torch.Tensor, a: torch.Tensor, b: torch.Tensor, radius: int, source_scale: float,
                target_scale: float, generator: torch.Generator | None) -> torch.Tensor:
    """The latent edit of one increment, batched: for every point, the square of half-width ``radius`` around
    ``a`` (clipped, as in the paper, so that both squares fit the image) is copied, scaled by ``target_scale``,
    to the square around ``b``; the source square becomes ``source_scale * z + sqrt(1 - source_scale^2) * N``
    first (the target overwrites where they overlap). Images with ``a == b`` are left alone.
    ``z: (batch, *lead, H, W)``, ``a, b: (batch, P, 2)``."""
    batch, (height, width) = z.shape[0], z.shape[-2:]
    view = (batch,) + (1,) * (z.dim() - 3) + (height, width)
    rows = torch.arange(height, device=z.device).view(1, height, 1)
    cols = torch.arange(width, device=z.device).view(1, 1, width)
    size = torch.tensor([height - 1, width - 1], device=z.device)
    noise_scale = math.sqrt(max(1.0 - source_scale**2, 0.0))
    out = z
    for p in range(a.shape[1]):  # a few handle points; the batch is vectorised
        s, t = a[:, p], b[:, p]
        moving = (s != t).any(-1)[:, None, None]
        lo = torch.minimum(torch.minimum(s, t), torch.full_like(s, radius))
        hi = torch.minimum(torch.minimum(size - s, size - t), torch.full_like(s, radius))

        first, last = (s - lo, t - lo), (s + hi, t + hi)
        in_source, in_target = (((rows >= first[j][:, 0, None, None]) & (rows <= last[j][:, 0, None, None])
                                 & (cols >= first[j][:, 1, None, None]) & (cols <= last[j][:, 1, None, None])
                                 & moving).view(view) for j in (0, 1))
        d = t - s
        src_rows = (rows - d[:, 0, None, None]).clamp(0, height - 1)
        src_cols = (cols - d[:, 1, None, None]).clamp(0, width - 1)
        index = (src_rows * width + src_cols).reshape(batch, 1, height * width)
        flat = out.reshape(batch, -1, height * width)
        moved = flat.gather(-1, index.expand(batch, flat.shape[1], height * width)).reshape(z.shape)
        out = torch.where(in_source, source_scale * out + noise_scale * _normal(out, generator), out)
        out = torch.where(in_target, target_scale * moved, out)
    return out


def _ddim_inversion(model: Callable[..., torch.Tensor], schedule: Schedule, x: torch.Tensor, times: torch.Tensor,
                    prediction: str | Prediction, model_kwargs: dict[str, Any] | None,
                    time_input: Callable[[torch.Tensor], torch.Tensor] | None) -> tuple[torch.Tensor, int]:
    """DDIM (eta = 0) inversion: ``DDIM(eta=0).step`` on the increasing grid ``times.flip(0)`` (the model is
    evaluated at the less noisy end of each step). Returns the states at ``times`` ``(steps + 1, batch, *event)``
    (``[-1]`` is ``x``) and the model calls."""
    calls = [0]
    denoiser = as_denoiser(model, schedule, prediction, model_kwargs=model_kwargs, time_input=time_input)

    def counted(y: torch.Tensor, t: float) -> torch.Tensor:
        calls[0] += 1
        return denoiser(y, t)

    up = times.flip(0).tolist()
    ddim = DDIM(eta=0.0)
    ctx = SamplerContext(counted, schedule, up, None)
    states = fixed_loop(lambda k, t0, t1, y, state: ddim.step(ctx, k, t0, t1, y, state), x, None, up,
                        list(range(len(up))), lambda values: values, "drag[ddim-inversion]")
    return torch.stack(states[::-1]), calls[0]


@overload
def drag(model: Callable[..., torch.Tensor], schedule: Schedule, x: torch.Tensor, source: torch.Tensor,
         target: torch.Tensor, *, steps: int, t0: float | None = ..., solver: str | Sampler = ...,
         radius: int = ..., mask: torch.Tensor | None = ..., timesteps: str | TimeGrid | None = ...,
         source_scale: float = ..., target_scale: float = ..., prediction: str | Prediction = ...,
         generator: torch.Generator | None = ..., model_kwargs: dict[str, Any] | None = ...,
         time_input: Callable[[torch.Tensor], torch.Tensor] | None = ..., return_info: Literal[False] = ...
         ) -> torch.Tensor: ...


@overload
def drag(model: Callable[..., torch.Tensor], schedule: Schedule, x: torch.Tensor, source: torch.Tensor,
         target: torch.Tensor, *, steps: int, t0: float | None = ..., solver: str | Sampler = ...,
         radius: int = ..., mask: torch.Tensor | None = ..., timesteps: str | TimeGrid | None = ...,
         source_scale: float = ..., target_scale: float = ..., prediction: str | Prediction = ...,
         generator: torch.Generator | None = ..., model_kwargs: dict[str, Any] | None = ...,
         time_input: Callable[[torch.Tensor], torch.Tensor] | None = ..., return_info: Literal[True]
         ) -> tuple[torch.Tensor, DragInfo]: ...


def drag(model: Callable[..., torch.Tensor], schedule: Schedule, x: torch.Tensor, source: torch.Tensor,
         target: torch.Tensor, *, steps: int, t0: float | None = None, solver: str | Sampler = _DDPM,
         radius: int = 1, mask: torch.Tensor | None = None, timesteps: str | TimeGrid | None = None,
         source_scale: float = 0.3, target_scale: float = 1.1, prediction: str | Prediction = "eps",
         generator: torch.Generator | None = None, model_kwargs: dict[str, Any] | None = None,
         time_input: Callable[[torch.Tensor], torch.Tensor] | None = None, return_info: bool = False
         ) -> torch.Tensor | tuple[torch.Tensor, DragInfo]:
    r"""SDE-Drag: drag the content at ``source`` to ``target`` with a diffusion model.

    A drag of length ``|d| = |target - source|`` is split into ``n = max(1, round(max_p |d_p| / 2))``
    increments (``round`` half up; the maximum over an image's points), the ``i``-th from
    ``a_i = source + round(i d / n)`` to ``b_i = source + round((i + 1) d / n)``. Each increment:

    1. **invert** the current image ``x`` to ``t0`` on the grid ``t0 = t_0 > ... > t_steps = t_min``
       (:func:`~sdekit.editing.invert`, Cycle-SDE): forward states ``x^f_k`` and the noise that makes the
       stochastic reverse step land on them;
    2. **edit the latent** ``z = x^f_0``: with ``S`` the square of half-width ``radius`` around ``a_i`` and
       ``T`` the one around ``b_i`` (clipped so that both fit the image),

       .. math:: z_S \leftarrow \rho\, z_S + \sqrt{1 - \rho^2}\, \xi,\quad \xi \sim N(0, I), \qquad
                 z_T \leftarrow \gamma\, z^{\text{before}}_S

       (``rho = source_scale = 0.3``, ``gamma = target_scale = 1.1``, the target written last);
    3. **reverse** from ``z`` with the recorded noise; after every step to ``t_{k+1}`` the region outside
       ``mask`` is reset to the forward state ``x^f_{k+1}``, so it ends exactly on ``x``.

    An increment with ``a_i = b_i`` (a zero-length drag, or an image whose shorter drag is already done while
    another image of the batch still moves) edits nothing, and the Cycle-SDE run then returns the image up
    to rounding. Nie et al., "The Blessing of Randomness: SDE Beats ODE in General Diffusion-based Image
    Editing", ICLR 2024 (arXiv 2311.01410), SDE-Drag (paper settings: ``t0 = 0.6 T``, ``radius = 5`` on
    64x64 latents, 200 steps; the LoRA fine-tuning and the guidance schedule of the paper are not part of
    this function).

    **The ODE baseline.** With a deterministic ``solver`` the inversion is DDIM (``eta = 0``) inversion: the
    ``DDIM(eta=0)`` step run on the increasing grid, ``x_{k} = alpha_k D(x_{k+1}) + sigma_k \hat\epsilon(
    x_{k+1})``; the reverse run uses ``solver`` without noise and resets outside ``mask`` to the DDIM-inverted
    states. It costs the same model calls as the SDE version with a one-call-per-step solver, but does not
    reconstruct exactly (DDIM inversion is only approximately the inverse of DDIM sampling).

    Arguments:
        model, schedule, prediction, model_kwargs, time_input: as :func:`~sdekit.diffusion.sample`.
        x: images ``(batch, *lead, H, W)`` (e.g. ``(batch, channels, H, W)``); the last two axes are the
            pixel grid.
        source, target: integer pixel positions ``(row, col)``: ``(2,)`` (shared by the batch),
            ``(batch, 2)`` or ``(batch, points, 2)`` (several handle points per image), inside the image.
        steps: grid steps from ``t0`` to ``t_min`` per increment.
        t0: the edit time, in ``(t_min, t_max]``; default ``t_min + 0.6 (t_max - t_min)`` (the paper's
            ``0.6 T``).
        solver: a stochastic sampler with one noise draw per step (default ``DDIM(eta=1.0)``, the paper's;
            ``"sde-dpm++2m"`` also works) or a deterministic one (the ODE baseline above).
        radius: half-width of the copied square (``>= 0``; the square has ``2 radius + 1`` pixels a side).
        mask: ``(batch, *lead, H, W)`` or ``(*lead, H, W)`` of 0/1; 1 marks the region allowed to change
            (default: everything).
        timesteps: a grid name or :class:`~sdekit.diffusion.TimeGrid` (default: the schedule's).
        source_scale, target_scale: ``rho`` in ``[0, 1]`` and ``gamma`` in ``[0, 10]`` above.
        generator: seeds the forward noise of the inversion and the source-patch noise.
        return_info: also return a :class:`DragInfo` (increments, model calls).

    Returns:
        the dragged images ``(batch, *lead, H, W)``, or ``(x, info)``.

    Raises:
        TypeError / ValueError naming ``x``, ``source``, ``target`` (not integer, wrong shape, outside the
        image, shapes that differ), ``t0`` (outside the schedule's interval), ``radius``, ``steps``, ``mask``,
        ``source_scale``, ``target_scale``; ValueError from :func:`~sdekit.editing.invert` for a stochastic
        solver Cycle-SDE cannot invert.
    """
    check_schedule(schedule)
    check_state("x", x, min_dim=3)
    src, tgt = _points("source", source, x), _points("target", target, x)
    if src.shape != tgt.shape:
        raise ValueError(f"source and target must have the same shape (one target per source point); got "
                         f"source {tuple(source.shape)} and target {tuple(target.shape)}")
    keep = None if mask is None else check_mask(mask, x).bool().logical_not()
    if t0 is None:
        t0 = schedule.t_min + 0.6 * (schedule.t_max - schedule.t_min)
    t0 = check_time("t0", t0, schedule)
    radius = check_count("radius", radius, minimum=0)
    rho = _check_scale("source_scale", source_scale, 0.0, 1.0)
    gamma = _check_scale("target_scale", target_scale, 0.0, 10.0)
    sampler = get_sampler(solver)
    times = grid_from(schedule, timesteps, steps, t0)

    d = tgt - src
    per_image = torch.floor(d.double().norm(dim=-1).amax(dim=-1) / 2 + 0.5).long().clamp(min=1)
    rounds = int(per_image.max())
    nfe = 0
    for i in range(rounds):
        n = per_image[:, None, None].double()
        a = src + torch.floor(d * (torch.clamp(torch.full_like(n, i), max=n) / n) + 0.5).long()
        b = src + torch.floor(d * (torch.clamp(torch.full_like(n, i + 1), max=n) / n) + 0.5).long()
        bm: BrownianSource | None = None
        if sampler.stochastic:
            inv = invert(model, schedule, x, solver=sampler, steps=steps, timesteps=timesteps, t_start=t0,
                         prediction=prediction, generator=generator, model_kwargs=model_kwargs,
                         time_input=time_input)
            forward, bm, calls = inv.forward, inv.noise(), inv.nfe
        else:
            forward, calls = _ddim_inversion(model, schedule, x, times, prediction, model_kwargs, time_input)
        latent = _copy_paste(forward[0], a, b, radius, rho, gamma, generator)
        run: Sampler = sampler
        if keep is not None:
            latent = torch.where(keep, forward[0], latent)
            run = Replacing(sampler, keep, lambda k, t, forward=forward: forward[k])
        x, info = sample(model, schedule, latent, solver=run, timesteps=times, bm=bm, prediction=prediction,
                         model_kwargs=model_kwargs, time_input=time_input, return_info=True)
        nfe += calls + info.nfe
    if return_info:
        return x, DragInfo(increments=rounds, per_image=per_image, nfe=nfe, times=times)
    return x
