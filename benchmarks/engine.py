"""Engine benchmark: Euler-Maruyama on a 64-dimensional diagonal Ornstein-Uhlenbeck process.

Compares ``sdekit.sdeint`` against a hand-written torch loop (the floor: the same f and g calls,
one ``randn`` per step) and ``torchsde.sdeint`` on the same SDE object, at batch 64 and 1024 with
1000 steps on the CPU. Ratios are measured in the same run (best of several repeats, the hand loop's
and sdekit's interleaved), since the machines are shared and noisy.
Run: ``python benchmarks/engine.py [--repeats 7] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import datetime
import time

import torch
from _machine import describe, emit

import sdekit


class OU(torch.nn.Module):
    noise_type, sde_type = "diagonal", "ito"

    def __init__(self, d=64, theta=1.0, sigma=0.5):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("mu", torch.randn(d, generator=g))
        self.theta, self.sigma = theta, sigma

    def f(self, t, y):
        return self.theta * (self.mu - y)

    def g(self, t, y):
        return torch.full_like(y, self.sigma)


def hand_loop(sde, y0, steps, T):
    dt = T / steps
    sqrt_dt = dt**0.5
    y = y0
    for k in range(steps):
        t = k * dt
        y = y + sde.f(t, y) * dt + sde.g(t, y) * (sqrt_dt * torch.randn_like(y))
    return y


def run_sdekit(sde, y0, steps, T):
    return sdekit.sdeint(sde, y0, [0.0, T], method="euler", dt=T / steps)[-1]


def run_torchsde(sde, y0, steps, T):
    import torchsde

    return torchsde.sdeint(sde, y0, torch.tensor([0.0, T]), method="euler", dt=T / steps)[-1]


def best_times(fns, repeats):
    """Best wall time of each function, the repeats interleaved (a, b, a, b, ...) so that a slow
    phase of a shared machine hits every contender alike."""
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return [min(ts) for ts in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 1024])
    parser.add_argument("--out", default=None, help="also write the markdown table to this file")
    args = parser.parse_args()
    torch.manual_seed(0)
    sde, T = OU(), 1.0
    lines = [
        f"# Engine benchmark ({datetime.date.today()})",
        "",
        f"Machine: {describe()}",
        "",
        f"Euler-Maruyama, 64-d diagonal OU, {args.steps} steps, CPU, best of {args.repeats}.",
        "",
        "| batch | hand loop (ms) | sdekit (ms) | torchsde (ms) | sdekit / hand | torchsde / sdekit |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for batch in args.batches:
        y0 = torch.zeros(batch, 64)
        for fn in (hand_loop, run_sdekit, run_torchsde):  # warm-up
            fn(sde, y0, 50, T)
        t_hand, t_ours = best_times([lambda y0=y0: hand_loop(sde, y0, args.steps, T),
                                     lambda y0=y0: run_sdekit(sde, y0, args.steps, T)], args.repeats)
        (t_tsde,) = best_times([lambda y0=y0: run_torchsde(sde, y0, args.steps, T)], max(2, args.repeats // 2))
        lines.append(f"| {batch} | {1e3 * t_hand:.1f} | {1e3 * t_ours:.1f} | {1e3 * t_tsde:.1f} | "
                     f"{t_ours / t_hand:.2f}x | {t_tsde / t_ours:.1f}x |")
    lines += ["", "Targets: sdekit within 1.5x of the hand loop; torchsde at least 5x slower than sdekit."]
    emit(lines, args.out)


if __name__ == "__main__":
    main()
