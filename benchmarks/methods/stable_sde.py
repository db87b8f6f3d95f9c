"""Must-show 2 of issue 18: the robustness table of the stable neural SDEs (Oh, Lim, Kim, ICLR 2024).

Test accuracy at 0 / 30 / 50 / 70 % missing observations for LSDE, LNSDE, GSDE, the neural CDE and the naive
neural SDE on sktime's bundled UCR/UEA sets (no downloads), mean and spread over seeds, with the number of
diverging runs (a non-finite training loss or latent state) per class.

Protocol (the paper's, scaled down to a shared 2-core CPU): each set's archive train and test splits are
merged and re-split 70 / 15 / 15 stratified by the seed (as the official code); values are normalised with
the training statistics; ``round(rate * L)`` time points of every series are dropped (the same indices in all
channels, seeded per series); the control path is the natural cubic spline of ``[t, x, cumulative count]``
(``t`` in linspace(0, 1)); ``z0 = Lin(X(t0))``; Euler-Maruyama (or Euler for the CDE) with step ``DT``;
head Linear-BN-ReLU-Dropout(0.1)-Linear; AdamW with the official ``lr``-tied weight decay, no gradient
clipping (as the official code), batch 32; the test accuracy is read at the step with the best validation
accuracy (checked every ``EVAL_EVERY`` steps; the official code early-stops on validation loss).
Training uses :class:`sdekit.train.Trainer` with :func:`sdekit.timeseries.classification_loss`.

    python benchmarks/methods/stable_sde.py            # 4 sets x 4 rates x 5 models x 3 seeds (about 35 min, 2 workers)
    python benchmarks/methods/stable_sde.py --quick    # ItalyPowerDemand, 0 / 50 %, LSDE + naive SDE, 1 seed (< 60 s)
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _machine import describe  # noqa: E402

from sdekit.timeseries import (  # noqa: E402
    GSDE,
    LNSDE,
    LSDE,
    NaiveNeuralSDE,
    NeuralCDE,
    PathClassifier,
    classification_loss,
    control_path,
    drop_observations,
    load_bundled,
    normalise,
)
from sdekit.train import TrainConfig, Trainer  # noqa: E402

MODELS = {"LSDE": LSDE, "LNSDE": LNSDE, "GSDE": GSDE, "Neural CDE": NeuralCDE, "Naive neural SDE": NaiveNeuralSDE}
DATASETS = ("ArrowHead", "BasicMotions", "GunPoint", "ItalyPowerDemand")
RATES = (0.0, 0.3, 0.5, 0.7)
HIDDEN, WIDTH, LAYERS = 16, 32, 1
DT = 0.04
BATCH = 32
LR = 5e-3
EVAL_EVERY = 25


def split(labels: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stratified 70 / 15 / 15 index split."""
    g = torch.Generator().manual_seed(1000 + seed)
    parts: list[list[torch.Tensor]] = [[], [], []]
    for c in labels.unique():
        idx = (labels == c).nonzero()[:, 0]
        idx = idx[torch.randperm(len(idx), generator=g)]
        n_tr, n_va = int(round(0.7 * len(idx))), int(round(0.15 * len(idx)))
        parts[0].append(idx[:n_tr])
        parts[1].append(idx[n_tr:n_tr + n_va])
        parts[2].append(idx[n_tr + n_va:])
    return tuple(torch.cat(p) for p in parts)  # type: ignore[return-value]


def prepare(name: str, rate: float, seed: int):
    X1, y1, classes = load_bundled(name, "train")
    X2, y2, _ = load_bundled(name, "test")
    X, y = torch.cat([X1, X2]), torch.cat([y1, y2])
    tr, va, te = split(y, seed)
    Xn = normalise(X, X[tr])
    Xd = drop_observations(Xn, rate, seed=seed)
    packed = control_path(Xd).pack()
    return packed, y, (tr, va, te), len(classes)


def accuracy(model, packed, labels) -> float:
    model.eval()
    with torch.no_grad():
        out = (model(packed).argmax(-1) == labels).float().mean().item()
    model.train()
    return out


