"""Gradients through sampling, the whole battery: AdjointDEIS with default settings against backprop through
the same sampler, with the step count, grid, dimension and sampler that users run.

Problems: Gaussian mixtures with tight components (standard deviation 0.05 to 0.15) in 2, 8 and 32
dimensions under ``VP(beta_min=0.1, beta_max=20)``, shifted by a conditioning vector ``c`` and a learnable
``shift`` and scaled by a learnable ``scale`` (so gradients reach ``x_T``, ``c`` and parameters). Samplers
ddim, dpm++2m, dpm++3m, unipc, deis and sde-dpm++2m (a per-sample Brownian path); 10, 20 and 50 steps;
uniform-t and uniform log-SNR grids; float64. ``AdjointDEIS(order=k)`` with ``k`` the sampler's order capped
at 2 and every other setting default, i.e. the transposed sampler (``discretisation="transpose"``) with the
path rebuilt where the sampler declares an inverse (DDIM) and replayed from ``ceil(sqrt(n))`` checkpoints
otherwise. Each case reports the largest relative error (2-norm) over the three gradients, the path used
and, for rebuilt paths, whether the self-check fell back to replay.

Memory (second table): the tensors AdjointDEIS keeps (``AdjointStats``: saved for backward + held sampler
states + the backward pass's peak working set) at 10 and 200 steps, on the 8-dimensional problem; flat where
the path is rebuilt, ``O(sqrt(steps))`` where it is replayed.

The test suite runs a fast subset (``tests/diffusion/test_adjoint_deis.py``); this script runs the whole
grid: ``python benchmarks/adjoint_battery.py [--out benchmarks/results/adjoint_battery.md]``.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import math
import time

import torch
from torch import nn

from sdekit import BrownianPath
from sdekit.diffusion import VP, AdjointDEIS, GaussianMixture, get_sampler, sample

SCHEDULE = VP(beta_min=0.1, beta_max=20.0)
SAMPLERS = ("ddim", "dpm++2m", "dpm++3m", "unipc", "deis", "sde-dpm++2m")
STEPS = (10, 20, 50)
GRIDS = ("uniform", "logsnr")
DIMS = (2, 8, 32)
BATCH = 16


def tight_mixture(dim: int, seed: int = 0, components: int = 6, dtype=torch.float64) -> GaussianMixture:
    """``components`` Gaussians with means in ``[-2, 2]^dim`` and standard deviations in [0.05, 0.15]."""
    g = torch.Generator().manual_seed(seed)
    means = 4.0 * torch.rand(components, dim, generator=g, dtype=dtype) - 2.0
    stds = 0.05 + 0.1 * torch.rand(components, generator=g, dtype=dtype)
    weights = torch.rand(components, generator=g, dtype=dtype) + 0.5
    return GaussianMixture(weights / weights.sum(), means, stds**2)


class ShiftedMixture(nn.Module):
    """``D(x, t; c) = scale * D_mix(x - alpha (c + shift), t) + c + shift``: the exact denoiser of the mixture
    moved to ``c + shift`` when ``scale = 1``; ``scale`` and ``shift`` are parameters."""

    def __init__(self, mixture: GaussianMixture, dim: int, dtype=torch.float64):
        super().__init__()
        self.mixture = mixture
        self.scale = nn.Parameter(torch.tensor(1.05, dtype=dtype))
        self.shift = nn.Parameter(torch.linspace(-0.1, 0.1, dim, dtype=dtype))

    def forward(self, x, t, c):
        m = c + self.shift
        alpha = SCHEDULE.alpha(t).to(x).reshape(-1, *([1] * (x.dim() - 1)))
        return self.scale * self.mixture.denoiser(x - alpha * m, t, SCHEDULE) + m


def sampler_order(name: str) -> int:
    """The AdjointDEIS ``order`` the battery passes: the sampler's order capped at 2."""
    return max(1, min(2, int(get_sampler(name).order)))


