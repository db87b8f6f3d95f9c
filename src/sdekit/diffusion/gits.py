r"""GITS: a time grid fitted to a model by dynamic programming over teacher trajectories.

Chen, Zhou, Ye, Hu, Guo, Lin & Wu 2024, "On the trajectory regularity of ODE-based diffusion
sampling" (ICML; "geometry-inspired time scheduling"). Probability-flow ODE trajectories of one
model look alike whatever their start, so a grid that suits a few hundred warm-up trajectories
suits them all:

1. a *teacher* sampler solves the ODE for ``warmup`` initial states on a fine grid
   ``t_0 > ... > t_M`` (Karras ``rho = 7``, ``M = 60``), giving reference points ``x_i``;
2. the cost of a coarse step from fine point ``i`` to ``j > i`` is the mean distance between one
   *student* step from ``(x_i, t_i)`` to ``t_j`` and the teacher point ``x_j``:

   .. math:: c_{ij} = \frac1B \sum_b \big\| \mathrm{step}(x_i^{(b)}, t_i \to t_j) - x_j^{(b)} \big\|_2;

3. dynamic programming picks the ``K``-step path ``0 = p_0 < p_1 < ... < p_K = M`` of least
   weighted cost ``sum_m coeff^m c[p_m, p_{m+1}]``. The weight ``coeff = 1.15`` per level is the one of
   the official implementation: errors made late in sampling (near the data) count a little more.

4. optionally (``refine=``, not in the paper) the chosen grid is polished off the fine grid: a coordinate
   search moves each interior time in log-SNR towards either neighbour and keeps a move when the
   target sampler, run on the whole grid from the warm-up states, ends closer (mean L2) to the
   teacher's endpoints. It tunes the grid to the sampler that will use it (a multistep method's
   error is not the sum of one-step errors), at the cost of ``2 (K - 1)`` warm-up runs per sweep.

The student is any deterministic :class:`~sdekit.diffusion.Sampler`; the paper's cost uses the
first-order step (Euler in ``sigma`` for VE, i.e. :class:`~sdekit.diffusion.DDIM`), and the grid it
gives then serves any sampler (multistep ones included: iPNDM, DPM-Solver++, UniPC). A student's
jump is one step with a fresh state (``init`` then ``step`` with ``k = 0``), so multistep students
contribute their starting (lower-order) step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ._utils import check_real, check_tensor
from .prediction import Denoiser, Prediction, as_denoiser
from .samplers import DDIM, PFODE, Sampler, SamplerContext, get_sampler, sample
from .schedules import Schedule
from .timesteps import Karras, TimeGrid, TimeTensor, _check_decreasing, get_time_grid

__all__ = ["GITS", "gits_path"]


class _Cached:
    """A denoiser that remembers its last call (a student's first evaluation at ``(x_i, t_i)`` is the
    same for every target ``j``) and counts the model calls it makes."""

    def __init__(self, denoiser: Denoiser) -> None:
        self.denoiser = denoiser
        self.calls = 0
        self._key: tuple[torch.Tensor, float | None] | None = None
        self._value: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
        key = (x, float(t) if not isinstance(t, torch.Tensor) or t.dim() == 0 else None)
        if (self._value is not None and self._key is not None and key[1] is not None and x is self._key[0]
                and key[1] == self._key[1]):
            return self._value
        value = self.denoiser(x, t)
        self.calls += 1
        self._key, self._value = key, value
        return value


def gits_path(cost: torch.Tensor, steps: int, coeff: float = 1.15) -> tuple[list[int], float]:
    r"""The ``steps``-step path through a fine grid of least weighted cost.

    Minimises ``sum_{m=0}^{K-1} coeff^m cost[p_m, p_{m+1}]`` over ``0 = p_0 < p_1 < ... < p_K = M``
    by dynamic programming on ``V_k(i) = min_{i<j<M} cost[i, j] + coeff V_{k-1}(j)``,
    ``V_1(i) = cost[i, M]`` (O(K M^2)).

    Arguments:
        cost: ``(M + 1, M + 1)``; only entries ``cost[i, j]`` with ``j > i`` are read.
        steps: ``K``, ``1 <= K <= M``.
        coeff: weight per level (> 0).

    Returns:
        ``(path, value)``: the ``K + 1`` fine-grid indices and the weighted cost of the path.
    """
    if not isinstance(cost, torch.Tensor) or cost.dim() != 2 or cost.shape[0] != cost.shape[1]:
        raise ValueError(f"cost must be a square (M + 1, M + 1) tensor, got {getattr(cost, 'shape', cost)!r}")
    m = cost.shape[0] - 1
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= m:
        raise ValueError(f"steps must be an int in [1, {m}] (the fine grid has {m} steps), got {steps!r}")
    coeff = check_real("coeff", coeff, positive=True)
    c = cost.detach().to("cpu", torch.float64).clone()
    upper = torch.ones(m + 1, m + 1, dtype=torch.bool).triu(1)
    c[~upper] = math.inf
    # value[k][i]: least weighted cost from fine point i to M in exactly k steps; choice[k][i]: next point.
    value = [None, c[:, m].clone()]
    choice = [None, torch.full((m + 1,), m, dtype=torch.long)]
    inner = c.clone()
    inner[:, m] = math.inf                       # intermediate points never reach M early
    for k in range(2, steps + 1):
        total = inner + coeff * value[k - 1][None, :]
        best, arg = total.min(dim=1)
        value.append(best)
        choice.append(arg)
    path, i = [0], 0
    for k in range(steps, 0, -1):
        i = int(choice[k][i])
        path.append(i)
    total = float(value[steps][0])
    if not math.isfinite(total):
        raise ValueError(f"no finite {steps}-step path through the cost matrix (non-finite costs?)")
    return path, total


def _refine(grid_times: torch.Tensor, schedule: Schedule, distance, sweeps: int) -> tuple[torch.Tensor, list]:
    """Coordinate search on the interior log-SNR values of a grid (ends fixed) that lowers
    ``distance(times)``; returns the times and the distance after each sweep that moved a point."""
    lam = schedule.log_snr(grid_times).to(torch.float64).tolist()

    def times_of(values):
        times = schedule.t_of_log_snr(torch.tensor(values, dtype=torch.float64)).to(grid_times)
        times[0], times[-1] = grid_times[0], grid_times[-1]      # the ends exactly, not through log-SNR
        return times

    best = distance(times_of(lam))
    history, frac = [best], 0.5
    min_gap = abs(lam[-1] - lam[0]) / (len(lam) - 1) / 20    # no step shorter than 1/20 of the mean step
    for _ in range(sweeps):
        moved = False
        for i in range(1, len(lam) - 1):
            for side in (i + 1, i - 1):
                trial = list(lam)
                trial[i] = lam[i] + frac * (lam[side] - lam[i])
                if min(abs(trial[i] - trial[i - 1]), abs(trial[i + 1] - trial[i])) < min_gap:
                    continue
                times = times_of(trial)
                if not bool((times[1:] < times[:-1]).all()):
                    continue                     # rounding collapsed two times: not a grid
                value = distance(times)
                if value < best:
                    best, lam, moved = value, trial, True
        if moved:
            history.append(best)
        else:
            frac /= 2
            if frac < 1 / 64:
                break
    return times_of(lam), history


class GITS(TimeTensor):
    r"""A time grid fitted by GITS (Chen et al. 2024, see the module docstring); build it with
    :meth:`fit` and pass it as ``timesteps=`` to :func:`~sdekit.diffusion.sample` with any sampler.

    The grid keeps its times and their log-SNR values: with the schedule it was fitted on it returns
    the fitted times; with another schedule it returns the times of equal log-SNR (the
    probability-flow ODE of ``x / alpha`` in ``sigma / alpha`` is the same for every schedule), which
    must lie in that schedule's interval.

    Attributes:
        schedule: the schedule it was fitted on.
        indices: the chosen points of the fine grid, ``K + 1`` ints.
        fine_times: the fine grid, float64 ``(M + 1,)``.
        cost: the cost matrix ``c_ij``, float64 ``(M + 1, M + 1)`` (``inf`` for ``j <= i``).
        path_cost: the weighted cost of the chosen path (before any refinement).
        coeff: the weight per level of the chosen path.
        validation: with several ``coeff``: mean distance to the teacher's endpoints per weight.
        refinement: with ``refine``: the mean distance to the teacher's endpoints before and after
            each sweep that moved a point, ``[d_0, d_1, ...]`` (empty without refinement).
        fit_nfe: model calls the fit made (teacher, student and validation runs).
        teacher, student: the samplers used.
    """

    def __init__(self, times: torch.Tensor | Sequence[float], *, schedule: Schedule | None = None,
                 indices: Sequence[int] | None = None, fine_times: torch.Tensor | None = None,
                 cost: torch.Tensor | None = None, path_cost: float | None = None, fit_nfe: int | None = None,
                 teacher: Sampler | None = None, student: Sampler | None = None,
                 coeff: float | None = None) -> None:
        super().__init__(times)
        self.schedule = schedule
        self.indices = list(indices) if indices is not None else None
        self.fine_times = fine_times
        self.cost = cost
        self.path_cost = path_cost
        self.fit_nfe = fit_nfe
        self.teacher, self.student, self.coeff = teacher, student, coeff
        self.validation: dict[float, float] = {}
        self.refinement: list[float] = []
        self._log_snr = schedule.log_snr(self._times).to(torch.float64) if schedule is not None else None

    @property
    def steps(self) -> int:
        """Number of grid steps ``K``."""
        return self._times.numel() - 1

    @classmethod
    def fit(cls, model: Callable[..., torch.Tensor], schedule: Schedule, nfe: int, *,
            shape: int | Sequence[int] | None = None, x_T: torch.Tensor | None = None,
            teacher: str | Sampler | None = None, student: str | Sampler | None = None, fine_steps: int = 60,
            warmup: int = 256, rho: float = 7.0, fine_grid: str | TimeGrid | None = None,
            coeff: float | Sequence[float] = 1.15, sampler: str | Sampler | None = None, refine: int = 0,
            generator: torch.Generator | None = None, prediction: str | Prediction = "eps",
            model_kwargs: dict[str, Any] | None = None,
            time_input: Callable[[torch.Tensor], torch.Tensor] | None = None,
            t_start: float | None = None, t_end: float | None = None, batch_size: int | None = None,
            dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> GITS:
        r"""Fit a grid of ``K`` steps for a budget of ``nfe`` model calls of ``student``.

        Arguments:
            model: a network ``model(x, t)`` whose output ``prediction`` names, or a
                :class:`~sdekit.diffusion.Denoiser` (e.g. an oracle's ``as_denoiser(schedule)``).
            schedule: the :class:`~sdekit.diffusion.Schedule`.
            nfe: the budget; ``K`` is the largest number of steps with ``sampler.nfe(K) <= nfe``
                (``K = nfe`` for one-call samplers; ``K = (nfe + 1) // 2`` for EDM Heun).
            shape: the event shape of a sample (e.g. ``(2,)`` or ``(3, 32, 32)``); warm-up states are
                ``schedule.prior_sample((warmup, *shape), generator)``. Or give ``x_T``.
            x_T: the warm-up initial states ``(warmup, *event)`` at ``t_start`` (overrides ``shape``,
                ``warmup``, ``dtype`` and ``device``).
            teacher: a deterministic sampler (name or object) run on the fine grid; default
                ``PFODE("rk4")`` (4 model calls per fine step).
            student: a deterministic sampler whose one-step jumps are scored; default
                ``DDIM()`` (the first-order step of the paper's cost).
            fine_steps: steps of the fine grid ``M`` (default 60, i.e. 61 points), ``M >= K``.
            warmup: number of warm-up trajectories (default 256).
            rho: exponent of the fine Karras grid (default 7).
            fine_grid: another fine grid (a :class:`~sdekit.diffusion.TimeGrid` or name) instead of
                ``Karras(rho)``.
            coeff: cost weight per level (default 1.15, as the official code), or several weights: then
                each distinct path is run with ``sampler`` from the warm-up states and the one ending
                closest (mean L2) to the teacher's endpoints is kept (the official code writes out the
                paths of several weights, 0.8 to 1.2, for the user to choose from).
            sampler: the sampler the grid is for: it counts the steps that fit in ``nfe`` and, with several
                ``coeff`` or ``refine``, judges the grids (default: the student).
            refine: sweeps of the coordinate search that polishes the grid for ``sampler`` (default 0:
                the dynamic-programming grid as in the paper). Each sweep tries to move every
                interior time towards each neighbour by a fraction of the gap in log-SNR (1/2 at
                first, halved after a sweep without gain, stopping below 1/64; no step becomes
                shorter than 1/20 of the mean step) and keeps the moves that bring ``sampler``'s
                endpoints from the warm-up states closer to the teacher's.
            generator: seeds the warm-up states.
            prediction, model_kwargs, time_input: as for :func:`~sdekit.diffusion.sample`.
            t_start, t_end: ends of the grid (default ``schedule.t_max``, ``schedule.t_min``).
            batch_size: warm-up trajectories per teacher run (default: all at once); costs are
                accumulated over batches, so memory is ``(M + 1) * batch_size`` states.
            dtype, device: of the drawn warm-up states (default: torch's default dtype, CPU).

        Returns:
            the fitted :class:`GITS` grid (its attributes hold the cost matrix and the path).

        Raises:
            TypeError / ValueError for a wrong schedule, budget, sampler (stochastic samplers and
            samplers with a varying number of calls per step cannot be scored), shape or grid size.
        """
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must be a sdekit.diffusion.Schedule, got {type(schedule).__name__}")
        if isinstance(nfe, bool) or not isinstance(nfe, int) or nfe < 1:
            raise ValueError(f"nfe must be a positive int, got {nfe!r}")
        student = DDIM() if student is None else get_sampler(student)
        teacher = PFODE("rk4") if teacher is None else get_sampler(teacher)
        for role, s in (("student", student), ("teacher", teacher)):
            if s.stochastic:
                raise ValueError(f"the GITS {role} must be a deterministic (ODE) sampler, got {s!r}")
        counter = student if sampler is None else get_sampler(sampler)
        if counter.nfe(1) is None:
            raise ValueError(f"GITS counts the steps in nfe={nfe} with a sampler that makes a known number of "
                             f"model calls per step; got {counter!r}")
        if isinstance(fine_steps, bool) or not isinstance(fine_steps, int) or fine_steps < 1:
            raise ValueError(f"fine_steps must be a positive int, got {fine_steps!r}")

        def calls(k: int) -> int:
            c = counter.nfe(k)
            if c is None:
                raise ValueError(f"GITS counts the steps in nfe={nfe} with a sampler that makes a known number of "
                                 f"model calls per step; got {counter!r} (nfe({k}) is None)")
            return c

        steps = 0
        while steps < fine_steps and calls(steps + 1) <= nfe:
            steps += 1
        if steps == 0:
            raise ValueError(f"nfe={nfe} is less than one step of {counter!r} ({counter.nfe(1)} model calls)")
        if calls(steps + 1) <= nfe:
            raise ValueError(f"nfe={nfe} allows more steps than fine_steps={fine_steps}; raise fine_steps")
        coeffs = [coeff] if not isinstance(coeff, (list, tuple)) else list(coeff)
        if not coeffs:
            raise ValueError("coeff must be a positive number or a non-empty sequence of them")
        coeffs = [check_real("coeff", c, positive=True) for c in coeffs]
        if isinstance(refine, bool) or not isinstance(refine, int) or refine < 0:
            raise ValueError(f"refine must be a non-negative int (sweeps of the grid search), got {refine!r}")
        if x_T is None:
            if shape is None:
                raise ValueError("give the event shape (shape=(d,) or (C, H, W)) or the warm-up states x_T")
            if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 1:
                raise ValueError(f"warmup must be a positive int, got {warmup!r}")
            shape = (shape,) if isinstance(shape, int) else tuple(shape)
            x_T = schedule.prior_sample((warmup, *shape), generator, dtype=dtype, device=device)
        else:
            check_tensor("x_T", x_T, min_dim=1, finite=True)
        n = x_T.shape[0]
        if batch_size is None:
            batch_size = n
        elif isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
        fine_grid = Karras(rho) if fine_grid is None else get_time_grid(fine_grid)
        fine = fine_grid.times(schedule, fine_steps, t_start=t_start, t_end=t_end)
        times = fine.tolist()
        m = fine_steps
        denoiser = _Cached(as_denoiser(model, schedule, prediction, model_kwargs=model_kwargs,
                                       time_input=time_input))
        cost = torch.zeros(m + 1, m + 1, dtype=torch.float64)
        teacher_nfe = 0
        ends = []
        with torch.no_grad():
            for start in range(0, n, batch_size):
                xb = x_T[start:start + batch_size]
                _, info = sample(denoiser.denoiser, schedule, xb, solver=teacher, timesteps=fine,
                                 return_trajectory=True)
                teacher_nfe += info.nfe
                traj = info.trajectory
                assert traj is not None  # return_trajectory=True fills it
                ends.append(traj[-1])
                for i in range(m):
                    x_i = traj[i]
                    for j in range(i + 1, m + 1):
                        ctx = SamplerContext(denoiser=denoiser, schedule=schedule, times=[times[i], times[j]])
                        x_ij, _ = student.step(ctx, 0, times[i], times[j], x_i, student.init(ctx, x_i))
                        dist = (x_ij - traj[j]).reshape(x_i.shape[0], -1).to(torch.float64).norm(dim=1)
                        cost[i, j] += dist.sum().cpu()
        cost /= n
        cost[~torch.ones(m + 1, m + 1, dtype=torch.bool).triu(1)] = math.inf
        run_nfe = 0

        def distance(grid_times: torch.Tensor) -> float:
            """Mean L2 distance of ``counter``'s endpoints on ``grid_times`` to the teacher's."""
            nonlocal run_nfe
            total = 0.0
            with torch.no_grad():
                for b, start in enumerate(range(0, n, batch_size)):
                    x, info = sample(denoiser.denoiser, schedule, x_T[start:start + batch_size], solver=counter,
                                     timesteps=grid_times, return_info=True)
                    run_nfe += info.nfe
                    diff = (x - ends[b]).reshape(x.shape[0], -1).to(torch.float64)
                    total += float(diff.norm(dim=1).sum())
            return total / n

        paths: dict[tuple, list[float]] = {}
        for c in coeffs:
            paths.setdefault(tuple(gits_path(cost, steps, c)[0]), []).append(c)
        validation = {}
        if len(paths) > 1:
            for path, cs in paths.items():
                d = distance(fine[list(path)])
                validation.update({c: d for c in cs})
            chosen = min(coeffs, key=lambda c: (validation[c], coeffs.index(c)))
        else:
            chosen = coeffs[0]
        path, value = gits_path(cost, steps, chosen)
        grid_times, history = fine[path], []
        if refine and steps > 1:
            grid_times, history = _refine(grid_times, schedule, distance, refine)
        grid = cls(grid_times, schedule=schedule, indices=path, fine_times=fine, cost=cost, path_cost=value,
                   fit_nfe=teacher_nfe + denoiser.calls + run_nfe, teacher=teacher, student=student,
                   coeff=chosen)
        grid.validation = validation
        grid.refinement = history
        return grid

    def times(self, schedule: Schedule, steps: int | None = None, *, t_start: float | None = None,
              t_end: float | None = None) -> torch.Tensor:
        """The fitted times (``steps`` must be ``None`` or ``K``); for another schedule than the one
        fitted on, the times of equal log-SNR."""
        if steps is not None and steps != self.steps:
            raise ValueError(f"steps={steps} does not match the {self.steps} steps of this GITS grid; pass "
                             "steps=None or fit a grid for another budget")
        if t_start is not None or t_end is not None:
            raise ValueError("t_start / t_end do not apply to a fitted grid; pass them to GITS.fit")
        if self.schedule is None or self._log_snr is None or schedule is self.schedule:
            return self._times.clone()
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must be a sdekit.diffusion.Schedule, got {type(schedule).__name__}")
        ts = schedule.t_of_log_snr(self._log_snr).to(torch.float64)
        span = schedule.t_max - schedule.t_min
        lo, hi = float(ts.min()), float(ts.max())
        if lo < schedule.t_min - 1e-9 * span or hi > schedule.t_max + 1e-9 * span:
            raise ValueError(f"this GITS grid (fitted on {self.schedule!r}) maps to t in [{lo:.6g}, {hi:.6g}] on "
                             f"{schedule!r}, outside its interval [{schedule.t_min}, {schedule.t_max}]; "
                             "fit the grid on this schedule")
        return _check_decreasing(ts.clamp(schedule.t_min, schedule.t_max), "timesteps")

    def __repr__(self) -> str:
        ts = ", ".join(f"{t:.4g}" for t in self._times.tolist())
        return f"GITS(steps={self.steps}, times=[{ts}])"
