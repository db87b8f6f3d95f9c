"""``sdekit demo``: train on an embedded 2-D data set, sample, and measure against the noise floor.

The core is :func:`run_demo`, which the command and the tests call: train an MLP on ``moons`` (or
another toy) under the VP schedule, sample it with the probability-flow ODE (and, for
comparison, DDIM and the reverse SDE), and report the sliced Wasserstein-2 distance of each
sample set to held-out data beside the *noise floor*: the distance between two independent
held-out sets of the same size, which no model can beat on average.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..data import TOYS, load_dataset
from ..metrics import noise_floor, sliced_wasserstein
from ..train import TrainConfig, Trainer
from ._common import CLIError, nonnegative_int, positive_int, say
from ._recipes import RunSpec

__all__ = ["run_demo", "DemoResult", "DemoRow", "DEMO_SAMPLERS"]

# name -> (label, solver, ode method, steps); the ODE runs adaptively with rtol = atol = 1e-4.
DEMO_SAMPLERS = {
    "ode": ("probability-flow ODE (dopri5, tol 1e-4)", "ode", "dopri5", None),
    "ddim": ("DDIM (50 steps)", "ddim", None, 50),
    "sde": ("reverse SDE, Euler-Maruyama (500 steps)", "euler-maruyama", None, 500),
}


@dataclass
class DemoRow:
    """One line of the quality table."""

    name: str
    nfe: int | None
    sw2: float
    ratio: float
    seconds: float


@dataclass
class DemoResult:
    """What :func:`run_demo` measured and wrote."""

    data: str
    steps: int
    n_eval: int
    floor: float
    floor_std: float
    rows: list[DemoRow]
    train_seconds: float
    total_seconds: float
    final_loss: float
    files: list[str] = field(default_factory=list)

    def row(self, key: str) -> DemoRow:
        """The row of a sampler key of :data:`DEMO_SAMPLERS` (or ``"prior"``)."""
        label = DEMO_SAMPLERS[key][0] if key in DEMO_SAMPLERS else key
        for r in self.rows:
            if r.name == label or (key == "prior" and r.name.startswith("prior")):
                return r
        raise KeyError(key)

    def table(self) -> str:
        """The quality table as text."""
        head = f"{'sample set':<42}{'NFE':>6}{'SW2 to held-out':>18}{'/ floor':>9}{'time':>8}"
        lines = [head, "-" * len(head)]
        floor_text = f"{self.floor:.4f} ± {self.floor_std:.4f}"
        lines.append(f"{'held-out noise floor (n=' + str(self.n_eval) + ')':<42}{'-':>6}{floor_text:>18}"
                     f"{1.0:>9.2f}{'':>8}")
        for r in self.rows:
            nfe = "-" if r.nfe is None else str(r.nfe)
            lines.append(f"{r.name:<42}{nfe:>6}{r.sw2:>18.4f}{r.ratio:>9.2f}{r.seconds:>7.1f}s")
        return "\n".join(lines)


def _sw2_to_heldout(x: torch.Tensor, held: torch.Tensor, n: int, repeats: int, seed: int) -> float:
    """Mean SW2 of ``x`` to the same random held-out subsets the noise floor uses as its first sets."""
    g = torch.Generator().manual_seed(seed)
    vals = []
    for _ in range(repeats):
        idx = torch.randperm(held.shape[0], generator=g)[: 2 * n]
        vals.append(float(sliced_wasserstein(x, held[idx[:n]])))
    return sum(vals) / len(vals)


def run_demo(
    out_dir: str | Path | None = "outputs/demo",
    *,
    data: str = "moons",
    steps: int = 2000,
    n_eval: int = 2000,
    samplers: tuple[str, ...] = ("ode", "ddim", "sde"),
    seed: int = 0,
    width: int = 128,
    depth: int = 3,
    batch_size: int = 512,
    lr: float = 2e-3,
    repeats: int = 10,
    plots: bool = True,
    progress: bool = True,
    verbose: bool = True,
    threads: int | None = 1,
) -> DemoResult:
    """Train, sample and measure one small model on a 2-D toy data set.

    Arguments:
        out_dir: where the checkpoint, ``results.json`` and the PNG plots go (``None``: write nothing).
        data: a 2-D toy (``moons``, ``checkerboard``, ``spirals``, ``eight_gaussians``, ``rings``).
        steps: training steps (AdamW, EMA 0.999, warmup then cosine decay).
        n_eval: samples per set for the metric (the held-out split holds 10,000).
        samplers: keys of :data:`DEMO_SAMPLERS` to run.
        seed: seeds the weights, the data order, the training noise and the samplers.
        width, depth: MLP size.
        batch_size, lr: optimisation.
        repeats: held-out subsets averaged for the floor and the model's distance.
        plots: write ``samples.png`` and ``loss.png``.
        progress: show progress bars.
        verbose: print the table.
        threads: torch intra-op threads during the run (restored afterwards; ``None``: leave as is).
            One thread is as fast as two for this small MLP and does not collapse when the cores
            are shared with other work.

    Returns:
        A :class:`DemoResult`.

    Raises:
        ValueError: an unknown data set or sampler key, ``n_eval`` above 5,000.
    """
    if data not in TOYS:
        toys = ", ".join(sorted(TOYS))
        raise CLIError(f"the demo runs on a 2-D toy; data must be one of {toys}, got {data!r}")
    unknown = [s for s in samplers if s not in DEMO_SAMPLERS]
    if unknown:
        raise CLIError(f"unknown demo samplers {unknown}; choose from {', '.join(DEMO_SAMPLERS)}")
    if not 1 <= n_eval <= 5000:
        raise CLIError(f"n_eval must lie in [1, 5000] (two disjoint held-out sets of 10,000), got {n_eval}")
    if out_dir is not None and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise CLIError(f"the output directory {str(out_dir)!r} exists and is not a directory")
    saved_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run_demo(out_dir, data, steps, n_eval, samplers, seed, width, depth, batch_size, lr, repeats,
                         plots, progress, verbose)
    finally:
        torch.set_num_threads(saved_threads)


def _run_demo(out_dir, data, steps, n_eval, samplers, seed, width, depth, batch_size, lr, repeats, plots,
              progress, verbose) -> DemoResult:
    from ..diffusion import sample
    from ._recipes import build_sampler

    t_start = time.perf_counter()
    spec = RunSpec(data=data, n_train=20_000, data_seed=seed, schedule="vp", model="mlp", width=width,
                   depth=depth)
    x_train, _ = load_dataset(data, "train", n=spec.n_train, seed=seed)
    held, _ = load_dataset(data, "heldout", n=10_000, seed=seed)
    out = Path(out_dir) if out_dir is not None else None
    config = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, warmup_steps=min(100, steps // 10),
                         lr_schedule="cosine", ema_decay=0.999, grad_clip=1.0, seed=seed, progress=progress)
    model = spec.build_model(seed=seed)
    schedule = spec.build_schedule()
    if verbose:
        n_params = sum(p.numel() for p in model.parameters())
        say(f"sdekit demo: {spec.describe()}, {n_params:,} parameters; training {steps} steps "
            f"on {x_train.shape[0]} points (batch {batch_size}) ...")
    from .. import __version__

    metadata = {"sdekit_version": __version__, "run": spec.to_dict(), "model": spec.model_config()}
    trainer = Trainer(model, spec.build_loss(schedule), x_train, config,
                      out_dir=out / "checkpoint" if out is not None else None, metadata=metadata)
    trainer.fit()
    train_seconds = trainer.train_seconds
    net = trainer.ema_model

    floor = noise_floor(held, n_eval, repeats=repeats, seed=seed + 1)
    rows, panels = [], {"held-out data": held[:n_eval]}
    for key in samplers:
        label, solver, method, n_steps = DEMO_SAMPLERS[key]
        sampler = build_sampler(solver, method or "dopri5", 1e-4)
        g = torch.Generator().manual_seed(seed + 2)
        x_T = schedule.prior_sample((n_eval, 2), g)
        t0 = time.perf_counter()
        with torch.no_grad():
            x, info = sample(net, schedule, x_T, solver=sampler, steps=n_steps, prediction=spec.prediction_name,
                             generator=g, return_info=True, denoise_final=solver == "euler-maruyama",
                             progress=False)
        seconds = time.perf_counter() - t0
        sw = _sw2_to_heldout(x, held, n_eval, repeats, seed + 1)
        rows.append(DemoRow(label, info.nfe, sw, sw / floor.mean, seconds))
        panels[label] = x
    prior = schedule.prior_sample((n_eval, 2), torch.Generator().manual_seed(seed + 3))
    sw = _sw2_to_heldout(prior, held, n_eval, repeats, seed + 1)
    rows.append(DemoRow("prior N(0, I), no model", None, sw, sw / floor.mean, 0.0))

    tail = trainer.loss_history[-100:]
    result = DemoResult(data, steps, n_eval, floor.mean, floor.std, rows, train_seconds, 0.0,
                        sum(tail) / max(1, len(tail)))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if plots:
            from ._plots import loss_figure, sample_figure

            sample_figure(out / "samples.png", panels)
            title = f"{data}: denoising loss ({spec.prediction} prediction)"
            loss_figure(out / "loss.png", trainer.loss_history, title=title)
            result.files += [str(out / "samples.png"), str(out / "loss.png")]
        result.files.append(str(out / "checkpoint"))
    result.total_seconds = time.perf_counter() - t_start
    if out is not None:
        (out / "results.json").write_text(json.dumps(asdict(result), indent=2) + "\n")
        result.files.append(str(out / "results.json"))
    if verbose:
        say(f"trained in {train_seconds:.1f} s (mean loss of the last 100 steps {result.final_loss:.4f})\n")
        say(result.table())
        say(f"\nSW2: sliced Wasserstein-2 (512 seeded projections), mean over {repeats} held-out sets of {n_eval}; "
            "the floor is the SW2 between two disjoint held-out sets of that size (± its spread over the pairs), "
            "so a ratio near 1, or below it within that spread, means the samples are as close to held-out data "
            "as fresh data would be.")
        if out is not None:
            say(f"wrote {', '.join(result.files)}")
            say(f"sample again: sdekit sample --checkpoint {out / 'checkpoint'} --n 2000 --out samples.png")
        say(f"total {result.total_seconds:.1f} s")
    return result


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo", help="train, sample and measure a small model in about a minute",
        description="Train an MLP on a 2-D toy data set, sample it with the probability-flow ODE (and DDIM "
        "and the reverse SDE), print sliced W2 to held-out data beside the held-out noise floor, and write "
        "PNG plots.",
    )
    p.add_argument("--out", default="outputs/demo", help="output directory (default outputs/demo)")
    p.add_argument("--data", choices=sorted(TOYS), default="moons", help="2-D data set (default moons)")
    p.add_argument("--steps", type=positive_int, default=2000, help="training steps (default 2000)")
    p.add_argument("--n-eval", type=positive_int, default=2000, help="samples per set (default 2000)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed (default 0)")
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_run)


def _run(args) -> int:
    run_demo(args.out, data=args.data, steps=args.steps, n_eval=args.n_eval, seed=args.seed,
             progress=not args.no_progress, threads=args.threads)
    return 0
