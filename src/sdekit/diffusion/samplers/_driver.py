"""``sample``: resolve the sampler, the grid, the denoiser and the noise, then run the core loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, overload

import torch

from ...core.brownian import BrownianGrid
from ...core.integrate import fixed_loop
from .._utils import check_tensor
from ..prediction import Denoiser, Prediction, as_denoiser
from ..schedules import Schedule
from ..timesteps import TimestepsLike, resolve_timesteps
from .base import BrownianSource, SampleInfo, Sampler, SamplerContext, substep_edges
from .registry import get_sampler

if TYPE_CHECKING:
    from ...core import AdjointStrategy

__all__ = ["sample"]


class _Counted:
    """Counts calls of a denoiser (each is one model evaluation)."""

    def __init__(self, denoiser: Denoiser | _Recorder) -> None:
        self.denoiser = denoiser
        self.calls = 0

    def __call__(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.denoiser(x, t)


class _Recorder:
    """Keeps the denoiser's output at the grid states: a call on the very state a step started from, at its
    start time, is ``D(x_{t_k}, t_k)``, the ``k``-th point of the denoising trajectory."""

    def __init__(self, denoiser: Denoiser, times: list[float]) -> None:
        self.denoiser = denoiser
        self.times = times
        self.current: tuple[int, torch.Tensor | None] = (-1, None)
        self.outputs: dict[int, torch.Tensor] = {}

    def __call__(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        out = self.denoiser(x, t)
        k, xk = self.current
        if xk is not None and k not in self.outputs and _as_float(t) == self.times[k] and _same_state(x, xk):
            self.outputs[k] = out
        return out


def _same_state(x: torch.Tensor, xk: torch.Tensor) -> bool:
    """``x`` is the step's state, or that state to rounding (a sampler may rescale it, e.g. ``alpha (x / alpha)``)."""
    if x is xk:
        return True
    if x.shape != xk.shape or x.dtype != xk.dtype:
        return False
    eps = 4.0 * torch.finfo(x.dtype).eps
    return bool(torch.allclose(x.detach(), xk.detach(), rtol=eps, atol=eps))


def _as_float(t: float | torch.Tensor) -> float | None:
    if isinstance(t, (int, float)):
        return float(t)
    if isinstance(t, torch.Tensor) and t.numel() >= 1:
        flat = t.reshape(-1)
        return float(flat[0]) if bool((flat == flat[0]).all()) else None
    return None


def _noise_source(bm: BrownianSource | None, generator: torch.Generator | None, times: torch.Tensor,
                  x: torch.Tensor, substeps: int = 1):
    if bm is None:
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        device = generator.device if generator is not None else "cpu"
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=device).item())
        if substeps > 1:
            # a sampler with noise_substeps > 1 queries the equal sub-intervals of each step (e.g.
            # PredictorCorrector): the default grid holds their edges
            grid_times = times.tolist()
            fine = [e for t0, t1 in zip(grid_times[:-1], grid_times[1:]) for e in substep_edges(t0, t1, substeps)[:-1]]
            fine = torch.tensor(fine + grid_times[-1:], dtype=torch.float64)
            grid = BrownianGrid(fine, tuple(x.shape), seed=seed, dtype=x.dtype, device=x.device)
            return lambda k, t0, t1: grid(t0, t1)
        grid = BrownianGrid(times, tuple(x.shape), seed=seed, dtype=x.dtype, device=x.device)
        return lambda k, t0, t1: grid.increment(k)
    if not callable(bm):
        raise TypeError(f"bm must be a Brownian source bm(ta, tb) (e.g. sdekit.BrownianPath), got "
                        f"{type(bm).__name__}")
    checked = []

    def noise(k: int, t0: float, t1: float) -> torch.Tensor:
        dw = bm(t0, t1)
        if not checked:
            if not isinstance(dw, torch.Tensor) or dw.shape != x.shape:
                got = tuple(dw.shape) if isinstance(dw, torch.Tensor) else type(dw).__name__
                raise ValueError(f"bm(ta, tb) must return increments of the shape of x_T, "
                                 f"{tuple(x.shape)}; got {got}")
            checked.append(True)
        return dw.to(dtype=x.dtype, device=x.device)

    return noise


@overload
def sample(model: Callable[..., torch.Tensor], schedule: Schedule, x_T: torch.Tensor, *,
           solver: str | Sampler = ..., steps: int | None = ..., timesteps: TimestepsLike = ...,
           prediction: str | Prediction = ..., denoise_final: bool = ..., generator: torch.Generator | None = ...,
           bm: BrownianSource | None = ..., progress: bool = ..., model_kwargs: dict[str, Any] | None = ...,
           time_input: Callable[[torch.Tensor], torch.Tensor] | None = ..., return_info: Literal[False] = ...,
           return_trajectory: Literal[False] = ..., adjoint: AdjointStrategy | None = ...,
           return_denoised: Literal[False] = ...) -> torch.Tensor: ...