def gradients(net: ShiftedMixture, solver: str, steps: int, grid: str, strategy, dim: int, seed: int = 0,
              dtype=torch.float64) -> tuple[dict, object]:
    """Gradients of ``sum(w * x_0)`` in ``x_T``, ``c`` and the parameters, and the ``AdjointStats`` (``None``
    for backprop)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, dim, generator=g, dtype=dtype).requires_grad_(True)
    w = torch.randn(BATCH, dim, generator=g, dtype=dtype)
    c = (0.2 * torch.randn(dim, generator=g, dtype=dtype)).requires_grad_(True)
    bm = BrownianPath(SCHEDULE.t_min, SCHEDULE.t_max, (BATCH, dim), seed=seed + 1, dtype=dtype)
    net.zero_grad()
    out, info = sample(net, SCHEDULE, x, steps=steps, timesteps=grid, solver=solver, prediction="x0", bm=bm,
                       model_kwargs={"c": c}, adjoint=strategy, return_info=True)
    (out * w).sum().backward()
    grads = {"x_T": x.grad.flatten(), "c": c.grad.clone(),
             "params": torch.cat([net.scale.grad.reshape(1), net.shift.grad])}
    return grads, info.adjoint_stats


def relative_error(got: dict, ref: dict) -> float:
    """The largest relative error (2-norm) over the gradients."""
    return max(float((got[k] - ref[k]).norm() / ref[k].norm()) for k in got)


def run_case(dim: int, solver: str, steps: int, grid: str, dtype=torch.float64, **adjoint_kwargs) -> dict:
    """One case of the battery: relative error against backprop and the strategy's statistics."""
    net = ShiftedMixture(tight_mixture(dim, dtype=dtype), dim, dtype=dtype)
    ref, _ = gradients(net, solver, steps, grid, None, dim, dtype=dtype)
    got, stats = gradients(net, solver, steps, grid, AdjointDEIS(sampler_order(solver), **adjoint_kwargs), dim,
                           dtype=dtype)
    return {"error": relative_error(got, ref), "stats": stats,
            "memory": stats.saved_bytes + stats.held_bytes + stats.peak_working_bytes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="also write the report to this file")
    args = parser.parse_args()
    from _machine import describe, emit  # noqa: PLC0415  (benchmarks/ is the script's folder)

    started = time.perf_counter()
    lines = [f"# Gradients through sampling: the AdjointDEIS battery ({datetime.date.today()})", "",
             f"Machine: {describe()}", "",
             "Default `AdjointDEIS(order=min(order, 2))` against backprop through the same sampler, float64; "
             "error = max over (x_T, c, params) of the relative 2-norm error.", "",
             "| dim | sampler | grid | steps 10 | steps 20 | steps 50 | path |", "|---|---|---|---|---|---|---|"]
    worst, cases, rebuilt, fallbacks = 0.0, 0, 0, 0
    for dim, solver, grid in itertools.product(DIMS, SAMPLERS, GRIDS):
        cells, paths = [], set()
        for steps in STEPS:
            case = run_case(dim, solver, steps, grid)
            stats = case["stats"]
            worst, cases = max(worst, case["error"]), cases + 1
            if stats.rebuild_error is not None:
                rebuilt += 1
                fallbacks += stats.fallback
            cells.append(f"{case['error']:.1e}" + (" (fell back)" if stats.fallback else ""))
            paths.add("rebuilt" if stats.rebuild_error is not None and not stats.fallback else stats.trajectory)
        lines.append(f"| {dim} | {solver} | {grid} | " + " | ".join(cells) + f" | {', '.join(sorted(paths))} |")
    lines += ["", f"{cases} cases; largest relative error {worst:.1e} (target <= 1e-6); rebuilt paths "
              f"attempted in {rebuilt} cases, {fallbacks} fell back to checkpointed replay.", "",
              "## Memory kept by AdjointDEIS, 8 dimensions, log-SNR grid", "",
              "| sampler | path | bytes at 10 steps | bytes at 200 steps | ratio | sqrt(200/10) |",
              "|---|---|---|---|---|---|"]
    rows = [(solver, solver, {}) for solver in SAMPLERS]
    rows.append(("ddim, rebuild_iterations=1 (forced fallback)", "ddim", {"rebuild_iterations": 1}))
    for label, solver, kwargs in rows:
        small, large = (run_case(8, solver, n, "logsnr", **kwargs) for n in (10, 200))
        paths = {"rebuilt" if c["stats"].rebuild_error is not None and not c["stats"].fallback
                 else ("rebuild failed, replayed" if c["stats"].fallback else c["stats"].trajectory)
                 for c in (small, large)}
        lines.append(f"| {label} | {', '.join(sorted(paths))} | {small['memory']} | {large['memory']} | "
                     f"{large['memory'] / small['memory']:.2f} | {math.sqrt(20):.2f} |")
    lines += ["", f"Wall time: {time.perf_counter() - started:.0f} s."]
    emit(lines, args.out)


if __name__ == "__main__":
    main()
