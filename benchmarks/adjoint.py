"""Adjoint strategies: peak memory against the number of steps, and time against torchsde.

Problem: a neural SDE (Stratonovich, diagonal noise; MLP drift, MLP diffusion scaled by 0.1), batch
64, 16 dimensions, hidden width 64, float32, 11 output times on [0, 1], loss = sum of squares of all
outputs; one forward and one backward pass per measurement. Each library uses its default Brownian
source (sdekit: seeded increments by step, torchsde: ``BrownianInterval``).

Peak memory (CPU). ``tracemalloc`` does not see torch's allocations, and there is no CPU counterpart
of ``torch.cuda.max_memory_allocated``, so the script reads glibc's own count of heap bytes in use
(``mallinfo2()``: ``uordblks + hblkhd``, all arenas, small and mmap-ed blocks). Torch's CPU tensors,
autograd graph nodes and saved activations and the solvers' bookkeeping are all malloc-ed, so this
is the memory the run really holds; Python's small objects (pymalloc arenas) are not included. The
count is sampled at every drift and diffusion evaluation (the forward steps, the recomputation of
checkpointed segments and every step of a backward solve call them), right after the forward pass
and after the backward pass; the peak minus the count just before the forward pass is reported.
Between two drift/diffusion calls a step holds only a few state-sized temporaries, so sampling at
those calls misses at most that. With a CUDA device (``--device cuda``) the script reports
``torch.cuda.max_memory_allocated`` instead.

Time: forward + backward at ``--time-steps`` steps (default 1000), median of ``--repeats`` runs after
a warm-up, one thread, sdekit and torchsde alternating in the same process; the ratio column is
sdekit's time over torchsde's on the same problem, the same forward method and the same adjoint
method.

Run: ``python benchmarks/adjoint.py [--steps 100 1000 10000] [--repeats 3] [--out FILE]``
(``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import statistics
import subprocess
import time

import torch
import torchsde
from _machine import cpu_model, emit

import sdekit
from sdekit import Backprop, Checkpointed, ContinuousAdjoint, ReversibleAdjoint


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                 "fordblks", "keepcost")]


class HeapMeter:
    """Peak of glibc's in-use heap bytes (or CUDA allocated bytes) over the samples of one run."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        if not self.cuda:
            self.libc = ctypes.CDLL("libc.so.6")
            self.libc.mallinfo2.restype = _MallInfo2
        self.active = False
        self.base = self.peak = 0

    def used(self) -> int:
        if self.cuda:
            return torch.cuda.memory_allocated()
        info = self.libc.mallinfo2()
        return info.uordblks + info.hblkhd

    def sample(self, force: bool = False) -> None:
        if not self.active or self.cuda:
            return
        self.calls += 1
        if not force and self.calls < self.next_call:
            return
        t0 = time.perf_counter()
        self.peak = max(self.peak, self.used())
        # mallinfo2 walks the allocator's free lists, so on a large fragmented heap it is slow: sample
        # every call while that costs under 50 us, else every k-th call (memory then grows step by step,
        # and the forced samples after the forward and the backward pass catch the end points).
        self.next_call = self.calls + max(1, int((time.perf_counter() - t0) / 50e-6))

    def measure(self, run) -> int:
        gc.collect()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        self.base = self.peak = self.used()
        self.calls, self.next_call = 0, 0
        self.active = True
        try:
            run(self.sample)
        finally:
            self.active = False
        if self.cuda:
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - self.base
        return self.peak - self.base


class NeuralSDE(torch.nn.Module):
    """MLP drift and diffusion (the diffusion scaled by 0.1); ``probe()`` is called at every evaluation.
    ``sde_type="ito"`` uses an elementwise diffusion network (g_i depends on y_i: diagonal noise in the
    sense the Ito-Stratonovich conversion of both libraries assumes)."""

    noise_type = "diagonal"

    def __init__(self, d: int, hidden: int, sde_type: str = "stratonovich") -> None:
        super().__init__()
        self.sde_type = sde_type
        self.drift = torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.Tanh(),
                                         torch.nn.Linear(hidden, d))
        g_in, g_out = (1, 1) if sde_type == "ito" else (d, d)
        self.diffusion = torch.nn.Sequential(torch.nn.Linear(g_in, hidden), torch.nn.Tanh(),
                                             torch.nn.Linear(hidden, g_out), torch.nn.Sigmoid())
        self.probe = lambda: None

    def f(self, t, y):
        self.probe()
        return self.drift(y)

    def g(self, t, y):
        self.probe()
        if self.sde_type == "ito":
            return 0.1 * self.diffusion(y.unsqueeze(-1)).squeeze(-1)
        return 0.1 * self.diffusion(y)


