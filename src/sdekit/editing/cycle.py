"""Cycle-SDE (Nie et al. 2024): invert data to a latent and record, step by step, the noise that makes a
stochastic sampler's reverse step land exactly on the recorded forward state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, overload

import torch

from ..core.integrate import fixed_loop
from ..diffusion.prediction import Prediction, as_denoiser
from ..diffusion.samplers import sample
from ..diffusion.samplers.base import SampleInfo, Sampler, SamplerContext
from ..diffusion.samplers.registry import get_sampler
from ..diffusion.schedules import Schedule
from ..diffusion.timesteps import TimeGrid, TimestepsLike, resolve_timesteps
from ._checks import check_schedule, check_state, check_time, grid_from
from ._forward import transition

__all__ = ["Inversion", "RecordedNoise", "invert", "reconstruct"]


class RecordedNoise:
    """A Brownian source ``bm(ta, tb)`` that returns the recorded increment of the grid step ``(ta, tb)``.

    Arguments:
        times: the grid, float64 ``(steps + 1,)``, strictly decreasing.
        increments: ``(steps, *shape)``: ``increments[k]`` is returned for ``(times[k], times[k + 1])``.

    Raises (when called): ValueError for an interval that is not a step of the grid."""

    def __init__(self, times: torch.Tensor, increments: torch.Tensor) -> None:
        grid = times.tolist()
        self._index = {(a, b): k for k, (a, b) in enumerate(zip(grid[:-1], grid[1:]))}
        self.times, self.increments = times, increments

    def __call__(self, ta: float, tb: float) -> torch.Tensor:
        k = self._index.get((float(ta), float(tb)))
        if k is None:
            raise ValueError(f"the recorded noise covers the steps of its grid {self.times.tolist()}; "
                             f"({ta}, {tb}) is not one of them (reverse on the inversion's grid)")
        return self.increments[k]


@dataclass
class Inversion:
    """What :func:`invert` records.

    Attributes:
        latent: ``(batch, *event)``, the forward state at ``times[0]`` (start of the reverse run).
        times: float64 ``(steps + 1,)``, the decreasing grid of the reverse run.
        increments: ``(steps, batch, *event)``, the Brownian increments that make each reverse step land on
            the next forward state.
        forward: ``(steps + 1, batch, *event)``, the forward states at ``times`` (``forward[-1]`` is ``x_0``).
        solver: the stochastic sampler the noise was recorded for.
        nfe: model calls made by the inversion.
    """

    latent: torch.Tensor
    times: torch.Tensor
    increments: torch.Tensor = field(repr=False)
    forward: torch.Tensor = field(repr=False)
    solver: Sampler
    nfe: int

    def noise(self) -> RecordedNoise:
        """The recorded increments as a Brownian source for :func:`~sdekit.diffusion.sample`."""
        return RecordedNoise(self.times, self.increments)


class _Tape:
    """Records the denoiser outputs of one step, then replays them (no model call) for the same inputs."""

    def __init__(self, denoiser: Callable[[torch.Tensor, float], torch.Tensor]) -> None:
        self.denoiser = denoiser
        self.calls: list[tuple[torch.Tensor, float, torch.Tensor]] = []
        self.calls_made = 0

    def record(self, x: torch.Tensor, t: float) -> torch.Tensor:
        out = self.denoiser(x, t)
        self.calls_made += 1
        self.calls.append((x, t, out))
        return out

    def replay(self) -> Callable[[torch.Tensor, float], torch.Tensor]:
        it = iter(self.calls)

        def denoiser(x: torch.Tensor, t: float) -> torch.Tensor:
            try:
                x_rec, t_rec, out = next(it)
            except StopIteration:
                raise ValueError("the solver's step made more model calls when its noise changed; Cycle-SDE "
                                 "needs steps whose model calls do not depend on the noise") from None
            if t != t_rec or not torch.equal(x, x_rec):
                raise ValueError("the solver's step evaluates the model on a state that depends on the step's "
                                 "noise; Cycle-SDE needs steps whose model calls precede the noise (DDIM with "
                                 "eta > 0, SDE-DPM-Solver++, ...)")
            return out

        return denoiser


def invert(model: Callable[..., torch.Tensor], schedule: Schedule, x0: torch.Tensor, *,
           solver: str | Sampler = "sde-dpm++2m", steps: int | None = None, timesteps: TimestepsLike = None,
           t_start: float | None = None, prediction: str | Prediction = "eps",
           generator: torch.Generator | None = None, model_kwargs: dict[str, Any] | None = None,
           time_input: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Inversion:
    r"""Cycle-SDE inversion: a forward path from ``x0`` and the noise that makes the reverse sampler retrace it.

    On the decreasing grid ``t_0 > ... > t_n`` the forward states are a draw of the forward Markov chain,
    ``x^f_n = x_0`` and ``x^f_{k} = (alpha_k / alpha_{k+1}) x^f_{k+1} + \sqrt{\sigma_k^2 - (\alpha_k /
    \alpha_{k+1})^2 \sigma_{k+1}^2}\, \xi_k``. A stochastic sampler's step is affine in its noise,
    ``x_{k+1} = m_k(x_k, S_k) + c_k \odot \Delta W_k``; at every step the increment

    .. math:: \Delta W_k = \big(x^f_{k+1} - m_k(x^f_k, S_k)\big) / c_k

    is recorded, so a reverse run from ``x^f_0`` with these increments (:func:`reconstruct`) lands on every
    forward state and returns ``x_0`` up to rounding. For DDIM with ``eta = 1`` this is the paper's
    ``w = (x_p^f - \sqrt{\bar\alpha_p} \hat x_0 - \sqrt{1 - \bar\alpha_p - \sigma_t^2}\,\hat\epsilon) /
    \sigma_t``; the same construction serves SDE-DPM-Solver++ (multistep: its history is rebuilt on the
    forward states) and any stochastic sampler whose model calls in a step precede its noise. ``m_k`` and
    ``c_k`` come from the sampler's own ``step`` (one call with zero noise, two replays with the model
    outputs taped), so no sampler formula is repeated here. Nie et al., "The Blessing of Randomness: SDE
    Beats ODE in General Diffusion-based Image Editing", ICLR 2024 (arXiv 2311.01410), Cycle-SDE.

    Arguments:
        model, schedule, prediction, model_kwargs, time_input: as :func:`~sdekit.diffusion.sample`.
        x0: data ``(batch, *event)``.
        solver: a stochastic sampler with ``noise_substeps = 1`` (default ``"sde-dpm++2m"``; e.g.
            ``DDIM(eta=1.0)``).
        steps, timesteps: the grid, as :func:`~sdekit.diffusion.sample`.
        t_start: start the grid at ``t_start`` in ``(t_min, t_max]`` instead of ``t_max`` (an edit at an
            intermediate time, as SDE-Drag); needs a grid name or TimeGrid, not a tensor.
        generator: seeds the forward chain.

    Returns:
        an :class:`Inversion` (``latent``, ``times``, ``increments``, ``forward``, ``solver``, ``nfe``).

    Raises:
        ValueError for a deterministic solver, a solver whose step is not affine in its noise or puts no noise
        on a step, ``t_start`` outside the schedule's interval.
    """
    check_schedule(schedule)
    check_state("x0", x0)
    sampler = get_sampler(solver)
    if not sampler.stochastic:
        raise ValueError(f"solver must be stochastic for Cycle-SDE (e.g. DDIM(eta=1.0) or 'sde-dpm++2m'); got "
                         f"{sampler!r}")
    if sampler.noise_substeps != 1:
        raise ValueError(f"solver must draw its noise once per step (noise_substeps = 1); {sampler!r} draws it on "
                         f"{sampler.noise_substeps} sub-intervals")
    if t_start is not None:
        t_start = check_time("t_start", t_start, schedule)
        if isinstance(timesteps, (torch.Tensor, list, tuple)) or steps is None:
            raise ValueError("t_start needs steps and a grid name or TimeGrid (timesteps), not an explicit tensor")
        times = grid_from(schedule, timesteps if isinstance(timesteps, (str, TimeGrid)) else None, steps, t_start)
    else:
        times = resolve_timesteps(timesteps, schedule, steps)
    grid = times.tolist()
    n = len(grid) - 1
    tape_model = as_denoiser(model, schedule, prediction, model_kwargs=model_kwargs, time_input=time_input)

    forward = [x0]
    for k in range(n - 1, -1, -1):
        forward.append(transition(schedule, forward[-1], grid[k + 1], grid[k], generator))
    forward.reverse()

    increments: dict[int, torch.Tensor] = {}
    nfe = [0]
    eps = torch.finfo(x0.dtype).eps

    def constant(value: torch.Tensor | float):
        return lambda k, t0, t1: value if isinstance(value, torch.Tensor) else torch.full_like(x0, value)

    def step(k: int, t0: float, t1: float, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        tape = _Tape(tape_model)
        mean, _ = sampler.step(SamplerContext(tape.record, schedule, grid, constant(0.0)), k, t0, t1, x, state)
        nfe[0] += tape.calls_made
        unit, _ = sampler.step(SamplerContext(tape.replay(), schedule, grid, constant(1.0)), k, t0, t1, x, state)
        scale = unit - mean
        target = forward[k + 1]
        if bool((scale == 0).any()):
            raise ValueError(f"solver {sampler!r} puts no noise on step {k} ({t0} -> {t1}); Cycle-SDE needs noise on "
                             "every step (end the grid where sigma > 0)")
        dw = (target - mean) / scale
        x1, state1 = sampler.step(SamplerContext(tape.replay(), schedule, grid, constant(dw)), k, t0, t1, x, state)
        size = float((target.abs() + mean.abs() + (scale * dw).abs()).max())
        if float((x1 - target).abs().max()) > 64 * eps * max(size, 1.0):
            raise ValueError(f"solver {sampler!r} is not affine in its noise on step {k}; Cycle-SDE needs "
                             "x_{k+1} = m_k + c_k * dW_k")
        increments[k] = dw
        return target, state1

    fixed_loop(step, forward[0], sampler.init(SamplerContext(tape_model, schedule, grid, None), forward[0]), grid,
               [0, n], lambda values: values, f"invert[{sampler.name}]")
    return Inversion(latent=forward[0], times=times, increments=torch.stack([increments[k] for k in range(n)]),
                     forward=torch.stack(forward), solver=sampler, nfe=nfe[0])


@overload
def reconstruct(model: Callable[..., torch.Tensor], schedule: Schedule, inversion: Inversion, *,
                latent: torch.Tensor | None = ..., prediction: str | Prediction = ...,
                model_kwargs: dict[str, Any] | None = ...,
                time_input: Callable[[torch.Tensor], torch.Tensor] | None = ...,
                return_info: Literal[False] = ...) -> torch.Tensor: ...


@overload
def reconstruct(model: Callable[..., torch.Tensor], schedule: Schedule, inversion: Inversion, *,
                latent: torch.Tensor | None = ..., prediction: str | Prediction = ...,
                model_kwargs: dict[str, Any] | None = ...,
                time_input: Callable[[torch.Tensor], torch.Tensor] | None = ...,
                return_info: Literal[True]) -> tuple[torch.Tensor, SampleInfo]: ...


def reconstruct(model: Callable[..., torch.Tensor], schedule: Schedule, inversion: Inversion, *,
                latent: torch.Tensor | None = None, prediction: str | Prediction = "eps",
                model_kwargs: dict[str, Any] | None = None,
                time_input: Callable[[torch.Tensor], torch.Tensor] | None = None,
                return_info: bool = False) -> torch.Tensor | tuple[torch.Tensor, SampleInfo]:
    r"""Cycle-SDE reverse run: the inversion's sampler on its grid, driven by its recorded noise.

    Unedited (the same model, ``model_kwargs`` and ``latent``), the result is the inverted ``x_0`` up to
    rounding (``tests/editing/test_cycle.py``: relative 1e-10 in float64, 1e-4 in float32). An edit passes
    an edited ``latent`` (same shape) or other ``model_kwargs`` (other conditioning) and keeps the recorded
    noise, so what the edit leaves alone is reconstructed. Nie et al. 2024 (arXiv 2311.01410), Cycle-SDE.

    Arguments:
        model, schedule, prediction, model_kwargs, time_input: as :func:`~sdekit.diffusion.sample`
            (``schedule`` and ``prediction`` as at inversion).
        inversion: from :func:`invert`.
        latent: the start ``(batch, *event)`` at ``inversion.times[0]`` (default ``inversion.latent``).
        return_info: also return the :class:`~sdekit.diffusion.SampleInfo`.

    Returns:
        ``(batch, *event)``, or ``(x, info)``.
    """
    check_schedule(schedule)
    if not isinstance(inversion, Inversion):
        raise TypeError(f"inversion must be an Inversion (from sdekit.editing.invert), got "
                        f"{type(inversion).__name__}")
    x_T = inversion.latent if latent is None else check_state("latent", latent)
    if x_T.shape != inversion.latent.shape:
        raise ValueError(f"latent must have the inversion's shape {tuple(inversion.latent.shape)}; got "
                         f"{tuple(x_T.shape)}")
    return sample(model, schedule, x_T, solver=inversion.solver, timesteps=inversion.times, bm=inversion.noise(),
                  prediction=prediction, model_kwargs=model_kwargs, time_input=time_input, return_info=return_info)