@overload
def sample(model: Callable[..., torch.Tensor], schedule: Schedule, x_T: torch.Tensor, *,
           solver: str | Sampler = ..., steps: int | None = ..., timesteps: TimestepsLike = ...,
           prediction: str | Prediction = ..., denoise_final: bool = ..., generator: torch.Generator | None = ...,
           bm: BrownianSource | None = ..., progress: bool = ..., model_kwargs: dict[str, Any] | None = ...,
           time_input: Callable[[torch.Tensor], torch.Tensor] | None = ..., return_info: Literal[True],
           return_trajectory: bool = ...,
           adjoint: AdjointStrategy | None = ..., return_denoised: bool = ...) -> tuple[torch.Tensor, SampleInfo]: ...


@overload
def sample(model: Callable[..., torch.Tensor], schedule: Schedule, x_T: torch.Tensor, *,
           solver: str | Sampler = ..., steps: int | None = ..., timesteps: TimestepsLike = ...,
           prediction: str | Prediction = ..., denoise_final: bool = ..., generator: torch.Generator | None = ...,
           bm: BrownianSource | None = ..., progress: bool = ..., model_kwargs: dict[str, Any] | None = ...,
           time_input: Callable[[torch.Tensor], torch.Tensor] | None = ..., return_info: bool = ...,
           return_trajectory: Literal[True],
           adjoint: AdjointStrategy | None = ..., return_denoised: bool = ...) -> tuple[torch.Tensor, SampleInfo]: ...


@overload
def sample(model: Callable[..., torch.Tensor], schedule: Schedule, x_T: torch.Tensor, *,
           solver: str | Sampler = ..., steps: int | None = ..., timesteps: TimestepsLike = ...,
           prediction: str | Prediction = ..., denoise_final: bool = ..., generator: torch.Generator | None = ...,
           bm: BrownianSource | None = ..., progress: bool = ..., model_kwargs: dict[str, Any] | None = ...,
           time_input: Callable[[torch.Tensor], torch.Tensor] | None = ..., return_info: bool = ...,
           return_trajectory: bool = ...,
           adjoint: AdjointStrategy | None = ...,
           return_denoised: Literal[True]) -> tuple[torch.Tensor, SampleInfo]: ...


@overload
def sample(model: Callable[..., torch.Tensor], schedule: Schedule, x_T: torch.Tensor, *,
           solver: str | Sampler = ..., steps: int | None = ..., timesteps: TimestepsLike = ...,
           prediction: str | Prediction = ..., denoise_final: bool = ..., generator: torch.Generator | None = ...,
           bm: BrownianSource | None = ..., progress: bool = ..., model_kwargs: dict[str, Any] | None = ...,
           time_input: Callable[[torch.Tensor], torch.Tensor] | None = ..., return_info: bool = ...,
           return_trajectory: bool = ..., adjoint: AdjointStrategy | None = ..., return_denoised: bool = ...
           ) -> torch.Tensor | tuple[torch.Tensor, SampleInfo]: ...