# name -> (library, forward method, strategy / torchsde call)
def _runners(sde, y0, ts, steps):
    dt = 1.0 / steps

    def ours(method, adjoint):
        return lambda: sdekit.sdeint(sde, y0, ts, method=method, dt=dt, adjoint=adjoint)

    def theirs(method, adjoint_method=None):
        if adjoint_method is None:
            return lambda: torchsde.sdeint(sde, y0, ts, method=method, dt=dt)
        return lambda: torchsde.sdeint_adjoint(sde, y0, ts, method=method, dt=dt,
                                               adjoint_method=adjoint_method)

    return {
        "sdekit Backprop": ours("reversible_heun", Backprop()),
        "sdekit Checkpointed": ours("reversible_heun", Checkpointed()),
        "sdekit ContinuousAdjoint": ours("midpoint", ContinuousAdjoint()),
        "sdekit ReversibleAdjoint": ours("reversible_heun", ReversibleAdjoint()),
        "torchsde sdeint (backprop)": theirs("reversible_heun"),
        "torchsde sdeint_adjoint (midpoint)": theirs("midpoint", "midpoint"),
        "torchsde sdeint_adjoint (reversible)": theirs("reversible_heun", "adjoint_reversible_heun"),
    }


def _forward_backward(make_ys, params, y0):
    ys = make_ys()
    (ys**2).sum().backward()
    for p in (*params, y0):
        p.grad = None


def memory_table(args, device) -> list[str]:
    meter = HeapMeter(device)
    torch.manual_seed(0)
    sde = NeuralSDE(args.dim, args.hidden).to(device)
    y0 = torch.randn(args.batch, args.dim, device=device, requires_grad=True)
    ts = torch.linspace(0.0, 1.0, 11, device=device)
    params = list(sde.parameters())
    names = list(_runners(sde, y0, ts, 10))
    rows = {name: [] for name in names}
    for make_ys in _runners(sde, y0, ts, 20).values():  # warm-up: first-call allocations are not the run's
        _forward_backward(make_ys, params, y0)
    for steps in args.steps:
        for name, make_ys in _runners(sde, y0, ts, steps).items():
            if name.startswith("torchsde") and steps > args.torchsde_max_steps:
                rows[name].append(None)
                continue

            def run(sample, make_ys=make_ys):
                sde.probe = sample
                ys = make_ys()
                sample(force=True)
                (ys**2).sum().backward()
                sample(force=True)
                del ys

            try:
                peak = meter.measure(run)
            finally:
                sde.probe = lambda: None
                for p in (*params, y0):
                    p.grad = None
            rows[name].append(peak)
            print(f"  memory {name:<38} {steps:>6} steps: {peak / 2**20:8.2f} MiB", flush=True)
    what = "torch.cuda.max_memory_allocated" if meter.cuda else "glibc heap in use (mallinfo2)"
    head = " | ".join(f"{s} steps" for s in args.steps)
    lines = [f"Peak memory above the baseline, MiB ({what}); last column: largest over smallest step count.",
             "", f"| strategy | {head} | growth |", "|---|" + "---:|" * (len(args.steps) + 1)]
    for name in names:
        values = rows[name]
        cells = " | ".join("-" if v is None else f"{v / 2**20:.2f}" for v in values)
        measured = [v for v in values if v is not None]
        lines.append(f"| {name} | {cells} | {measured[-1] / max(measured[0], 1):.2f}x |")
    if any(v is None for values in rows.values() for v in values):
        lines += ["", f"torchsde rows stop at {args.torchsde_max_steps} steps to keep the default run short "
                  "(`--torchsde-max-steps 10000` measures them too)."]
    return lines


