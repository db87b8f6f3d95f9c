r"""Sharded sampling: split a large sampling job over processes (e.g. ``torchrun`` ranks) so that the
union of the shards is exactly what one process draws.

Sample ``i`` of a job with seed ``s`` depends on ``(s, i)`` only:

* its initial state ``x_T`` is a counter-based normal draw keyed by a per-sample seed
  ``mix(s, i, 0)`` (scaled by the schedule's ``prior_std``);
* a stochastic sampler's Brownian increment over grid step ``k`` is keyed by ``(mix(s, i, 1), k)``; a
  sampler that draws noise on ``m = noise_substeps`` sub-intervals of each step (e.g.
  :class:`~sdekit.diffusion.PredictorCorrector`) gets the increment over sub-interval ``j`` of step
  ``k`` keyed by ``(mix(s, i, 1), k m + j)`` (the same as whole steps for ``m = 1``).

The job is cut into global batches ``[b B, (b + 1) B)`` and rank ``r`` of ``W`` runs the batches with
``b mod W = r``, so every batch is computed with the same inputs and the same shapes whatever ``W``
is: the union of the shards equals a single-process run bit for bit, for any model (batched linear
algebra is deterministic for a fixed shape on a fixed device).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch

from ..core.noise import mix64, standard_normal
from .prediction import Prediction
from .samplers import Sampler, get_sampler, sample
from .samplers.base import substep_edges
from .schedules import Schedule
from .timesteps import TimestepsLike, resolve_timesteps

__all__ = ["sample_sharded", "gather_shards", "Shard", "per_sample_seeds"]

_X_T, _NOISE = 0, 1


def per_sample_seeds(seed: int, indices: torch.Tensor, stream: int = _X_T) -> torch.Tensor:
    """One 63-bit seed per global sample index: ``mix64(seed, index, stream)``, int64 ``(len,)``."""
    return torch.tensor([mix64(seed, int(i), stream) for i in indices.tolist()], dtype=torch.int64)


class _StepNoise:
    """Brownian increments on a fixed grid, keyed by (per-sample seed, step): ``bm(t_k, t_{k+1})``, or by
    (per-sample seed, step, sub-step) on the ``substeps`` equal sub-intervals of every step that a sampler
    with ``noise_substeps = substeps`` asks for (:func:`~sdekit.diffusion.samplers.base.substep_edges`).

    Unlike a chunked grid source, the numbers for sample ``b`` and step ``k`` do not depend on the batch
    size or on which other steps were drawn."""

    def __init__(self, times: torch.Tensor, shape, seeds: torch.Tensor, dtype, device, substeps: int = 1) -> None:
        grid = times.tolist()
        self.substeps = substeps
        self.counter_of = {}
        for k, (t0, t1) in enumerate(zip(grid[:-1], grid[1:])):
            edges = substep_edges(t0, t1, substeps)
            for j in range(substeps):
                self.counter_of[(edges[j], edges[j + 1])] = k * substeps + j
        self.shape, self.seeds, self.dtype, self.device = tuple(shape), seeds, dtype, device

    def __call__(self, ta, tb):
        key = (float(ta), float(tb))
        counter = self.counter_of.get(key)
        if counter is None:
            what = ("grid step" if self.substeps == 1
                    else f"one of the {self.substeps} equal sub-intervals of a grid step")
            raise ValueError(f"sharded sampling draws noise per {what} (the sampler's noise_substeps); got an "
                             f"increment over {key}, which is none of them")
        z = standard_normal(self.seeds, counter + 1, self.shape, self.dtype, self.device)
        return z * math.sqrt(abs(key[1] - key[0]))


class Shard(NamedTuple):
    """One rank's part of a sharded job: global ``indices`` ``(m,)``, ``samples`` ``(m, *shape)`` and
    the model calls made (``nfe``)."""

    indices: torch.Tensor
    samples: torch.Tensor
    nfe: int


def _dist_info(rank, world_size) -> tuple[int, int]:
    initialised = torch.distributed.is_available() and torch.distributed.is_initialized()
    if world_size is None:
        world_size = torch.distributed.get_world_size() if initialised else 1
    if rank is None:
        rank = torch.distributed.get_rank() if initialised else 0
    for name, v in (("rank", rank), ("world_size", world_size)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return rank, world_size


def sample_sharded(model: Callable[..., torch.Tensor], schedule: Schedule, shape: int | Sequence[int], n: int, *,
                   seed: int = 0, rank: int | None = None, world_size: int | None = None, batch_size: int = 1024,
                   solver: str | Sampler = "ddim", steps: int | None = None, timesteps: TimestepsLike = None,
                   prediction: str | Prediction = "eps", denoise_final: bool = False,
                   model_kwargs: dict[str, Any] | Callable[[torch.Tensor], dict[str, Any]] | None = None,
                   time_input: Callable[[torch.Tensor], torch.Tensor] | None = None,
                   dtype: torch.dtype | None = None, device: torch.device | str | None = None,
                   progress: bool = False) -> Shard:
    r"""Draw this rank's share of ``n`` samples, each determined by ``(seed, index)`` alone.

    Arguments:
        model, schedule, solver, steps, timesteps, prediction, denoise_final, time_input, progress: as
            :func:`~sdekit.diffusion.sample` (one ``sample`` call per batch).
        shape: the event shape of one sample, e.g. ``(2,)`` or ``(1, 8, 8)``.
        n: the size of the whole job.
        seed: the job's seed.
        rank, world_size: this process and the number of processes (default: from the initialised
            ``torch.distributed`` process group, else ``0`` and ``1``).
        batch_size: size of the global batches (the same on every rank and in a single-process run).
        model_kwargs: a dict for every call, or ``model_kwargs(indices) -> dict`` for a batch with those
            global indices (e.g. class labels per sample).
        dtype, device: of the samples (default: torch's default dtype, CPU).

    Returns:
        :class:`Shard` ``(indices, samples, nfe)``; join the shards with :func:`gather_shards`.

    Raises:
        TypeError / ValueError for a wrong size, seed, rank or batch size, and what ``sample`` raises.
    """
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule must be a sdekit.diffusion.Schedule, got {type(schedule).__name__}")
    for name, v in (("n", n), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    rank, world_size = _dist_info(rank, world_size)
    shape = (shape,) if isinstance(shape, int) else tuple(int(s) for s in shape)
    dtype = dtype or torch.get_default_dtype()
    device = torch.device(device) if device is not None else torch.device("cpu")
    sampler = get_sampler(solver)
    times = None
    if sampler.stochastic:
        times = resolve_timesteps(timesteps, schedule, steps)
    out_idx, out_x, nfe = [], [], 0
    for b in range(rank, math.ceil(n / batch_size), world_size):
        idx = torch.arange(b * batch_size, min((b + 1) * batch_size, n))
        seeds = per_sample_seeds(seed, idx, _X_T)
        x_T = standard_normal(seeds, 0, (idx.numel(), *shape), dtype, device) * schedule.prior_std
        bm = None
        if times is not None:
            bm = _StepNoise(times, x_T.shape, per_sample_seeds(seed, idx, _NOISE), dtype, device,
                            sampler.noise_substeps)
        kwargs = model_kwargs(idx) if callable(model_kwargs) else model_kwargs
        x, info = sample(model, schedule, x_T, solver=sampler, steps=steps, timesteps=timesteps,
                         prediction=prediction, denoise_final=denoise_final, bm=bm, progress=progress,
                         model_kwargs=kwargs, time_input=time_input, return_info=True)
        out_idx.append(idx)
        out_x.append(x)
        nfe += info.nfe
    if not out_x:
        empty = torch.empty((0, *shape), dtype=dtype, device=device)
        return Shard(torch.empty(0, dtype=torch.int64), empty, 0)
    return Shard(torch.cat(out_idx), torch.cat(out_x), nfe)


def _assemble(parts, n: int) -> torch.Tensor:
    idx = torch.cat([p[0] for p in parts])
    xs = torch.cat([p[1].cpu() for p in parts])
    if idx.numel() != n or not bool(torch.equal(torch.sort(idx).values, torch.arange(n))):
        raise ValueError(f"the shards hold {idx.numel()} samples that do not cover indices 0..{n - 1} exactly "
                         "once; did every rank use the same n, batch_size and world_size?")
    out = torch.empty_like(xs)
    out[idx] = xs
    return out


def gather_shards(shard: Shard, n: int, *, dst: int = 0) -> torch.Tensor | None:
    """Join the ranks' shards in index order: ``(n, *shape)`` on rank ``dst``, ``None`` on the others.

    A collective call when a ``torch.distributed`` process group with several ranks is initialised
    (every rank must call it; objects travel through ``gather_object``, so any backend works); without
    one, the single shard must already hold every sample.
    """
    if not isinstance(shard, Shard):
        raise TypeError(f"shard must be what sample_sharded returns, got {type(shard).__name__}")
    initialised = torch.distributed.is_available() and torch.distributed.is_initialized()
    if not initialised or torch.distributed.get_world_size() == 1:
        return _assemble([(shard.indices, shard.samples)], n)
    rank = torch.distributed.get_rank()
    parts = [None] * torch.distributed.get_world_size() if rank == dst else None
    torch.distributed.gather_object((shard.indices, shard.samples.cpu()), parts, dst=dst)
    if rank != dst:
        return None
    return _assemble(parts, n).to(shard.samples.device)
