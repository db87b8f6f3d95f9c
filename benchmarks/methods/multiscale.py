"""Must-show 3 of issue 19: multiscale samplers (MultALMC, MultCDiff) against Langevin baselines, measured
against exact answers (Cordero-Encinar, Duncan, Reich, Akyildiz, "Sampling by averaging", arXiv 2508.15069).

1. Gaussian targets (exact): ULA's stationary variance against its closed form s^2 / (1 - h / (2 s^2)) (order 1
   bias), OBABO's (ULMC) against the exact stationary variance of the linear OBABO map (a discrete Lyapunov
   equation; order 2 bias), and the mean / covariance errors of annealed Langevin, MultALMC and MultCDiff on a
   correlated 2-D Gaussian against their exact end law.
2. Equal gradient budget on the 8-Gaussian ring, the 40-component mixture (2-D), Neal's funnel (d = 10) and a
   Student-t target (d = 2, 3 degrees of freedom): entropic W2 (POT ``ot.sinkhorn2``, reg 0.05 on the squared
   Euclidean cost divided by its maximum, debiased: sqrt(OT(a, b) - (OT(a, a) + OT(b, b)) / 2)) to exact draws,
   mode coverage for the mixtures, sliced KS for the funnel and the Student-t target; mean and spread over seeds.

    python benchmarks/methods/multiscale.py            # 5 seeds, 500 chains, 3000 gradients per chain
    python benchmarks/methods/multiscale.py --quick    # ~40 s: the ring only, 1 seed (checked by a test)
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

import numpy as np
import torch
from scipy.linalg import solve_discrete_lyapunov

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _machine import describe, emit  # noqa: E402

from sdekit.montecarlo import (  # noqa: E402
    ULA,
    ULMC,
    AnnealedLangevin,
    AnnealingSchedule,
    Funnel,
    Gaussian,
    GaussianMixture,
    MultALMC,
    MultCDiff,
    StudentT,
    StudentTNoise,
)

F64 = torch.float64
PAPER_W2 = {"ring8": {"ULMC": 6.90, "best baseline (RDMC)": 1.01, "MultALMC": 0.65, "MultCDiff": 0.62},
            "mixture40": {"ULMC": 8.17, "best baseline (PT)": 0.92, "MultALMC": 0.91, "MultCDiff": 0.93}}
PAPER_KS_FUNNEL = {"ULMC": 0.123, "best baseline (PT)": 0.033, "MultALMC": 0.032, "MultCDiff": 0.031}


def entropic_w2(a: torch.Tensor, b: torch.Tensor, reg: float = 0.05) -> float:
    """Debiased entropic W2 (Sinkhorn divergence) with POT: reg on the cost normalised by its maximum."""
    import ot

    a_np, b_np = a.double().numpy(), b.double().numpy()
    scale = float(ot.dist(np.concatenate([a_np, b_np]), np.concatenate([a_np, b_np])).max())

    def cost(u, v):
        m = ot.dist(u, v) / scale
        value: Any = ot.sinkhorn2(ot.unif(len(u)), ot.unif(len(v)), m, reg, numItermax=2000)
        return float(value) * scale

    return math.sqrt(max(cost(a_np, b_np) - 0.5 * cost(a_np, a_np) - 0.5 * cost(b_np, b_np), 0.0))


def sliced_ks(a: torch.Tensor, b: torch.Tensor, n_dirs: int = 64, seed: int = 0) -> float:
    """Mean over random unit directions of the two-sample KS statistic of the projections."""
    from scipy import stats

    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(n_dirs, a.shape[1], dtype=F64, generator=g)
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    pa, pb = (a.double() @ dirs.T).numpy(), (b.double() @ dirs.T).numpy()
    results: list[Any] = [stats.ks_2samp(pa[:, j], pb[:, j]) for j in range(n_dirs)]
    return float(np.mean([r.statistic for r in results]))


def coverage(target: GaussianMixture, x: torch.Tensor, lo: float, hi: float) -> float:
    share = torch.bincount(target.assign(x), minlength=target.means.shape[0]).double() / x.shape[0]
    return float(((share >= lo) & (share <= hi)).double().mean())


# ---------------------------------------------------------------------------------------------------------
# 1. Gaussian targets
# ---------------------------------------------------------------------------------------------------------
def obabo_stationary_variance(s2: float, h: float, gamma: float) -> float:
    a = math.exp(-gamma * h / 2)
    o = np.diag([1.0, a])
    b = np.array([[1.0, 0.0], [-h / (2 * s2), 1.0]])
    inner = o @ b @ np.array([[1.0, h], [0.0, 1.0]]) @ b
    e = np.diag([0.0, 1 - a * a])
    return float(solve_discrete_lyapunov(inner @ o, inner @ e @ inner.T + e)[0, 0])


def gaussian_section(n: int, quick: bool) -> tuple[list[str], dict]:
    s2 = 2.25
    target = Gaussian(torch.zeros(1), torch.tensor([[s2]]))
    x0 = math.sqrt(s2) * torch.randn(n, 1, dtype=F64, generator=torch.Generator().manual_seed(0))
    se = s2 * math.sqrt(2 / n)
    lines = [f"### ULA and ULMC on N(0, {s2}): stationary variance ({n} chains)", "",
             f"Standard error of a variance: {se:.4f}. ULA's exact stationary variance s^2 / (1 - h / (2 s^2)); "
             "OBABO's (friction 1) from the discrete Lyapunov equation of its linear map.", "",
             "| sampler | h | measured var | exact var of the scheme | (measured - exact) / SE | bias (exact - s^2) "
             "| bias / h^order |", "|---|---|---|---|---|---|---|"]
    res = {}
    for h in ((0.2, 0.4) if quick else (0.05, 0.1, 0.2, 0.4)):
        v = ULA(h).sample(target, x0, int(60 / h), seed=1).samples.var().item()
        exact = s2 / (1 - h / (2 * s2))
        lines.append(f"| ULA | {h} | {v:.4f} | {exact:.4f} | {(v - exact) / se:+.2f} | {exact - s2:.4f} | "
                     f"{(exact - s2) / h:.4f} (order 1) |")
        res[f"ula_z_{h}"] = (v - exact) / se
    for h in ((0.4, 0.8) if quick else (0.1, 0.2, 0.4, 0.8)):
        v = ULMC(h, 1.0).sample(target, x0, int(80 / h), seed=2).samples.var().item()
        exact = obabo_stationary_variance(s2, h, 1.0)
        lines.append(f"| ULMC (OBABO) | {h} | {v:.4f} | {exact:.4f} | {(v - exact) / se:+.2f} | {exact - s2:.5f} | "
                     f"{(exact - s2) / h**2:.4f} (order 2) |")
        res[f"ulmc_z_{h}"] = (v - exact) / se
    if quick:
        return lines, res

    mean = torch.tensor([1.0, -1.0], dtype=F64)
    cov = torch.tensor([[1.0, 0.5], [0.5, 2.0]], dtype=F64)
    g2 = Gaussian(mean, cov)
    n = n // 2
    x0 = torch.randn(n, 2, dtype=F64, generator=torch.Generator().manual_seed(3))
    lines += ["", f"### Annealed and multiscale samplers on N(m, Sigma), m = (1, -1), Sigma = [[1, .5], [.5, 2]] "
              f"({n} chains, lambda held at lam_max for the second half of the run)", "",
              "The end law is N(sqrt(lam_max) m, lam_max Sigma + (1 - lam_max) I); the annealed runs use lam_max = 1 "
              "(ULA's stationary covariance (Sigma^-1 - h/2 Sigma^-2)^-1 for the overdamped one), the multiscale "
              "runs lam_max = 0.99. Errors are max-abs over entries; the standard error of the mean entries is "
              f"about {math.sqrt(2 / n):.3f}, of the covariance entries about {2 * math.sqrt(2 / n):.3f}.", "",
              "| sampler | h | eps | steps (T) | mean error | covariance error |", "|---|---|---|---|---|---|"]

    def row(name, sampler, steps, lam_max, h, eps, ula=False):
        x = sampler.sample(g2, x0, steps, seed=4).samples
        m_ref = math.sqrt(lam_max) * mean
        c_ref = lam_max * cov + (1 - lam_max) * torch.eye(2, dtype=F64)
        if ula:
            prec = torch.linalg.inv(cov)
            c_ref = torch.linalg.inv(prec - h / 2 * prec @ prec)
        me = (x.mean(0) - m_ref).abs().max().item()
        ce = (torch.cov(x.T) - c_ref).abs().max().item()
        lines.append(f"| {name} | {h} | {eps} | {steps} ({steps * h:g}) | {me:.4f} | {ce:.4f} |")
        res[f"gauss_{name}_{h}_{eps}"] = (me, ce)

    hold1 = AnnealingSchedule(0.01, 1.0, hold=0.5)
    hold99 = AnnealingSchedule(0.01, 0.99, hold=0.5)
    for h in (0.2, 0.1):
        row("annealed, underdamped", AnnealedLangevin(h, hold1, friction=2.0), int(60 / h), 1.0, h, "-")
    row("annealed, overdamped", AnnealedLangevin(0.05, hold1), 1200, 1.0, 0.05, "-", ula=True)
    for h, eps in ((0.05, 0.5), (0.02, 0.2), (0.01, 0.1)):
        row("MultALMC, underdamped", MultALMC(h, eps, hold99, friction=2.0), int(30 / h), 0.99, h, eps)
    row("MultALMC, overdamped", MultALMC(0.001, 0.2, hold99), 6000, 0.99, 0.001, 0.2)
    for h, eps in ((0.001, 0.2), (0.0005, 0.1)):
        row("MultCDiff", MultCDiff(h, eps), 3000, 0.99, h, eps)
    return lines, res


# ---------------------------------------------------------------------------------------------------------
# 2. Equal-budget comparison
# ---------------------------------------------------------------------------------------------------------
def samplers_for(name: str):
    """(label, sampler) pairs; the step budget is the same for every sampler of a target."""
    ulmc = ("ULMC (h 0.05, friction 1 -> 5)", ULMC(0.05, (1.0, 5.0)))
    annealed = ("annealed Langevin, exact mu_lambda score (oracle)",
                AnnealedLangevin(0.05, AnnealingSchedule(0.01, 1.0, cosine=True, hold=0.2), friction=(0.01, 0.5)))
    schedule = AnnealingSchedule(0.01, 0.99, cosine=True, hold=0.2)
    multalmc = ("MultALMC, underdamped (h 0.05, eps 0.5)",
                MultALMC(0.05, 0.5, schedule, friction=(0.01, 0.5), fast_friction=2.0))
    multcdiff = ("MultCDiff, overdamped (h 0.0005, eps 0.05)", MultCDiff(0.0005, 0.05))
    if name in ("ring8", "mixture40"):
        return [ulmc, annealed, multalmc, multcdiff]
    if name == "funnel":  # lam_min 0.1 and Y0 = sqrt(lam_min) X0: from lam_min 0.01 / Y0 = X0 both diverge
        start = math.sqrt(0.1)
        return [ulmc,
                ("MultALMC, underdamped (h 0.05, eps 0.5, lam_min 0.1, Y0 = 0.32 X0)",
                 MultALMC(0.05, 0.5, AnnealingSchedule(0.1, 0.99, cosine=True, hold=0.2), friction=(0.01, 0.5),
                          fast_start=start)),
                ("MultCDiff, overdamped (h 0.0005, eps 0.05, lam_min 0.1, Y0 = 0.32 X0)",
                 MultCDiff(0.0005, 0.05, lam_min=0.1, fast_start=start))]
    if name == "student_t":
        student = ("MultALMC, Student-t(3) noise", MultALMC(0.05, 0.5, schedule, friction=(0.01, 0.5),
                                                             noise=StudentTNoise(3.0)))
        return [ulmc, multalmc, student, multcdiff]
    raise ValueError(name)


def comparison_section(names, seeds, n, steps) -> tuple[list[str], dict, dict]:
    targets = {"ring8": GaussianMixture.ring8(), "mixture40": GaussianMixture.mixture40(),
               "funnel": Funnel(10, 3.0), "student_t": StudentT(2, 3.0)}
    lines, res, samples_for_png = [], {}, {}
    for name in names:
        target = targets[name]
        rows = {}
        ref_floor = []
        for seed in seeds:
            gen = torch.Generator().manual_seed(100 + seed)
            ref = target.sample(n, gen)
            if name in ("ring8", "mixture40"):
                ref_floor.append(entropic_w2(target.sample(n, gen), ref))
            x0 = torch.randn(n, target.dim, dtype=F64, generator=gen)
            for label, sampler in samplers_for(name):
                t0 = time.time()
                start = StudentT(target.dim, 3.0).sample(n, gen) if "Student-t(3) noise" in label else x0
                try:  # the Student-t-noise run starts from the noise law nu = t_3
                    out = sampler.sample(target, start, steps, seed=seed)
                    x, grads = out.samples, out.grad_evals
                    finite = bool(torch.isfinite(x).all()) and x.abs().max().item() < 1e6
                except FloatingPointError:
                    x, grads, finite = start, steps + 2, False
                m = {"grad_evals": grads, "seconds": time.time() - t0}
                if not finite:  # diverged: reported as such, not averaged
                    m["w2"] = float("nan")
                    m["diverged"] = 1.0
                elif name == "funnel":
                    m["ks"] = sliced_ks(x, ref, seed=seed)
                    m["w2"] = entropic_w2(x, ref)
                elif name == "student_t":
                    m["ks"] = sliced_ks(x, ref, seed=seed)
                    m["w2"] = entropic_w2(x, ref)
                else:
                    m["w2"] = entropic_w2(x, ref)
                    k = target.means.shape[0]
                    lo, hi = (0.05, 0.20) if k == 8 else (0.5 / k, 2.0 / k)
                    m["coverage"] = coverage(target, x, lo, hi)
                rows.setdefault(label, []).append(m)
                if name == "ring8" and seed == seeds[0]:
                    samples_for_png[label] = x
                print(f"  {name} seed {seed} {label}: {m}", flush=True)
        lines += _table(name, rows, ref_floor, n, steps)
        res[name] = {label: {key: float(np.nanmean([m.get(key, np.nan) for m in ms]))
                             for key in {k for m in ms for k in m}} for label, ms in rows.items()}
        res[name + "_floor"] = float(np.mean(ref_floor)) if ref_floor else None
    return lines, res, samples_for_png


def _fmt(values) -> str:
    v = np.array(values, dtype=float)
    bad = int(np.isnan(v).sum())
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return f"diverged ({bad} of {bad})"
    text = f"{np.mean(v):.3f} ± {np.std(v):.3f}" if len(v) > 1 else f"{v[0]:.3f}"
    return text + (f" ({bad} diverged)" if bad else "")


def _table(name, rows, ref_floor, n, steps) -> list[str]:
    title = {"ring8": "8-Gaussian ring", "mixture40": "40-component mixture (2-D, box side 40)",
             "funnel": "Neal's funnel (d = 10, eta = 3)", "student_t": "Student-t (d = 2, 3 degrees of freedom)"}[name]
    k_seeds = len(next(iter(rows.values())))
    out = ["", f"### {title}: {n} chains, {steps} steps, {k_seeds} seed(s)", ""]
    metrics = ["w2"] + (["coverage"] if name in ("ring8", "mixture40") else []) + (
        ["ks"] if name in ("funnel", "student_t") else [])
    head = {"w2": "entropic W2", "coverage": "mode coverage", "ks": "sliced KS"}
    out.append("| sampler | gradients / chain | " + " | ".join(head[m] for m in metrics) + " | seconds / run |")
    out.append("|---|---|" + "---|" * len(metrics) + "---|")
    for label, ms in rows.items():
        cells = [_fmt([m.get(key, float("nan")) for m in ms]) for key in metrics]
        seconds = np.mean([m["seconds"] for m in ms])
        out.append(f"| {label} | {ms[0]['grad_evals']} | " + " | ".join(cells) + f" | {seconds:.1f} |")
    if ref_floor:
        out += ["", f"Entropic W2 between two independent exact samples of this size (the noise floor): "
                    f"{_fmt(ref_floor)}."]
    if name in PAPER_W2:
        out += ["", "The paper (30 seeds, 3e5 gradient evaluations, OTT entropic W2): " + ", ".join(
            f"{k} {v}" for k, v in PAPER_W2[name].items()) + "."]
    if name == "funnel":
        out += ["", "The paper's sliced KS: " + ", ".join(f"{k} {v}" for k, v in PAPER_KS_FUNNEL.items()) + "."]
    if name == "mixture40":
        out += ["", "Mode coverage here: the fraction of the 40 modes holding between 0.5/40 and 2/40 of the samples."]
    if name == "ring8":
        out += ["", "Mode coverage: the fraction of the 8 modes holding between 5% and 20% of the samples."]
    return out


def summary(res: dict) -> list[str]:
    """What the tables say against the paper's claims (numbers from this run)."""
    def get(name, prefix, key):
        return next(v[key] for k, v in res[name].items() if k.startswith(prefix))

    ring = {p: get("ring8", p, "w2") for p in ("ULMC", "annealed", "MultALMC", "MultCDiff")}
    mix = {p: get("mixture40", p, "w2") for p in ("ULMC", "annealed", "MultALMC", "MultCDiff")}
    fun = {p: get("funnel", p, "ks") for p in ("ULMC", "MultALMC", "MultCDiff")}
    stu = {p: get("student_t", p, "w2") for p in ("ULMC", "MultALMC, underdamped", "MultALMC, Student", "MultCDiff")}
    return [
        "## What reproduces and what does not",
        "",
        f"* **Mixtures (reproduced in direction).** At equal gradient budget MultALMC beats ULMC by a wide margin on "
        f"the 8-ring (W2 {ring['MultALMC']:.2f} against {ring['ULMC']:.2f}; all 8 modes covered against none: every "
        f"ULMC chain stays in the mode nearest its start) and on the 40-mixture ({mix['MultALMC']:.2f} against "
        f"{mix['ULMC']:.2f}), as the paper reports (0.65 against 6.90; 0.91 against 8.17). On the ring it is at the "
        f"sampling noise floor of 500 samples, level with the exact-score annealed oracle ({ring['annealed']:.2f}); "
        f"on the 40-mixture it beats the oracle ({mix['annealed']:.2f}, about half the modes covered; we have not "
        "found out why the exact path score does worse there with the same slow dynamics). Our absolute W2 "
        "values are not comparable with the paper's (500 samples, a debiased Sinkhorn divergence on a "
        "normalised cost, 100x fewer gradients).",
        f"* **MultCDiff (partly).** Ours is overdamped; its fast step is capped by stability at h/eps = 0.01 (the "
        f"paper's underdamped one runs at 0.1), and it trails MultALMC on the ring (W2 {ring['MultCDiff']:.2f}, "
        f"coverage 0.55) and the 40-mixture ({mix['MultCDiff']:.2f}) while still well ahead of ULMC. The paper's "
        "MultCDiff (0.62 on the ring) is not reproduced.",
        f"* **Funnel (not reproduced).** Sliced KS: ULMC {fun['ULMC']:.3f}, MultALMC {fun['MultALMC']:.3f}, "
        f"MultCDiff {fun['MultCDiff']:.3f}; the paper has the multiscale samplers far ahead (0.032 / 0.031 against "
        "0.123). The fast target at small lambda contains grad log pi(y / sqrt(lambda)), whose funnel curvature "
        "exp(-x_1) / lambda is unbounded: from the paper's lambda_delta = 0.01 and Y0 = X0 both samplers "
        "diverged within 50 steps, so they run here from lambda 0.1 with Y0 = sqrt(0.1) X0, stably but worse than "
        "ULMC. The paper's SROCK fast integrator (a larger stability domain) may be what makes the difference.",
        f"* **Student-t target.** Every Gaussian-noise sampler is close (W2: ULMC {stu['ULMC']:.2f}, MultALMC "
        f"{stu['MultALMC, underdamped']:.2f}, MultCDiff {stu['MultCDiff']:.2f}): a unimodal target gives "
        f"annealing nothing to win. The Student-t-noise MultALMC fails (W2 {stu['MultALMC, Student']:.1f}, sliced "
        "KS 0.40): along its path the intermediate laws have t_3 tails, the slow chains follow them out, and the "
        "score that pulls them back decays like 1 / |x|, too weak to return them within the run (the same happens "
        "on a Gaussian target). The paper pairs this variant with a modified Ito fast process (He et al. 2024) "
        "that is not built here.",
        "* **Gaussian targets (exact).** ULA's variance matches its closed form and OBABO's matches its Lyapunov "
        "solution within 2.5 SE at every step size, with bias / h (ULA) and bias / h^2 (OBABO) constant: orders 1 "
        "and 2. The annealed and multiscale samplers end within 0.07 of the exact mean and 0.10 of the exact "
        "covariance of their end law (at most about 3 standard errors; the short overdamped runs are the worst). "
        "The two MultCDiff rows coincide: with the step count fixed only h / eps "
        "and kappa h enter its discrete dynamics, and both are the same.",
    ]


