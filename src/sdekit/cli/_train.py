"""``sdekit train``: train a model on an embedded data set; one process or many under torchrun."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .. import __version__
from ..data import dataset_names, get_dataset, load_dataset
from ..train import CHECKPOINT_JSON, CheckpointError, TrainConfig, Trainer, init_distributed, load_checkpoint
from ._common import (
    CLIError,
    fit_and_report,
    nonnegative_int,
    parse_number,
    positive_float,
    positive_int,
    say,
    start_run,
)
from ._graphs import GRAPH_DATA, GRAPH_TRAIN_DEFAULTS, is_graph_run, train_graphs
from ._recipes import DTYPES, MODELS, PREDICTIONS_FOR, SCHEDULES, RunSpec, SpecError

_RUN_FLAGS = ("data", "n_train", "data_seed", "schedule", "prediction", "model", "width", "depth", "dtype")
_TRAIN_FLAGS = ("batch_size", "lr", "weight_decay", "warmup_steps", "lr_schedule", "grad_clip", "ema_decay",
                "accumulation_steps", "seed")
_RESUMABLE = ("steps", "checkpoint_every", "log_every")


def _unit_interval(text: str) -> float:
    return parse_number(text, float, lambda v: 0.0 <= v < 1.0, "a number in [0, 1)")


def _nonnegative_float(text: str) -> float:
    return parse_number(text, float, lambda v: 0.0 <= v < float("inf"), "a finite number >= 0")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train", help="train a diffusion / flow model on an embedded data set",
        description="Train a model and write a checkpoint (safetensors + JSON) and config.json to --out. "
        "Under `torchrun --nproc_per_node=N -m sdekit train ...` the same run uses DDP over N processes "
        "(gloo on CPU, nccl on GPU); --batch-size is the global batch.",
    )
    predictions = sorted({p for ps in PREDICTIONS_FOR.values() for p in ps})
    g = p.add_argument_group("what to train (defaults: moons, vp, eps, an MLP 128x3, float32)")
    g.add_argument("--data", choices=dataset_names() + list(GRAPH_DATA),
                   help="data set (community_small, ego_small, grid: a GDSS graph model)")
    g.add_argument("--n-train", type=positive_int, help="training samples (default: all / 10000 for toys)")
    g.add_argument("--data-seed", type=nonnegative_int, help="seed of the toy data draw (default 0)")
    g.add_argument("--schedule", choices=SCHEDULES, help="noise schedule / interpolant (default vp)")
    g.add_argument("--prediction", choices=predictions, help="network parameterisation (default by schedule)")
    g.add_argument("--model", choices=MODELS, help="network (default auto: MLP for vectors, UNet for images)")
    g.add_argument("--width", type=positive_int, help="MLP width or UNet base channels")
    g.add_argument("--depth", type=positive_int, help="MLP blocks or UNet levels")
    g.add_argument("--dtype", choices=sorted(DTYPES), help="parameter dtype (default float32)")
    t = p.add_argument_group("optimisation (defaults from sdekit.train.TrainConfig)")
    t.add_argument("--steps", type=positive_int, help="total optimiser steps (default 2000)")
    t.add_argument("--batch-size", type=positive_int, help="global batch size (default 512)")
    t.add_argument("--lr", type=positive_float, help="peak learning rate (default 2e-3)")
    t.add_argument("--weight-decay", type=_nonnegative_float)
    t.add_argument("--warmup-steps", type=nonnegative_int)
    t.add_argument("--lr-schedule", choices=("constant", "cosine"))
    t.add_argument("--grad-clip", type=_nonnegative_float, help="global norm clip (0: off; default 1)")
    t.add_argument("--ema-decay", type=_unit_interval, help="EMA decay (0: off; default 0.999)")
    t.add_argument("--accumulation-steps", type=positive_int)
    t.add_argument("--seed", type=nonnegative_int, help="seeds weights, data order and noise (default 0)")
    t.add_argument("--checkpoint-every", type=positive_int, help="also save every N steps")
    t.add_argument("--log-every", type=positive_int, help=argparse.SUPPRESS)
    r = p.add_argument_group("output")
    r.add_argument("--out", required=True, help="run directory (checkpoint, config.json)")
    r.add_argument("--resume", action="store_true", help="continue the run in --out (bit for bit)")
    r.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda:LOCAL_RANK if available)")
    r.add_argument("--threads", type=positive_int, help="torch intra-op threads (default: torch's choice)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


# Demo-tuned defaults that differ from TrainConfig's generic ones.
_CLI_TRAIN_DEFAULTS = dict(steps=2000, batch_size=512, lr=2e-3, warmup_steps=100, lr_schedule="cosine")


def _train_config(args, stored: dict | None, defaults: dict[str, Any] | None = None) -> TrainConfig:
    d: dict[str, Any]
    if stored is not None:
        d = dict(stored)
    else:
        d = dict(_CLI_TRAIN_DEFAULTS if defaults is None else defaults)
        for k in _TRAIN_FLAGS:
            v = getattr(args, k)
            if v is not None:
                d[k] = v
        if d.get("grad_clip") == 0:
            d["grad_clip"] = None
        if d.get("ema_decay") == 0:
            d["ema_decay"] = None
    for k in _RESUMABLE:
        v = getattr(args, k)
        if v is not None:
            d[k] = v
    d["progress"] = not args.no_progress
    try:
        return TrainConfig.from_dict(d)
    except (TypeError, ValueError) as e:
        raise CLIError(str(e)) from None


def run(args) -> int:
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    out = Path(args.out)
    stored_run = stored_train = None
    if args.resume:
        given = [k for k in _RUN_FLAGS + _TRAIN_FLAGS if getattr(args, k) is not None]
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise CLIError(f"--resume continues with the settings stored in {out}; drop {flags}")
        ckpt = load_checkpoint(out)
        stored_run = ckpt.metadata.get("run")
        stored_train = ckpt.metadata.get("train_config")
        if not isinstance(stored_train, dict) or not isinstance(stored_run, dict):
            raise CheckpointError(f"checkpoint {out} was not written by `sdekit train` (no run description)")
        stored_train = {k: v for k, v in stored_train.items() if k != "progress"}
    elif (out / CHECKPOINT_JSON).exists():
        raise CLIError(f"{out} already holds a checkpoint; pass --resume to continue or choose another --out")
    elif out.exists() and not out.is_dir():
        raise CLIError(f"--out {str(out)!r} exists and is not a directory")

    if is_graph_run(stored_run) or (stored_run is None and args.data in GRAPH_DATA):
        config = _train_config(args, stored_train, GRAPH_TRAIN_DEFAULTS)
        ctx = init_distributed(device=args.device)
        try:
            return train_graphs(args, stored_run, config, ctx, out, args.resume)
        finally:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                dist.destroy_process_group()
    try:
        if stored_run is not None:
            spec = RunSpec.from_dict(stored_run)
        else:
            spec = RunSpec(**{k: getattr(args, k) for k in _RUN_FLAGS if getattr(args, k) is not None})
    except SpecError as e:
        if stored_run is not None:
            raise CheckpointError(f"checkpoint {out} holds an invalid run description: {e}") from None
        raise
    config = _train_config(args, stored_train)
    if args.device is not None and args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise CLIError(f"--device {args.device}: CUDA is not available on this machine")
    ctx = init_distributed(device=args.device)
    try:
        return _train(spec, config, ctx, out, args.resume)
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def _train(spec: RunSpec, config: TrainConfig, ctx, out: Path, resume: bool) -> int:
    x, labels = load_dataset(spec.data, "train", n=spec.n_train, seed=spec.data_seed, dtype=spec.torch_dtype)
    if get_dataset(spec.data).num_classes is None:
        labels = None
    model = spec.build_model(seed=config.seed)
    schedule = spec.build_schedule()
    loss = spec.build_loss(schedule)
    metadata = {"sdekit_version": __version__, "run": spec.to_dict(), "model": spec.model_config()}
    trainer = Trainer(model, loss, x, config, labels=labels, out_dir=out, metadata=metadata, context=ctx)
    doc = {"sdekit_version": __version__, "run": spec.to_dict(), "model": spec.model_config(),
           "train": config.to_dict(), "world_size": ctx.world_size}
    start_run(trainer, out, resume, ctx.is_main, doc)
    if ctx.is_main:
        n_params = sum(p.numel() for p in model.parameters())
        where = f"{ctx.world_size} processes" if ctx.distributed else str(ctx.device)
        say(f"sdekit train: {spec.describe()}, {n_params:,} parameters, {x.shape[0]} samples, on {where}; "
            f"steps {trainer.step} -> {config.steps}")
    return fit_and_report(trainer, out, ctx.is_main)