def sample(model: Callable[..., torch.Tensor], schedule: Schedule, x_T: torch.Tensor, *,
           solver: str | Sampler = "dpm++2m", steps: int | None = None, timesteps: TimestepsLike = None,
           prediction: str | Prediction = "eps", denoise_final: bool = False,
           generator: torch.Generator | None = None, bm: BrownianSource | None = None, progress: bool = False,
           model_kwargs: dict[str, Any] | None = None, time_input: Callable[[torch.Tensor], torch.Tensor] | None = None,
           return_info: bool = False, return_trajectory: bool = False,
           adjoint: AdjointStrategy | None = None,
           return_denoised: bool = False) -> torch.Tensor | tuple[torch.Tensor, SampleInfo]:
    r"""Run a sampler from ``x_T`` at the first grid time down to the last one.

    Arguments:
        model: a network called as ``model(x, t, **model_kwargs)`` with ``t: (batch,)``, whose output
            ``prediction`` names; or a :class:`~sdekit.diffusion.Denoiser` (e.g. an oracle's
            ``as_denoiser(schedule)``), used as is (``prediction`` then does not apply).
        schedule: the :class:`~sdekit.diffusion.Schedule`.
        x_T: the initial state ``(batch, *event)`` at the first grid time (e.g.
            ``schedule.prior_sample(shape)``).
        solver: a sampler name (default ``"dpm++2m"``; the names of :data:`SAMPLERS`: ``"ddim"``,
            ``"dpm++3m"``, ``"unipc"``, ``"heun"``, ``"sa-solver"``, ``"er-sde"``, ``"ode"``, ...) or a
            :class:`~sdekit.diffusion.Sampler` object (``DDIM(eta=1)``, ``PFODE(method="rk4")``, ...).
        steps: number of grid steps; may be omitted with an explicit tensor of ``timesteps`` and for
            adaptive ODE solvers (then one interval ``[t_max, t_min]``).
        timesteps: a grid name (``"uniform"``, ``"logsnr"``, ``"karras"``), a
            :class:`~sdekit.diffusion.TimeGrid` or a strictly decreasing tensor of times; ``None``:
            the schedule's default grid.
        prediction: what ``model`` predicts (``"eps"``, ``"x0"``, ``"v"``, ``"score"``,
            ``"velocity"``, ``"karras"``, ``"edm"`` or a Prediction object).
        denoise_final: return ``D(x, t_last)`` (one extra model call) instead of the state at the last
            grid time.
        generator: seeds the sampler noise (not ``x_T``) when ``bm`` is ``None``.
        bm: a Brownian source ``bm(ta, tb)`` on an interval holding the grid (e.g.
            ``BrownianPath(t_min, t_max, x_T.shape, seed=...)``; per-sample seeds make every sample
            independent of its batch). Deterministic samplers ignore it.
        progress: show a progress bar.
        model_kwargs: keyword arguments for every model call (a dict; never ``**kwargs``).
        time_input: optional map of the time before it reaches the network (e.g.
            ``DiscreteVP.timestep``).
        return_info: also return a :class:`~sdekit.diffusion.SampleInfo` (``nfe``, grid, solver and, with
            an :class:`~sdekit.diffusion.AdjointDEIS` strategy, ``adjoint_stats``).
        return_trajectory: store the states at all grid times in ``info.trajectory`` (implies
            ``return_info``).
        adjoint: how gradients flow through the sampler: ``None`` or :class:`~sdekit.diffusion.Backprop`
            (autograd records every step, memory linear in the steps) or
            :class:`~sdekit.diffusion.AdjointDEIS` (the adjoint equations solved backwards, memory
            independent of the steps; gradients reach ``x_T``, the ``model_kwargs`` tensors that require
            grad and the model's parameters; see :mod:`sdekit.diffusion.adjoint`).
        return_denoised: also store the denoising trajectory ``D(x_{t_k}, t_k)`` at all grid times in
            ``info.denoised`` (implies ``return_trajectory``; Chen et al. 2023, "A geometric perspective on
            diffusion models"). The denoiser outputs the sampler computed at the grid states are reused; where
            it made none (the last grid time, unless ``denoise_final``; samplers that evaluate elsewhere) one
            extra call is made, counted in ``info.nfe``.

    Returns:
        ``x`` of the shape and dtype of ``x_T``, or ``(x, info)``.

    Raises:
        TypeError / ValueError at the boundary for a wrong schedule, state, solver, grid, prediction or
        Brownian source; FloatingPointError naming the step when the state becomes non-finite.

    No gradient mode is forced: wrap the call in ``torch.no_grad()`` unless you differentiate through it.
    """
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a sdekit.diffusion.Schedule, got {type(schedule).__name__}")
    check_tensor("x_T", x_T, min_dim=1, finite=True)
    return_trajectory = bool(return_trajectory or return_denoised)
    if adjoint is not None:
        from ..adjoint import check_sampling_adjoint  # imported here: the adjoint module imports samplers

        adjoint = check_sampling_adjoint(adjoint)
        if adjoint is not None and return_trajectory:
            raise ValueError("return_trajectory=True keeps every state; it needs adjoint=None or Backprop()")
    sampler = get_sampler(solver)
    if steps is None and timesteps is None and sampler.nfe_per_step is None:
        steps = 1
    times = resolve_timesteps(timesteps, schedule, steps)
    raw = as_denoiser(model, schedule, prediction, model_kwargs=model_kwargs, time_input=time_input)
    grid = times.tolist()
    recorder = _Recorder(raw, grid) if return_denoised else None
    denoiser = _Counted(recorder if recorder is not None else raw)
    noise = _noise_source(bm, generator, times, x_T, sampler.noise_substeps) if sampler.stochastic else None
    ctx = SamplerContext(denoiser=denoiser, schedule=schedule, times=grid, noise=noise)
    n = len(grid) - 1
    saves = list(range(n + 1)) if return_trajectory else [0, n]

    def step(k, t0, t1, x, state):
        if recorder is not None:
            recorder.current = (k, x)
        return sampler.step(ctx, k, t0, t1, x, state)

    adjoint_stats = None
    if adjoint is not None:
        from ..adjoint import sample_with_adjoint

        x_out, adjoint_stats = sample_with_adjoint(adjoint, sampler, ctx, raw, x_T,
                                                   progress=progress)
        states = [x_out]
    else:
        states = fixed_loop(step, x_T, sampler.init(ctx, x_T), grid, saves, lambda values: values,
                             f"sample[{sampler.name}]", progress)
    x = states[-1]
    if recorder is not None:
        recorder.current = (n, x)
    if denoise_final:
        x = denoiser(x, grid[-1])
    if not (return_info or return_trajectory):
        return x
    denoised = None
    if recorder is not None:
        recorder.current = (-1, None)
        outputs = recorder.outputs
        denoised = torch.stack([outputs[k] if k in outputs else denoiser(states[k], grid[k]) for k in range(n + 1)])
    info = SampleInfo(nfe=denoiser.calls, timesteps=times, solver=sampler,
                      trajectory=torch.stack(states) if return_trajectory else None,
                      adjoint_stats=adjoint_stats, denoised=denoised)
    return x, info