def run_one(job: tuple[str, float, str, int, int]) -> dict:
    name, rate, model_name, seed, steps = job
    torch.set_num_threads(1)
    packed, y, (tr, va, te), K = prepare(name, rate, seed)
    C = (packed.shape[-1] - 1) // 4
    torch.manual_seed(seed)
    field = MODELS[model_name](C, HIDDEN, WIDTH, LAYERS)
    model = PathClassifier(field, K, dt=DT)
    batch = min(BATCH, max(2, len(tr) // 2))
    config = TrainConfig(steps=steps, batch_size=batch, lr=LR, weight_decay=0.01 * LR, grad_clip=None,
                         ema_decay=None, progress=False, seed=seed)
    trainer = Trainer(model, classification_loss, packed[tr], config, labels=y[tr])
    best_val, test_at_best, diverged, reason = -1.0, float("nan"), False, ""
    t0 = time.perf_counter()
    try:
        for stop in range(EVAL_EVERY, steps + 1, EVAL_EVERY):
            trainer.fit(stop)
            torch.manual_seed(10_000 + stop)  # evaluation noise
            val = accuracy(model, packed[va], y[va])
            if val > best_val:
                best_val, test_at_best = val, accuracy(model, packed[te], y[te])
    except FloatingPointError as err:
        diverged, reason = True, str(err)[:120]
    return {"dataset": name, "rate": rate, "model": model_name, "seed": seed, "val": best_val,
            "test": float("nan") if diverged else test_at_best, "diverged": diverged, "reason": reason,
            "seconds": time.perf_counter() - t0, "steps": trainer.step}


def fmt(xs: list[float]) -> str:
    xs = [x for x in xs if math.isfinite(x)]
    if not xs:
        return "n/a"
    m = sum(xs) / len(xs)
    sd = (sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) ** 0.5 if len(xs) > 1 else 0.0
    return f"{100 * m:.1f} ± {100 * sd:.1f}"


def mean(xs: list[float]) -> float:
    xs = [x for x in xs if math.isfinite(x)]
    return sum(xs) / len(xs) if xs else float("nan")


def report(rows: list[dict], datasets, rates, models, seeds, steps, wall: float, quick: bool) -> tuple[str, dict]:
    lines = ["# Stable neural SDEs: accuracy under missing observations", ""]
    lines += [
        "Oh, Lim, Kim, \"Stable Neural Stochastic Differential Equations in Analyzing Irregular Time Series Data\""
        " (ICLR 2024), robustness experiment; script `benchmarks/methods/stable_sde.py`"
        + (" `--quick`" if quick else "") + ".",
        "",
        "**Scaled down from the paper** (a shared 2-core CPU, about 35 minutes for the whole grid): "
        f"{len(datasets)} of sktime's bundled sets instead of the paper's 30 UEA sets; {len(seeds)} seeds "
        "(paper: 5); "
        f"hidden size {HIDDEN}, drift width {WIDTH}, {LAYERS} hidden layer (paper: searched over 16-128 and 1-4 "
        f"layers); {steps} AdamW steps of batch <= {BATCH}, lr {LR:g} (paper: up to 100 epochs with early "
        f"stopping, lr searched in [1e-4, 1e-2]); Euler step {DT:g} on [0, 1] (paper: max(min gap, 1e-3), "
        "i.e. one step per observation); model selected on validation accuracy every "
        f"{EVAL_EVERY} steps (paper: validation loss with patience 10). No hyper-parameter search.",
        "",
        "**The paper's numbers.** Its per-data-set accuracies at each missing rate are not in our checked notes "
        "(`PAPERS-methods.md` marks them unverified), so none are printed beside ours; the one figure there is a "
        "third-party 72.7 % mean accuracy over the paper's 30 UEA sets on complete data, with a searched model "
        "per set and 100 epochs. Our accuracies are far below tuned values (small test splits: 12 series for "
        "BasicMotions, 30-32 for ArrowHead / GunPoint, 165 for ItalyPowerDemand); read the drop together with "
        "the level: a model near chance at 0 % cannot lose much.",
        "",
        f"Date {datetime.date.today().isoformat()}; machine: {describe()}; wall {wall:.0f} s "
        f"({sum(r['seconds'] for r in rows):.0f} s of training summed over runs).",
        "",
        "## Test accuracy (%), mean ± sd over seeds",
        "",
    ]
    header = ("| data set | model | " + " | ".join(f"{int(100 * r)}% missing" for r in rates)
              + " | drop 0→max | diverged |")
    lines += [header, "|" + "---|" * (len(rates) + 4)]
    summary: dict = {}
    for ds in datasets:
        for m in models:
            cells, means, div = [], [], 0
            for r in rates:
                sel = [x for x in rows if x["dataset"] == ds and x["model"] == m and x["rate"] == r]
                cells.append(fmt([x["test"] for x in sel]))
                means.append(mean([x["test"] for x in sel]))
                div += sum(x["diverged"] for x in sel)
            drop = means[0] - means[-1]
            summary[f"{ds}|{m}"] = {"means": means, "diverged": div}
            lines.append(f"| {ds} | {m} | " + " | ".join(cells) + f" | {100 * drop:+.1f} | {div} |")
    lines += ["", "## Averaged over the data sets", "",
              "| model | " + " | ".join(f"{int(100 * r)}%" for r in rates) + " | drop 0→max | diverged runs |",
              "|" + "---|" * (len(rates) + 3)]
    overall = {}
    for m in models:
        per_rate = [mean([summary[f"{ds}|{m}"]["means"][i] for ds in datasets]) for i in range(len(rates))]
        div = sum(summary[f"{ds}|{m}"]["diverged"] for ds in datasets)
        n = len([x for x in rows if x["model"] == m])
        overall[m] = {"per_rate": per_rate, "drop": per_rate[0] - per_rate[-1], "diverged": div, "runs": n}
        lines.append(f"| {m} | " + " | ".join(f"{100 * v:.1f}" for v in per_rate)
                     + f" | {100 * (per_rate[0] - per_rate[-1]):+.1f} | {div} of {n} |")
    lines += claim_section(summary, overall, datasets, models)
    return "\n".join(lines) + "\n", {"overall": overall, "summary": summary}


STABLE = ("LSDE", "LNSDE", "GSDE")


def claim_section(summary: dict, overall: dict, datasets, models) -> list[str]:
    """The paper's two claims, checked on the numbers above."""
    stable = [m for m in models if m in STABLE]
    base = [m for m in models if m not in STABLE]
    if not stable or not base:
        return []
    lines = ["", "## The paper's claims on these numbers", ""]
    s_drop = [overall[m]["drop"] for m in stable]
    b_drop = [overall[m]["drop"] for m in base]
    s_last = [overall[m]["per_rate"][-1] for m in stable]
    b_last = [overall[m]["per_rate"][-1] for m in base]
    holds = max(s_drop) < min(b_drop)
    lines.append(
        f"1. *The stable classes lose the least accuracy as the missing rate grows.* Averaged over the sets, the "
        f"drop from 0 % to the highest rate is {', '.join(f'{m} {100 * d:+.1f}' for m, d in zip(stable, s_drop))} "
        f"points against {', '.join(f'{m} {100 * d:+.1f}' for m, d in zip(base, b_drop))}: "
        + ("every stable class loses less than every baseline (holds)." if holds else
           ("the stable classes lose less on average "
            f"({100 * sum(s_drop) / len(s_drop):+.1f} vs {100 * sum(b_drop) / len(b_drop):+.1f}) but not every "
            "stable class beats every baseline (holds only on average)."
            if sum(s_drop) / len(s_drop) < sum(b_drop) / len(b_drop) else "does not hold at this budget.")))
    wins = []
    for ds in datasets:
        drops = {m: summary[f"{ds}|{m}"]["means"][0] - summary[f"{ds}|{m}"]["means"][-1] for m in models}
        best = min(drops, key=lambda k: drops[k])
        wins.append(f"{ds}: {best} ({100 * drops[best]:+.1f})")
    lines.append(f"   Smallest drop per set: {'; '.join(wins)}. At the highest rate the best stable class reaches "
                 f"{100 * max(s_last):.1f} % against the best baseline's {100 * max(b_last):.1f} %.")
    level = []
    for ds in datasets:
        last = {m: summary[f"{ds}|{m}"]["means"][-1] for m in models}
        first = {m: summary[f"{ds}|{m}"]["means"][0] for m in models}
        top_last, top_first = max(last, key=lambda k: last[k]), max(first, key=lambda k: first[k])
        if top_last in base or top_first in base:
            level.append(f"{ds} (most accurate at 0 %: {top_first} {100 * first[top_first]:.1f}; at the highest "
                         f"rate: {top_last} {100 * last[top_last]:.1f})")
    if level:
        lines.append("   Where the claim fails in level: a baseline is the most accurate model at 0 % or at the "
                     "highest rate on " + "; ".join(level) + ".")
    rising = [f"{ds} {m} ({100 * (summary[f'{ds}|{m}']['means'][0] - summary[f'{ds}|{m}']['means'][-1]):+.1f})"
              for ds in datasets for m in models
              if summary[f"{ds}|{m}"]["means"][0] - summary[f"{ds}|{m}"]["means"][-1] < -0.05]
    if rising:
        lines.append("   Negative drops (accuracy *rising* with the missing rate by more than 5 points: "
                     + ", ".join(rising) + ") are not a gain from missing data: they mark models that are far from "
                     "trained at this budget (200 steps) and small test splits, so part of the 'stable classes lose "
                     "least' result above comes from this noise. The set where every model trains well is the "
                     "cleanest test of the claim.")
    s_div = sum(overall[m]["diverged"] for m in stable)
    b_div = sum(overall[m]["diverged"] for m in base)
    n_s = sum(overall[m]["runs"] for m in stable)
    n_b = sum(overall[m]["runs"] for m in base)
    lines.append(f"2. *The stable classes never diverge.* Diverged runs (non-finite loss or state): stable classes "
                 f"{s_div} of {n_s}, baselines {b_div} of {n_b}"
                 + (" (holds; at this small budget and with bounded drifts no baseline diverged either, so the "
                    "claim is not tested hard here)." if s_div == 0 and b_div == 0 else
                    " (holds for the stable classes)." if s_div == 0 else " (fails).")
                 )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--jsonl", default=None, help="append each run's result here (resumable)")
    parser.add_argument("--wall", type=float, default=None,
                        help="wall seconds of the run that filled --jsonl (when only writing the report)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.quick:
        datasets, rates, models, seeds = ("ItalyPowerDemand",), (0.0, 0.5), ("LSDE", "Naive neural SDE"), (0,)
        steps = args.steps or 75
    else:
        datasets, rates, models = tuple(args.datasets.split(",")), RATES, tuple(MODELS)
        seeds, steps = tuple(range(args.seeds)), args.steps or 200
    out = Path(args.out) if args.out else Path(__file__).resolve().parents[1] / "results" / "stable_sde.md"
    jobs = [(ds, r, m, s, steps) for s in seeds for ds in datasets for r in rates for m in models]
    rows: list[dict] = []
    done = set()
    if args.jsonl and Path(args.jsonl).exists():
        for line in Path(args.jsonl).read_text().splitlines():
            row = json.loads(line)
            key = (row["dataset"], row["rate"], row["model"], row["seed"], row["steps"])
            if key in {j[:4] + (j[4],) for j in jobs}:
                rows.append(row)
                done.add(key)
    jobs = [j for j in jobs if j not in done]
    t0 = time.perf_counter()
    if args.workers > 1 and len(jobs) > 1:
        import multiprocessing as mp
        with mp.get_context("spawn").Pool(args.workers) as pool:
            for row in pool.imap_unordered(run_one, jobs):
                rows.append(row)
                if args.jsonl:
                    with open(args.jsonl, "a") as fh:
                        fh.write(json.dumps(row) + "\n")
                print(json.dumps(row), file=sys.stderr, flush=True)
    else:
        for job in jobs:
            row = run_one(job)
            rows.append(row)
            if args.jsonl:
                with open(args.jsonl, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
            print(json.dumps(row), file=sys.stderr, flush=True)
    wall = args.wall if args.wall is not None else time.perf_counter() - t0
    text, summary = report(rows, datasets, rates, models, seeds, steps, wall, args.quick)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print("RESULT " + json.dumps({"overall": summary["overall"], "wall": wall}))


if __name__ == "__main__":
    main()