def save_png(samples: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ring = GaussianMixture.ring8()
    fig, axes = plt.subplots(1, len(samples), figsize=(3.2 * len(samples), 3.2), sharex=True, sharey=True)
    for ax, (label, x) in zip(np.atleast_1d(axes), samples.items()):
        ax.scatter(x[:, 0], x[:, 1], s=2, alpha=0.5)
        ax.scatter(ring.means[:, 0], ring.means[:, 1], marker="x", c="red", s=30)
        ax.set_title(label.split(",")[0].split(" (")[0], fontsize=9)
        ax.set_xlim(-5, 25)
        ax.set_ylim(-5, 25)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description="Multiscale samplers against Langevin baselines (issue 19)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    root = Path(__file__).resolve().parents[2]
    out = args.out or (None if args.quick else str(root / "benchmarks/results/multiscale.md"))
    start = time.time()
    if args.quick:
        names, seeds, n, steps, n_gauss = ["ring8"], [0], 500, 1500, 4000
    else:
        names, seeds, n, steps = ["ring8", "mixture40", "funnel", "student_t"], [0, 1, 2, 3, 4], 500, 3000
        n_gauss = 10000
    g_lines, g_res = gaussian_section(n_gauss, args.quick)
    print(f"gaussian section done after {time.time() - start:.0f} s", flush=True)
    c_lines, c_res, png = comparison_section(names, seeds, n, steps)
    wall = time.time() - start
    if not args.quick:
        save_png(png, root / "benchmarks/results/multiscale.png")
    lines = [
        "# Multiscale samplers (MultALMC, MultCDiff) against Langevin baselines",
        "",
        f"Run {datetime.date.today()} on {describe()}; wall time {wall:.0f} s"
        + (" (--quick)" if args.quick else "") + ".",
        "",
        "Scaled down from the paper (Cordero-Encinar et al., arXiv 2508.15069, section 6) to fit a shared 2-core "
        f"machine: {n} chains, {steps} gradient evaluations per chain (the paper: 3e5 in 2-D), {len(seeds)} seed(s) "
        "(the paper: 30). Every sampler of a table gets the same number of time steps, one target gradient each "
        "(plus one or two at the start, counted). All chains start at N(0, I) (the Student-t-noise run at t_3 draws). "
        "The paper's MultCDiff is underdamped (critically damped); ours is overdamped, so it needs a 100x smaller "
        "step for a stable fast process at lambda = 0.99. The paper's fast integrator is SROCK (5 stages); ours is "
        "OBABO for the underdamped MultALMC (one gradient per step for both slow and fast parts). The annealed "
        "Langevin row uses the exact score of mu_lambda (an oracle no practical sampler has, the eps -> 0 limit of "
        "MultALMC), only for the mixtures where it is closed-form.",
        "",
        "## 1. Gaussian targets: exact answers",
        "",
        *g_lines,
        "",
        "## 2. Equal gradient budget",
        "",
        "Entropic W2: POT `ot.sinkhorn2`, reg 0.05 on the squared Euclidean cost divided by its maximum over the "
        "pooled samples, debiased (Sinkhorn divergence) and reported as sqrt; sliced KS: mean two-sample KS "
        "statistic over 64 random directions. Mean ± standard deviation over seeds.",
        *c_lines,
    ]
    if not args.quick:
        lines += ["", "Samples on the 8-Gaussian ring (seed 0): `benchmarks/results/multiscale.png`.", "",
                  *summary(c_res)]
    emit(lines, out)
    print("RESULT " + json.dumps({"gauss": {k: v for k, v in g_res.items()}, **c_res, "wall": wall}))


if __name__ == "__main__":
    main()
