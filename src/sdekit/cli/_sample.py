"""``sdekit sample``: draw samples from a checkpoint written by ``sdekit train`` or ``sdekit demo``."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..data import get_dataset
from ..train import CheckpointError, init_distributed, load_checkpoint, load_weights
from ._common import (
    SAMPLE_SUFFIXES,
    CLIError,
    nonnegative_int,
    positive_float,
    positive_int,
    save_samples,
    say,
)
from ._graphs import GRAPH_SOLVERS, is_graph_run, sample_graph_run
from ._recipes import SOLVERS, RunSpec, SpecError, build_model, build_sampler, default_steps


def add_parser(sub) -> None:
    p = sub.add_parser(
        "sample", help="draw samples from a trained checkpoint",
        description="Sample a checkpoint with the probability-flow ODE (default), DDIM or the reverse SDE "
        f"and write them to --out ({', '.join(SAMPLE_SUFFIXES)}). Sample i depends on (--seed, i) only, so "
        "under `torchrun --nproc_per_node=N -m sdekit sample ...` the ranks share the batches of the job and "
        "rank 0 writes exactly what one process writes.",
    )
    p.add_argument("--checkpoint", required=True, help="run directory written by `sdekit train`")
    p.add_argument("--n", type=positive_int, default=1000,
                   help="number of samples (default 1000; under torchrun write --num-samples, since torchrun "
                   "reads --n as an abbreviation of its own options)")
    p.add_argument("--num-samples", dest="n", type=positive_int, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.add_argument("--out", required=True, help="output file: .pt, .safetensors, .npy or .png")
    p.add_argument("--solver", choices=SOLVERS + GRAPH_SOLVERS, default=None,
                   help="sampler (default ode; graph models: s4 (default) or pc)")
    p.add_argument("--ode-method", default="dopri5",
                   help="core ODE method for --solver ode (dopri5, tsit5, bosh3, heun, euler, midpoint, rk4)")
    p.add_argument("--rtol", type=positive_float, default=1e-5, help="tolerance of adaptive ODE methods")
    p.add_argument("--steps", type=positive_int, help="grid steps (default: adaptive / 50 DDIM / 500 SDE)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the prior draw and sampler noise")
    p.add_argument("--class-label", type=nonnegative_int, help="class to draw (labelled data sets only)")
    p.add_argument("--weights", choices=("ema", "model"), default="ema", help="EMA (default) or raw weights")
    p.add_argument("--batch-size", type=positive_int, default=4096, help="samples per sampler call")
    p.add_argument("--device", default="cpu", help="device to sample on (default cpu)")
    p.add_argument("--threads", type=positive_int, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    p.set_defaults(func=run)


def load_run(directory: Path, which: str = "ema", device: str | torch.device = "cpu"):
    """Rebuild ``(spec, model, schedule)`` from a checkpoint written by ``sdekit train`` / ``demo``."""
    ckpt = load_checkpoint(directory)
    try:
        spec = RunSpec.from_dict(ckpt.metadata.get("run"))
        model = build_model(ckpt.metadata.get("model"))
    except (SpecError, TypeError) as e:
        raise CheckpointError(f"checkpoint {directory} holds an invalid run description: {e}") from None
    model = model.to(spec.torch_dtype)
    load_weights(model, directory, which=which)
    return spec, model.to(device).eval(), spec.build_schedule()


def draw(spec: RunSpec, model, schedule, n: int, *, solver: str = "ode", ode_method: str = "dopri5",
         rtol: float = 1e-5, steps: int | None = None, seed: int = 0, class_label: int | None = None,
         batch_size: int = 4096, progress: bool = False) -> tuple[torch.Tensor | None, int]:
    """Sample ``n`` points in batches of per-sample-seeded draws, sharded over the ranks of an initialised
    process group (:func:`sdekit.diffusion.sample_sharded`); returns ``(samples, model calls)``, the
    samples on rank 0 only (``None`` on the others) and the calls of all ranks."""
    import torch.distributed as dist

    from ..diffusion import gather_shards, sample_sharded

    info = get_dataset(spec.data)
    try:
        sampler = build_sampler(solver, ode_method, rtol)
    except (ValueError, TypeError) as e:
        raise CLIError(str(e)) from None
    steps = default_steps(solver, ode_method) if steps is None else steps
    device = next(model.parameters()).device
    kwargs: Callable[[torch.Tensor], dict[str, torch.Tensor]] | None = None
    if class_label is not None:
        label = class_label

        def class_kwargs(idx: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"class_labels": torch.full((idx.numel(),), label, dtype=torch.long, device=device)}

        kwargs = class_kwargs
    distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    with torch.no_grad():
        shard = sample_sharded(model, schedule, info.event_shape, n, seed=seed, batch_size=batch_size,
                               solver=sampler, steps=steps, prediction=spec.prediction_name, model_kwargs=kwargs,
                               denoise_final=solver == "euler-maruyama", dtype=spec.torch_dtype, device=device,
                               progress=progress and (not distributed or dist.get_rank() == 0))
    x = gather_shards(shard, n)
    nfe = shard.nfe
    if distributed:
        total = torch.tensor([nfe], dtype=torch.int64, device=device)
        dist.all_reduce(total)
        nfe = int(total.item())
    return x, nfe


def run(args) -> int:
    out = Path(args.out)
    if out.suffix.lower() not in SAMPLE_SUFFIXES:
        raise CLIError(f"--out must end in one of {', '.join(SAMPLE_SUFFIXES)}, got {args.out!r}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise CLIError(f"--device {args.device}: CUDA is not available on this machine")
    ctx = init_distributed(device=args.device)      # torchrun: one shard of the job per rank
    try:
        return _sample(args, out, ctx)
    finally:
        if ctx.distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _sample(args, out: Path, ctx) -> int:
    ckpt = load_checkpoint(Path(args.checkpoint))
    if is_graph_run(ckpt.metadata.get("run")):
        return sample_graph_run(args, ckpt, out, ctx) if ctx.is_main else 0
    if args.solver is None:
        args.solver = "ode"
    if args.solver in GRAPH_SOLVERS:
        raise CLIError(f"--solver {args.solver} is for graph models; this checkpoint is not one (use "
                       f"{', '.join(SOLVERS)})")
    spec, model, schedule = load_run(Path(args.checkpoint), args.weights, ctx.device)
    num_classes = get_dataset(spec.data).num_classes
    if args.class_label is not None and (num_classes is None or args.class_label >= num_classes):
        fits = "this data set has no labels" if num_classes is None else f"labels are 0..{num_classes - 1}"
        raise CLIError(f"--class-label {args.class_label} does not fit {spec.data!r}: {fits}")
    start = time.perf_counter()
    x, nfe = draw(spec, model, schedule, args.n, solver=args.solver, ode_method=args.ode_method,
                  rtol=args.rtol, steps=args.steps, seed=args.seed, class_label=args.class_label,
                  batch_size=args.batch_size, progress=args.progress)
    seconds = time.perf_counter() - start
    if not ctx.is_main:
        return 0
    assert x is not None  # the main rank holds the gathered samples
    save_samples(out, x, title=f"{spec.data}: {args.solver}")
    where = f", {ctx.world_size} processes" if ctx.distributed else ""
    say(f"wrote {x.shape[0]} samples of shape {tuple(x.shape[1:])} to {out} "
        f"(solver {args.solver}, {nfe} model calls, {seconds:.1f} s{where})")
    return 0