def time_table(args, device) -> list[str]:
    torch.manual_seed(0)
    lines = [f"Time, forward + backward, {args.time_steps} steps, median of {args.repeats} (seconds); "
             "ratio = sdekit / torchsde.", "",
             "| problem | sdekit | s | torchsde | s | ratio |", "|---|---|---:|---|---:|---:|"]
    pairs = [
        ("Stratonovich", "sdekit ContinuousAdjoint", "torchsde sdeint_adjoint (midpoint)"),
        ("Stratonovich", "sdekit ReversibleAdjoint", "torchsde sdeint_adjoint (reversible)"),
        ("Stratonovich", "sdekit Backprop", "torchsde sdeint (backprop)"),
        ("Stratonovich", "sdekit Checkpointed", "torchsde sdeint (backprop)"),
    ]
    sde = NeuralSDE(args.dim, args.hidden).to(device)
    y0 = torch.randn(args.batch, args.dim, device=device, requires_grad=True)
    ts = torch.linspace(0.0, 1.0, 11, device=device)
    runners = _runners(sde, y0, ts, args.time_steps)
    params = list(sde.parameters())
    # Ito: Euler forward; torchsde's default adjoint method for Ito diagonal noise is Milstein, sdekit
    # solves the Stratonovich form of the adjoint with midpoint.
    ito = NeuralSDE(args.dim, args.hidden, sde_type="ito").to(device)
    dt = 1.0 / args.time_steps
    runners["sdekit ContinuousAdjoint (Ito, euler)"] = \
        lambda: sdekit.sdeint(ito, y0, ts, method="euler", dt=dt, adjoint=ContinuousAdjoint())
    runners["torchsde sdeint_adjoint (Ito, euler)"] = \
        lambda: torchsde.sdeint_adjoint(ito, y0, ts, method="euler", dt=dt)
    pairs.append(("Ito", "sdekit ContinuousAdjoint (Ito, euler)", "torchsde sdeint_adjoint (Ito, euler)"))
    params += list(ito.parameters())

    def timed(name):
        t0 = time.perf_counter()
        _forward_backward(runners[name], params, y0)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    warm = _runners(sde, y0, ts, 50)
    warm["sdekit ContinuousAdjoint (Ito, euler)"] = \
        lambda: sdekit.sdeint(ito, y0, ts, method="euler", dt=0.02, adjoint=ContinuousAdjoint())
    warm["torchsde sdeint_adjoint (Ito, euler)"] = \
        lambda: torchsde.sdeint_adjoint(ito, y0, ts, method="euler", dt=0.02)
    for make_ys in warm.values():  # warm-up
        _forward_backward(make_ys, params, y0)
    for problem, ours, theirs in pairs:
        t_ours, t_theirs = [], []
        for _ in range(args.repeats):  # alternate, so both see the same machine load
            t_ours.append(timed(ours))
            t_theirs.append(timed(theirs))
        a, b = statistics.median(t_ours), statistics.median(t_theirs)
        lines.append(f"| {problem} | {ours.removeprefix('sdekit ')} | {a:.2f} | "
                     f"{theirs.removeprefix('torchsde ')} | {b:.2f} | {a / b:.2f}x |")
        print(f"  time {ours} {a:.2f}s vs {theirs} {b:.2f}s", flush=True)
    return lines


def machine(device: str) -> list[str]:
    cpu = cpu_model()
    uname = subprocess.run(["uname", "-a"], capture_output=True, text=True).stdout.strip()
    out = [f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}", f"- uname -a: `{uname}`",
           f"- CPU: {cpu} ({torch.get_num_threads()} torch thread(s))",
           f"- torch {torch.__version__}, torchsde {torchsde.__version__}, sdekit {sdekit.__version__}"]
    if device.startswith("cuda"):
        out.append(f"- GPU: {torch.cuda.get_device_name()}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--time-steps", type=int, default=1000)
    parser.add_argument("--torchsde-max-steps", type=int, default=1000,
                        help="largest step count of the torchsde memory rows")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dim", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="smoke run: 20/200 steps, one repeat")
    parser.add_argument("--out", default=None, help="also write the markdown report to this file")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.time_steps, args.repeats = [20, 200], 100, 1
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    lines = ["# Adjoint strategies: memory and time", "", *machine(args.device), "",
             f"Neural SDE, diagonal noise, batch {args.batch}, d {args.dim}, hidden {args.hidden}, float32, "
             f"11 output times on [0, 1], device {args.device}. Method of measurement: see the docstring of "
             "`benchmarks/adjoint.py`.", ""]
    lines += memory_table(args, args.device)
    lines += ["", *time_table(args, args.device)]
    lines += ["", "Targets: ContinuousAdjoint and ReversibleAdjoint flat within 1.2x from 100 to 10,000 "
              "steps, Checkpointed about sqrt(n), Backprop linear.", "",
              f"Total run time {time.perf_counter() - start:.0f} s."]
    emit(lines, args.out)


if __name__ == "__main__":
    main()
