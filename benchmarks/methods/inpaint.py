"""Must-show 2 of issue 13: inpainting by replacement against the exact conditional (Nie et al., ICLR 2024,
arXiv 2311.01410: SDE-DPM-Solver++ against DPM-Solver++ at equal NFE).

p_0 is a Gaussian mixture with full covariances (2-D: 3 components, coordinate 0 known; 8-D: 4 components,
coordinates 0-3 known) with its exact denoiser on VP. For a known x_k the exact conditional law of the masked
coordinates is the mixture with weights w_j N(x_k; m_jk, S_jkk), means m_ju + S_juk S_jkk^{-1} (x_k - m_jk) and
covariances S_juu - S_juk S_jkk^{-1} S_jku. ``sdekit.editing.inpaint`` fills the masked coordinates with
SDE-DPM-Solver++(2M) ("SDE"), DPM-Solver++(2M) ("ODE"), and SDE-DPM-Solver++ with 2 resampling rounds per step
("SDE r=5"; NFE = 2 x steps), at NFE 10/20/50/100; the distance is the sliced W2 (200 directions) between the
inpainted and exact conditional samples (n per known value), averaged over 4 known values drawn from p_0, beside
the noise floor (the same distance between two exact sets of n). Claim: the SDE version reaches at most 1.5x
the floor at NFE 100.

    python benchmarks/methods/inpaint.py           # about 4 minutes on 2 cores, 3 seeds
    python benchmarks/methods/inpaint.py --quick   # < 60 s (checked by a test)
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _machine import describe, emit  # noqa: E402

from sdekit.diffusion import DDIM, VP, DPMSolverPP, GaussianMixture, SDEDPMSolverPP  # noqa: E402
from sdekit.editing import inpaint  # noqa: E402
from sdekit.metrics import sliced_wasserstein  # noqa: E402


def make_problem(d: int) -> tuple[GaussianMixture, torch.Tensor]:
    """The mixture and the known-coordinate mask ``(d,)``."""
    g = torch.Generator().manual_seed(1234 + d)
    if d == 2:
        means = torch.tensor([[-2.0, -1.0], [0.5, 2.0], [2.0, -1.5]], dtype=torch.float64)
        covs = torch.tensor([[[0.5, 0.35], [0.35, 0.4]], [[0.3, -0.2], [-0.2, 0.4]], [[0.4, 0.0], [0.0, 0.2]]],
                            dtype=torch.float64)
        weights = torch.tensor([0.4, 0.35, 0.25], dtype=torch.float64)
    else:
        K = 4
        means = 2.0 * torch.randn(K, d, generator=g, dtype=torch.float64)
        A = torch.randn(K, d, d, generator=g, dtype=torch.float64) / d**0.5
        covs = 0.5 * A @ A.transpose(1, 2) + 0.1 * torch.eye(d, dtype=torch.float64)
        weights = torch.full((K,), 1.0 / K, dtype=torch.float64)
    mask = torch.zeros(d, dtype=torch.float64)
    mask[: d // 2] = 1.0
    return GaussianMixture(weights, means, covs), mask


def conditional(mix: GaussianMixture, mask: torch.Tensor, x_known: torch.Tensor) -> GaussianMixture:
    """The exact law of the coordinates ``mask == 0`` given ``x_known`` (``(d,)``) on ``mask == 1``."""
    k, u = mask.bool(), ~mask.bool()
    cov = mix.variances if mix.full else torch.diag_embed(mix.variances)
    xk = x_known[k]
    logw, means, covs = [], [], []
    for j in range(mix.num_components):
        m, S = mix.means[j], cov[j]
        Skk, Suk, Suu = S[k][:, k], S[u][:, k], S[u][:, u]
        gain = Suk @ torch.linalg.inv(Skk)
        diff = xk - m[k]
        logw.append(torch.log(mix.weights[j]) + torch.distributions.MultivariateNormal(m[k], Skk).log_prob(xk))
        means.append(m[u] + gain @ diff)
        covs.append(Suu - gain @ Suk.T)
    w = torch.softmax(torch.stack(logw), 0)
    covs_t = torch.stack(covs)
    return GaussianMixture(w, torch.stack(means), 0.5 * (covs_t + covs_t.transpose(1, 2)))


def swd(a: torch.Tensor, b: torch.Tensor, seed: int) -> float:
    return float(sliced_wasserstein(a, b, n_projections=200, seed=seed))


def run(d: int, seed: int, n: int, nfes: list[int], n_known: int) -> dict:
    mix, mask = make_problem(d)
    schedule = VP()
    model = mix.as_denoiser(schedule)
    g = torch.Generator().manual_seed(seed)
    knowns = mix.sample(n_known, g)
    methods = {"SDE": (SDEDPMSolverPP, 1), "ODE": (DPMSolverPP, 1), "SDE r=5": (lambda: DDIM(eta=1.0), 5)}
    out: dict = {name: {} for name in methods}
    floor = []
    for i, xk in enumerate(knowns):
        cond = conditional(mix, mask, xk)
        ref = cond.sample(n, g)
        floor.append(swd(cond.sample(n, g), ref, seed * 100 + i))
        x_known = xk.expand(n, d).clone()
        for name, (cls, rounds) in methods.items():
            for nfe in nfes:
                steps = nfe // rounds
                x, info = inpaint(model, schedule, x_known, mask, solver=cls(), steps=steps, resample=rounds,
                                  generator=g, return_info=True)
                assert info.nfe == nfe, (info.nfe, nfe)
                out[name].setdefault(nfe, []).append(swd(x[:, ~mask.bool()], ref, seed * 100 + i))
    res: dict = {name: {nfe: sum(v) / len(v) for nfe, v in vals.items()} for name, vals in out.items()}
    res["floor"] = sum(floor) / len(floor)
    return res


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    seeds = [0] if args.quick else [0, 1, 2]
    nfes = [10, 100] if args.quick else [10, 20, 50, 100]
    n, n_known = (1000, 2) if args.quick else (4000, 4)
    results = {d: [run(d, s, n, nfes, n_known) for s in seeds] for d in (2, 8)}
    seconds = time.perf_counter() - start

    def stat(vals: list[float]) -> tuple[float, float]:
        t = torch.tensor(vals)
        return float(t.mean()), float(t.std()) if len(vals) > 1 else 0.0

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["# Inpainting against the exact conditional (issue 13, must-show 2)", "",
             f"Generated by `benchmarks/methods/inpaint.py{' --quick' if args.quick else ''}` on {now}; machine: "
             f"{describe()}; wall time {seconds:.0f} s.", "",
             f"Sliced W2 (200 directions) of {n} inpainted samples to {n} exact conditional samples, averaged over "
             f"{n_known} known values; mean +- sd over seeds {seeds}; `ratio` = distance / noise floor.", ""]
    summary: dict = {"seconds": seconds}
    for d in (2, 8):
        fl = stat([r["floor"] for r in results[d]])
        lines += [f"## d = {d} (known coordinates 0..{d // 2 - 1})", "",
                  f"Noise floor: {fl[0]:.4f} +- {fl[1]:.4f}", "",
                  "| NFE | " + " | ".join(f"{m} (ratio)" for m in ("SDE", "ODE", "SDE r=5")) + " |",
                  "|---|---|---|---|"]
        for nfe in nfes:
            cells = []
            for m in ("SDE", "ODE", "SDE r=5"):
                mu, sd = stat([r[m][nfe] for r in results[d]])
                cells.append(f"{mu:.4f} +- {sd:.4f} ({mu / fl[0]:.2f})")
                summary[f"d{d} {m} {nfe}"] = mu / fl[0]
            lines.append(f"| {nfe} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["Replacement is not exact conditional sampling: the known coordinates are re-drawn from their forward "
              "marginal at every step, so the unknown ones never see the joint reverse dynamics (on a correlated "
              "2-D Gaussian with known x_0 = 2 the exact conditional mean of x_1 is 1.6; SDE replacement gives "
              "about 1.0, ODE replacement 0.66). Resampling rounds move it toward the conditional.", "",
              f"Claim (SDE at NFE 100 within 1.5x the floor): d = 2 ratio {summary['d2 SDE 100']:.2f}, "
              f"d = 8 ratio {summary['d8 SDE 100']:.2f}; ODE at NFE 100: d = 2 {summary['d2 ODE 100']:.2f}, "
              f"d = 8 {summary['d8 ODE 100']:.2f}.", "",
              "Paper (Nie et al. 2024, Table 3, inpainting on Places/CelebA with 50 steps): SDE-DPM-Solver++ has the "
              "lower FID than DPM-Solver++ at equal steps."]
    out = args.out or (None if args.quick else str(Path(__file__).resolve().parents[1] / "results" / "inpaint.md"))
    emit(lines, out)
    print("RESULT " + json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
