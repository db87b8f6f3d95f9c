"""The training loop: AdamW, EMA, clipping, warmup, seeded data and noise, checkpoints and DDP."""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from .checkpoint import CheckpointError, _check_state_dict, load_checkpoint, save_checkpoint
from .distributed import DistributedContext, ShardedBatchSampler, derive_seed
from .ema import EMA

__all__ = ["TrainConfig", "Trainer", "LossFn"]

LossFn = Callable[..., torch.Tensor]
"""``loss_fn(model, x0, generator=None, model_kwargs=None) -> 0-d tensor`` (``x0`` a tensor batch, or a tuple
of them for tuple data)."""

# Settings that change the loss sequence; a resume with other values is warned about.
_TRAJECTORY_KEYS = ("batch_size", "lr", "weight_decay", "betas", "adam_eps", "warmup_steps", "lr_schedule",
                    "grad_clip", "ema_decay", "ema_warmup", "seed")


def _pos_int(name, v, allow_zero=False):
    low = 0 if allow_zero else 1
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ValueError(f"{name} must be an int >= {low}, got {v!r}")


@dataclass
class TrainConfig:
    """Settings of a training run (all JSON-serialisable; stored in every checkpoint).

    Attributes:
        steps: total number of optimiser steps.
        batch_size: global batch size (over all ranks and accumulation steps).
        lr: peak learning rate of AdamW.
        weight_decay: AdamW's decoupled weight decay.
        betas: AdamW's ``(beta1, beta2)``.
        adam_eps: AdamW's epsilon.
        warmup_steps: linear warmup ``lr * min(1, (step + 1) / warmup_steps)``.
        lr_schedule: ``"constant"`` after warmup, or ``"cosine"`` decay to zero at ``steps``.
        grad_clip: clip the global gradient norm to this value (``None``: no clipping).
        ema_decay: EMA decay (``None`` or 0: no EMA).
        ema_warmup: ramp the EMA decay up as ``min(decay, (1 + k) / (10 + k))``.
        accumulation_steps: micro-batches per rank and step (the global batch is split into
            ``world_size * accumulation_steps`` shards).
        seed: seeds the data order and the noise of every shard and step.
        checkpoint_every: save every this many steps when the trainer has an ``out_dir``.
        log_every: steps between progress-bar updates of the shown loss.
        progress: show a tqdm progress bar (rank 0 only).
    """

    steps: int = 1000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    warmup_steps: int = 0
    lr_schedule: str = "constant"
    grad_clip: float | None = 1.0
    ema_decay: float | None = 0.999
    ema_warmup: bool = True
    accumulation_steps: int = 1
    seed: int = 0
    checkpoint_every: int | None = None
    log_every: int = 50
    progress: bool = True

    def __post_init__(self):
        _pos_int("steps", self.steps, allow_zero=True)
        _pos_int("batch_size", self.batch_size)
        _pos_int("warmup_steps", self.warmup_steps, allow_zero=True)
        _pos_int("accumulation_steps", self.accumulation_steps)
        _pos_int("log_every", self.log_every)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"seed must be an int, got {self.seed!r}")
        if self.checkpoint_every is not None:
            _pos_int("checkpoint_every", self.checkpoint_every)
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        betas = tuple(self.betas)
        if len(betas) != 2 or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        self.betas = (float(betas[0]), float(betas[1]))
        if not (isinstance(self.adam_eps, (int, float)) and self.adam_eps > 0):
            raise ValueError(f"adam_eps must be positive, got {self.adam_eps!r}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        clip = self.grad_clip
        if clip is not None and not (isinstance(clip, (int, float)) and clip > 0):
            raise ValueError(f"grad_clip must be a positive number or None, got {self.grad_clip!r}")
        if self.ema_decay is not None and not (isinstance(self.ema_decay, (int, float))
                                               and 0 <= self.ema_decay < 1):
            raise ValueError(f"ema_decay must lie in [0, 1) or be None, got {self.ema_decay!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig keys {unknown}; known: {sorted(names)}")
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        return cls(**d)


def _check_data(data) -> int:
    """The number of examples in ``data``: a tensor ``(N, *event)`` or a tuple of tensors with one ``N``."""
    parts = (data,) if isinstance(data, torch.Tensor) else data
    if not isinstance(parts, (tuple, list)) or not parts or not all(isinstance(d, torch.Tensor) for d in parts):
        raise TypeError(f"data must be a tensor (N, *event) or a tuple of such tensors, got {type(data).__name__}")
    if any(d.dim() < 1 or d.shape[0] < 1 for d in parts):
        raise TypeError("data must be a tensor (N, *event) with N >= 1 (every tensor of a tuple)")
    lengths = [d.shape[0] for d in parts]
    if len(set(lengths)) != 1:
        raise ValueError(f"the tensors of tuple data must share their first dimension N; got lengths {lengths}")
    return lengths[0]


class Trainer:
    """Trains ``model`` by minimising ``loss_fn`` over ``data``, on one or many processes.

    Every step: set the learning rate (warmup, schedule); for each of this rank's shards of the
    global batch (see :class:`~sdekit.train.ShardedBatchSampler`) call
    ``loss_fn(model, x0, generator=g, model_kwargs=...)`` with a generator seeded from
    ``(seed, step, shard)``, and back-propagate; average gradients over shards (DDP averages over
    ranks), clip their global norm, take an AdamW step, update the EMA. With ``torch.distributed``
    initialised (e.g. under ``torchrun``) the model is wrapped in ``DistributedDataParallel``;
    with one process the same loop runs with world size 1.

    Randomness is seeded and private to the run: data order and loss noise are functions of
    ``(seed, step, shard)``, and whatever the model draws from torch's global generator (dropout)
    comes from the trainer's own per-rank stream, swapped in around each forward/backward, so the
    caller's global RNG neither disturbs nor is disturbed by training. The checkpoint holds the
    model, EMA, optimizer state, those RNG streams (every rank's), the step and the loss history,
    so a run resumed from a checkpoint continues bit for bit as the uninterrupted run would have.
    With ``W`` ranks and ``A`` accumulation steps the global batch is cut into ``W * A`` shards:
    ``torchrun`` with 2 ranks computes exactly what one process with ``accumulation_steps=2``
    computes (same data, same noise; gradients equal up to rounding).

    Arguments:
        model: the network (moved to the context's device).
        loss_fn: ``loss_fn(model, x0, generator=None, model_kwargs=None) -> 0-d tensor``; e.g.
            ``sdekit.diffusion.DenoisingScoreMatching(...)``.
        data: training data ``(N, *event)``, or a tuple of tensors that share ``N`` (e.g. graphs as
            ``(X, A, flags)``): a batch is then the tuple of the rows of each, passed to ``loss_fn`` as
            ``x0``; floating data take the model's dtype.
        config: a :class:`TrainConfig` (default settings if ``None``).
        labels: optional ``(N,)`` labels, passed as ``model_kwargs={label_key: labels[batch]}``.
        label_key: the model keyword for labels.
        out_dir: where checkpoints go (``checkpoint_every`` and at the end of :meth:`fit`).
        metadata: JSON-serialisable data stored in every checkpoint (e.g. how to rebuild the model).
        context: a :class:`~sdekit.train.DistributedContext` (default: the current process group
            or single process, on the model's device).

    Raises:
        TypeError / ValueError: a data tensor of the wrong kind or shape, labels of another length,
            a batch size not divisible by the shard count, a model without parameters.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        data: torch.Tensor | tuple[torch.Tensor, ...],
        config: TrainConfig | None = None,
        *,
        labels: torch.Tensor | None = None,
        label_key: str = "class_labels",
        out_dir: str | os.PathLike | None = None,
        metadata: dict[str, Any] | None = None,
        context: DistributedContext | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        params = list(model.parameters())
        if not params:
            raise ValueError("model has no parameters to train")
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
        if config is None:
            config = TrainConfig()
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        n_data = _check_data(data)
        self.config = config
        self.ctx = context if context is not None else DistributedContext.current(device=params[0].device)
        dtype = params[0].dtype
        model.to(self.ctx.device)

        def place(d: torch.Tensor) -> torch.Tensor:
            return (d.to(dtype) if d.is_floating_point() else d).to(self.ctx.device)

        self.data: torch.Tensor | tuple[torch.Tensor, ...] = (
            place(data) if isinstance(data, torch.Tensor) else tuple(place(d) for d in data))
        if labels is not None:
            if not isinstance(labels, torch.Tensor) or labels.shape != (n_data,):
                got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
                raise ValueError(f"labels must have shape ({n_data},) to match data, got {got}")
            labels = labels.to(self.ctx.device)
        self.labels = labels
        self.label_key = label_key
        self.loss_fn = loss_fn
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.metadata = dict(metadata) if metadata is not None else {}

        self.shards = self.ctx.world_size * config.accumulation_steps
        self.sampler = ShardedBatchSampler(n_data, config.batch_size, self.shards, config.seed)
        self.module = model
        if self.ctx.distributed:
            ids = [self.ctx.device.index] if self.ctx.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        else:
            self.model = model
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.lr, betas=config.betas, eps=config.adam_eps,
            weight_decay=config.weight_decay,
        )
        self.ema = EMA(model, config.ema_decay, warmup=config.ema_warmup) if config.ema_decay else None
        self.step = 0
        self.loss_history: list[float] = []
        self.train_seconds = 0.0
        self._checked_loss = False
        self._rng = self._initial_rng()

    # ----------------------------------------------------------------------------------------
    @property
    def ema_model(self) -> nn.Module:
        """The EMA copy of the model (the model itself when EMA is off), for sampling."""
        return self.ema.model if self.ema is not None else self.module

    def lr_at(self, step: int) -> float:
        """Learning rate of step ``step`` (warmup, then constant or cosine)."""
        c = self.config
        factor = 1.0
        if c.warmup_steps:
            factor = min(1.0, (step + 1) / c.warmup_steps)
        if c.lr_schedule == "cosine" and step >= c.warmup_steps:
            span = max(1, c.steps - c.warmup_steps)
            factor *= 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - c.warmup_steps) / span)))
        return c.lr * factor

    def _generator(self, step: int, shard: int) -> torch.Generator:
        g = torch.Generator(device=self.ctx.device)
        g.manual_seed(derive_seed(self.config.seed, step, shard))
        return g

    def _shard_loss(self, step: int, shard: int) -> torch.Tensor:
        idx = self.sampler.shard(step, shard).to(self.ctx.device)
        x0 = self.data[idx] if isinstance(self.data, torch.Tensor) else tuple(d[idx] for d in self.data)
        kwargs = {self.label_key: self.labels[idx]} if self.labels is not None else None
        loss = self.loss_fn(self.model, x0, generator=self._generator(step, shard), model_kwargs=kwargs)
        if not self._checked_loss:
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not loss.requires_grad:
                got = (f"tensor of shape {tuple(loss.shape)}, requires_grad={loss.requires_grad}"
                       if isinstance(loss, torch.Tensor) else type(loss).__name__)
                raise TypeError(f"loss_fn must return a scalar tensor that requires grad, got {got}")
            self._checked_loss = True
        return loss.reshape(())

    def train_step(self) -> float:
        """One optimiser step; returns the loss averaged over the global batch."""
        c, step = self.config, self.step
        lr = self.lr_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        total: torch.Tensor | None = None
        acc = c.accumulation_steps
        for micro in range(acc):
            shard = self.ctx.rank * acc + micro
            sync = micro == acc - 1 or not self.ctx.distributed
            model = self.model
            if not sync and isinstance(model, nn.parallel.DistributedDataParallel):
                ctx = model.no_sync()
            else:
                ctx = contextlib.nullcontext()
            with ctx, self._own_rng():
                loss = self._shard_loss(step, shard)
                loss.backward()
            total = loss.detach() if total is None else total + loss.detach()
        assert total is not None  # accumulation_steps >= 1 (checked by TrainConfig)
        if acc > 1:
            for p in self.module.parameters():
                if p.grad is not None:
                    p.grad.div_(acc)
            total = total / acc
        if self.ctx.distributed:
            dist.all_reduce(total)
            total = total / self.ctx.world_size
        value = float(total)
        if not math.isfinite(value):
            raise FloatingPointError(
                f"the training loss became {value} at step {step}; lower lr, set grad_clip or check the data"
            )
        if c.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.module.parameters(), c.grad_clip)
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.module)
        self.step += 1
        self.loss_history.append(value)
        return value

    def fit(self, steps: int | None = None) -> list[float]:
        """Train until ``steps`` optimiser steps in total (default ``config.steps``).

        Saves a checkpoint every ``checkpoint_every`` steps and at the end when ``out_dir`` is set.

        Returns:
            The loss history of the whole run (including steps before a resume).

        Raises:
            FloatingPointError: the loss became NaN or infinite.
        """
        target = self.config.steps if steps is None else steps
        _pos_int("steps", target, allow_zero=True)
        from tqdm.auto import tqdm

        show = self.config.progress and self.ctx.is_main
        bar = tqdm(total=target, initial=min(self.step, target), desc="train", disable=not show,
                   dynamic_ncols=True, leave=False, mininterval=0.5)
        self.module.train()
        start = time.perf_counter()
        last_saved = None
        try:
            while self.step < target:
                self.train_step()
                bar.update(1)
                if self.step % self.config.log_every == 0:
                    recent = self.loss_history[-self.config.log_every:]
                    bar.set_postfix(loss=f"{sum(recent) / len(recent):.4f}")
                every = self.config.checkpoint_every
                if self.out_dir is not None and every and self.step % every == 0:
                    self.save_checkpoint()
                    last_saved = self.step
        finally:
            bar.close()
            self.train_seconds += time.perf_counter() - start
        if self.out_dir is not None and last_saved != self.step:
            self.save_checkpoint()
        return list(self.loss_history)

    # ----------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _own_rng(self):
        """Swap in the trainer's own global RNG streams (used by dropout and the like) for a step,
        so a run is seeded without disturbing, or being disturbed by, the caller's global RNG."""
        saved = torch.get_rng_state()
        torch.set_rng_state(self._rng["cpu"])
        cuda = self.ctx.device.type == "cuda"
        if cuda:
            saved_cuda = torch.cuda.get_rng_state(self.ctx.device)
            torch.cuda.set_rng_state(self._rng["cuda"], self.ctx.device)
        try:
            yield
        finally:
            self._rng["cpu"] = torch.get_rng_state()
            torch.set_rng_state(saved)
            if cuda:
                self._rng["cuda"] = torch.cuda.get_rng_state(self.ctx.device)
                torch.cuda.set_rng_state(saved_cuda, self.ctx.device)

    def _initial_rng(self) -> dict[str, torch.Tensor]:
        seed = derive_seed(self.config.seed, 0x5EED, self.ctx.rank)
        rng = {"cpu": torch.Generator().manual_seed(seed).get_state()}
        if self.ctx.device.type == "cuda":
            rng["cuda"] = torch.Generator(device=self.ctx.device).manual_seed(seed).get_state()
        return rng

    def _gather_rng(self) -> dict[str, list[torch.Tensor]]:
        """The RNG states of every rank (a collective under DDP)."""
        out = {}
        for key, state in self._rng.items():
            if self.ctx.distributed:
                dev = self.ctx.device if dist.get_backend() == "nccl" else torch.device("cpu")
                gathered = [torch.empty_like(state, device=dev) for _ in range(self.ctx.world_size)]
                dist.all_gather(gathered, state.to(dev))
                out[key] = [g.cpu() for g in gathered]
            else:
                out[key] = [state]
        return out

    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs (model, EMA, optimizer, RNG states, step, loss history)."""
        return {
            "step": self.step,
            "model": self.module.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "rng": self._gather_rng(),
            "loss_history": torch.tensor(self.loss_history, dtype=torch.float64),
            "train_seconds": self.train_seconds,
        }

    def save_checkpoint(self, directory: str | os.PathLike | None = None) -> Path | None:
        """Write a checkpoint (rank 0 writes, all ranks wait); returns the JSON path on rank 0.

        Raises:
            ValueError: neither ``directory`` nor the trainer's ``out_dir`` is set.
        """
        directory = Path(directory) if directory is not None else self.out_dir
        if directory is None:
            raise ValueError("save_checkpoint needs a directory (or build the Trainer with out_dir=...)")
        state = self.state_dict()  # collective under DDP: every rank takes part
        path = None
        if self.ctx.is_main:
            meta = {"train_config": self.config.to_dict(), "world_size": self.ctx.world_size,
                    "shards": self.shards, **self.metadata}
            path = save_checkpoint(directory, state, step=self.step, metadata=meta)
        if self.ctx.distributed:
            dist.barrier()
        return path

    def load_checkpoint(self, directory: str | os.PathLike) -> None:
        """Restore a checkpoint written by :meth:`save_checkpoint` and continue from its step.

        Raises:
            CheckpointError: missing, corrupt or tampered files, or tensors that do not fit this
                model (named with their shapes).
        """
        ckpt = load_checkpoint(directory)
        st = ckpt.state
        for key in ("step", "model", "optimizer", "rng", "loss_history"):
            if key not in st:
                raise CheckpointError(f"corrupt checkpoint {ckpt.directory}: the state lacks {key!r}")
        _check_state_dict(ckpt.directory, "model", st["model"], self.module.state_dict())
        if (st["ema"] is None) != (self.ema is None):
            raise CheckpointError(
                f"checkpoint {ckpt.directory} was trained {'without' if st['ema'] is None else 'with'} EMA, "
                f"but this trainer has ema_decay={self.config.ema_decay}"
            )
        if self.ema is not None:
            _check_state_dict(ckpt.directory, "ema", st["ema"]["model"], self.ema.model.state_dict())
        self._check_optimizer(ckpt.directory, st["optimizer"])
        history = st["loss_history"]
        if not isinstance(history, torch.Tensor) or history.shape != (st["step"],):
            raise CheckpointError(
                f"corrupt checkpoint {ckpt.directory}: loss_history does not have one entry per step"
            )
        old = ckpt.metadata.get("train_config", {})
        new = self.config.to_dict()
        changed = [k for k in _TRAJECTORY_KEYS if k in old and old[k] != new[k]]
        if ckpt.metadata.get("shards", self.shards) != self.shards:
            changed.append("world_size * accumulation_steps")
        if changed:
            warnings.warn(
                f"resuming {ckpt.directory} with other settings ({', '.join(changed)}): the run will not "
                "repeat the uninterrupted loss sequence",
                stacklevel=2,
            )
        self.module.load_state_dict(st["model"])
        if self.ema is not None:
            self.ema.load_state_dict(st["ema"])
        self.optimizer.load_state_dict(st["optimizer"])
        self._set_rng(ckpt.directory, st["rng"])
        self.step = int(st["step"])
        self.loss_history = history.tolist()
        self.train_seconds = float(st.get("train_seconds", 0.0))

    def _set_rng(self, where, rng) -> None:
        if not isinstance(rng, dict) or not isinstance(rng.get("cpu"), list):
            raise CheckpointError(f"corrupt checkpoint {where}: RNG states are malformed")
        for key in self._rng:
            states = rng.get(key)
            if isinstance(states, list) and len(states) == self.ctx.world_size:
                state = states[self.ctx.rank]
                if not isinstance(state, torch.Tensor) or state.dtype != torch.uint8:
                    raise CheckpointError(f"corrupt checkpoint {where}: RNG state {key!r} is not bytes")
                self._rng[key] = state.clone()

    def _check_optimizer(self, where, state) -> None:
        if not isinstance(state, dict) or "state" not in state or "param_groups" not in state:
            raise CheckpointError(f"corrupt checkpoint {where}: optimizer state is malformed")
        params = list(self.module.parameters())
        n_saved = sum(len(g.get("params", [])) for g in state["param_groups"])
        if n_saved != len(params):
            raise CheckpointError(
                f"checkpoint {where} has optimizer state of {n_saved} parameters, the model has {len(params)}"
            )
        for idx, s in state["state"].items():
            if not isinstance(idx, int) or not 0 <= idx < len(params):
                raise CheckpointError(f"corrupt checkpoint {where}: optimizer state of parameter {idx!r}")
            for name in ("exp_avg", "exp_avg_sq"):
                t = s.get(name)
                if not isinstance(t, torch.Tensor) or t.shape != params[idx].shape:
                    got = tuple(t.shape) if isinstance(t, torch.Tensor) else t
                    raise CheckpointError(
                        f"checkpoint {where}: optimizer {name} of parameter {idx} is {got}, "
                        f"expected shape {tuple(params[idx].shape)}"
                    )
