"""Must-show 3 of issue 16: flexible diffusion (learned spatial forward process) against VP at equal budget.

Du, Zhang, Ho, Ma, Hu, Kim, "A Flexible Diffusion Model", ICML 2023: the forward SDE
dx = -1/2 beta(t) (R + Omega) x dt + sqrt(beta(t)) L dW with R = L L^T and Omega antisymmetric learned jointly
with the score through the ELBO; VP is R = I, Omega = 0. The paper's claim: the learned forward process
optimises the likelihood bound better than the fixed one.

Both arms here are the same code (:class:`sdekit.diffusion.MatrixLinearSDE`, VP's linear beta from 0.1 to 20,
t in [1e-3, 1]) trained on the same objective, the negative ELBO of ``MatrixLinearSDE.nelbo`` (reverse-SDE bound
with a Gaussian decoder at t_min), with the same eps-network (``sdekit.nn.MLPDenoiser``), optimiser (Adam), step
count, batch and seed; the VP arm freezes R = I, Omega = 0, the flexible arm learns them. Metric: the test negative
ELBO, averaged over ``--eval-draws`` draws of (t, noise) per test point: nats per dimension on the 2-D sets (moons,
checkerboard; fresh draws each step, 4000 test points), bits per dimension on the 8x8 digits (uniform
dequantisation of the 17 grey levels, bin width 2/16 on the [-1, 1] scale: bpd = (nelbo - 64 log(1/8)) / (64 log 2);
the 297 held-out images, 1500 for training). Mean and spread (standard deviation) over seeds.

    python benchmarks/methods/flexible_diffusion.py            # 3 seeds, all three sets (about 15-25 min, 2 cores)
    python benchmarks/methods/flexible_diffusion.py --quick    # moons, 1 seed, a few hundred steps (< 60 s)
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _machine import describe, emit  # noqa: E402

from sdekit.data import checkerboard, digits, moons  # noqa: E402
from sdekit.diffusion import MatrixLinearSDE  # noqa: E402
from sdekit.nn import MLPDenoiser  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results"
BIN = 2.0 / 16.0  # digits: 17 grey levels on [-1, 1]
FORWARD_LR = 1e-2  # Adam step of the forward parameters (L, Omega); the network uses 1e-3


def _data(name: str, seed: int) -> tuple[Any, torch.Tensor]:
    """A sampler of training batches and the test set."""
    if name in ("moons", "checkerboard"):
        fn = {"moons": moons, "checkerboard": checkerboard}[name]
        gen = torch.Generator().manual_seed(1000 + seed)
        test = fn(4000, torch.Generator().manual_seed(999))
        return (lambda b: fn(b, gen)), test
    train = digits("train")[0].reshape(-1, 64)
    test = digits("heldout")[0].reshape(-1, 64)
    gen = torch.Generator().manual_seed(1000 + seed)

    def batch(b: int) -> torch.Tensor:
        idx = torch.randint(0, train.shape[0], (b,), generator=gen)
        return train[idx] + BIN * torch.rand(b, 64, generator=gen)  # uniform dequantisation

    return batch, test


def _score_metric(name: str, nelbo: float, d: int) -> float:
    if name == "digits":
        return (nelbo - d * math.log(BIN)) / (d * math.log(2.0))  # bits per dimension
    return nelbo / d  # nats per dimension


def run(name: str, flexible: bool, seed: int, steps: int, batch: int, hidden: int, eval_draws: int,
        n_times: int | None, forward_lr: float = FORWARD_LR) -> dict[str, Any]:
    torch.manual_seed(seed)
    sample_batch, test = _data(name, seed)
    d = test.shape[1]
    sde = MatrixLinearSDE(d, learn_R=flexible, learn_omega=flexible)
    net = MLPDenoiser(d, hidden=hidden, depth=3, seed=seed)
    params = list(net.parameters()) + list(sde.parameters())
    groups: list[dict[str, Any]] = [{"params": list(net.parameters()), "lr": 1e-3}]
    if flexible:
        groups.append({"params": list(sde.parameters()), "lr": forward_lr})
    opt = torch.optim.Adam(groups)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(2000 + seed)
    start = time.time()
    losses = []
    for _ in range(steps):
        x0 = sample_batch(batch)
        loss = sde.nelbo(net, x0, generator=gen, n_times=n_times).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    train_s = time.time() - start
    # test: dequantise the digits with fixed draws; average several (t, eps) draws per point
    eval_gen = torch.Generator().manual_seed(77)
    x_test = test + BIN * torch.rand(test.shape, generator=eval_gen) if name == "digits" else test
    with torch.no_grad():
        vals = torch.stack([sde.nelbo(net, x_test, generator=eval_gen, n_times=64).double()
                            for _ in range(eval_draws)])
    per_point = vals.mean(0)
    nelbo = float(per_point.mean())
    se = float(per_point.std()) / math.sqrt(per_point.numel())
    with torch.no_grad():
        eig = torch.linalg.eigvalsh(sde.R.double())
        omega_norm = float(sde.omega.double().norm())
    return {"set": name, "arm": "flexible" if flexible else "VP", "seed": seed, "nelbo": nelbo,
            "metric": _score_metric(name, nelbo, d), "metric_se": se / (d * (math.log(2.0) if name == "digits" else 1)),
            "train_loss_last100": sum(losses[-100:]) / len(losses[-100:]), "train_s": train_s,
            "R_eig_min": float(eig.min()), "R_eig_max": float(eig.max()), "omega_fro": omega_norm,
            "per_point": per_point, "scale": d * (math.log(2.0) if name == "digits" else 1.0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps-2d", type=int, default=2000)
    ap.add_argument("--steps-digits", type=int, default=1500)
    ap.add_argument("--eval-draws", type=int, default=20)
    ap.add_argument("--out", type=str, default=None)
    ap.add_argument("--sets", type=str, default="moons,checkerboard,digits",
                    help="comma-separated subset of moons, checkerboard, digits")
    ap.add_argument("--forward-lr", type=float, default=FORWARD_LR, help="Adam step of L and Omega")
    ap.add_argument("--from-log", type=str, default=None,
                    help="write the report from the JSON lines a run printed (no paired standard errors)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.from_log:
        rows = [json.loads(line) for line in Path(args.from_log).read_text().splitlines() if line.startswith("{")]
        names = list(dict.fromkeys(r["set"] for r in rows))
        plan = [(n, *next((r["steps"], r["batch"], r["hidden"]) for r in rows if r["set"] == n)) for n in names]
        plan = [p for p in plan if sum(r["set"] == p[0] and r["arm"] == "flexible" for r in rows) > 0]
        seeds = max(r["seed"] for r in rows) + 1
        out = args.out or str(RESULTS / "flexible_diffusion.md")
        report(rows, plan, seeds, args.eval_draws, float("nan"), False, out, args.forward_lr)
        return
    if args.quick:
        plan = [("moons", 200, 128, 64)]
        seeds, eval_draws = 1, 2
    else:
        plan = [("moons", args.steps_2d, 256, 128), ("checkerboard", args.steps_2d, 256, 128),
                ("digits", args.steps_digits, 128, 256)]
        plan = [p for p in plan if p[0] in args.sets.split(",")]
        seeds, eval_draws = args.seeds, args.eval_draws
    t0 = time.time()
    rows = []
    for name, steps, batch, hidden in plan:
        for seed in range(seeds):
            for flexible in (False, True):
                r = run(name, flexible, seed, steps, batch, hidden, eval_draws, 4 if name == "digits" else None,
                        args.forward_lr)
                r.update(steps=steps, batch=batch, hidden=hidden)
                rows.append(r)
                print(json.dumps({k: v for k, v in r.items() if k != "per_point"}), flush=True)
    wall = time.time() - t0
    out = args.out or (None if args.quick else str(RESULTS / "flexible_diffusion.md"))
    report(rows, plan, seeds, eval_draws, wall, args.quick, out, args.forward_lr)


def report(rows: list[dict[str, Any]], plan: list[tuple[str, int, int, int]], seeds: int, eval_draws: int,
           wall: float, quick: bool, out: str | None, forward_lr: float = FORWARD_LR) -> None:
    unit = {"moons": "nats/dim", "checkerboard": "nats/dim", "digits": "bits/dim"}
    lines = [
        "# Flexible diffusion vs VP at equal training budget (issue 16, must-show 3)",
        "",
        f"Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC. Machine: {describe()}. "
        f"Wall time: {wall:.0f} s{' (--quick)' if quick else ''}.",
        "",
        "Du et al., \"A Flexible Diffusion Model\", ICML 2023. Both arms: `MatrixLinearSDE` with VP's linear beta "
        "(0.1 to 20), t in [1e-3, 1], trained on the negative ELBO (`MatrixLinearSDE.nelbo`: reverse-SDE bound, "
        "Gaussian decoder at t_min, log-SNR importance sampling of t), the same `MLPDenoiser` eps-network, Adam "
        "(lr 1e-3, cosine decay), gradient clipping 10, equal steps and batch per seed. VP freezes R = I, "
        f"Omega = 0; flexible learns L (R = L L^T) and Omega (Adam lr {forward_lr} for these). Lower is better. "
        "Spread: standard deviation over "
        f"{seeds} seed(s) (a set with fewer finished seeds shows those); each test value averages {eval_draws} "
        "(t, noise) draws per test point.",
        "",
        "| set | unit | steps x batch | VP | flexible | flexible - VP (per seed) | learned R eigenvalues "
        "(flexible, seed 0) | ‖Omega‖_F |",
        "|---|---|---|---|---|---|---|---|",
    ]
    summary: dict[str, Any] = {}
    for name, steps, batch, _ in plan:
        fx = [r for r in rows if r["set"] == name and r["arm"] == "flexible"]
        done = {r["seed"] for r in fx}
        vp = [r for r in rows if r["set"] == name and r["arm"] == "VP" and r["seed"] in done]
        vpm = torch.tensor([r["metric"] for r in vp], dtype=torch.float64)
        fxm = torch.tensor([r["metric"] for r in fx], dtype=torch.float64)
        diff = fxm - vpm

        def ms(x: torch.Tensor) -> str:
            return f"{float(x.mean()):.4f} ± {float(x.std()) if x.numel() > 1 else 0.0:.4f}"

        f0 = fx[0]
        lines.append(f"| {name} | {unit[name]} | {steps} x {batch} | {ms(vpm)} | {ms(fxm)} | "
                     f"{', '.join(f'{float(v):+.4f}' for v in diff)} | [{f0['R_eig_min']:.3f}, "
                     f"{f0['R_eig_max']:.3f}] | {f0['omega_fro']:.3f} |")
        # paired: both arms are evaluated with the same (t, noise) draws per test point
        paired_se = [float((f["per_point"] - v["per_point"]).std()) / math.sqrt(v["per_point"].numel())
                     / f["scale"] if "per_point" in f else float("nan") for v, f in zip(vp, fx)]
        summary[name] = {"vp": vpm.tolist(), "flexible": fxm.tolist(), "diff": diff.tolist(),
                         "paired_se": paired_se}
    lines += [
        "",
        "Paired standard errors of the per-seed differences (same draws for both arms): "
        + "; ".join(f"{k}: " + ", ".join(f"{se:.4f}" for se in v["paired_se"]) for k, v in summary.items()) + ".",
        "",
        "Standard errors of the test averages (Monte Carlo over test points and draws) are below "
        f"{max(r['metric_se'] for r in rows):.4f} in these units.",
        "",
        "Paper: the claim is qualitative here (the learned forward process gives a better bound / faster "
        "optimisation on images; its tables are CIFAR-10 / ImageNet-scale bits per dimension, not comparable "
        "with these small sets, and are not transcribed).",
    ]
    emit(lines, out)
    if not quick and out == str(RESULTS / "flexible_diffusion.md"):
        rows = [{k: v for k, v in r.items() if k != "per_point"} for r in rows]
        (RESULTS / "flexible_diffusion.json").write_text(json.dumps({"rows": rows, "summary": summary,
                                                                     "wall_s": wall}, indent=1))


if __name__ == "__main__":
    main()
