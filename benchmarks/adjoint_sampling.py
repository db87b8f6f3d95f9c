"""Gradients through sampling: peak memory and time of AdjointDEIS against backprop, 10 to 1000 steps.

Problem: ``sdekit.nn.MLPDenoiser(64, hidden=256, depth=3)`` as an eps-prediction model on the VP
schedule, batch 64, float32, uniform log-SNR grid; loss = sum of squares of the sample; gradients with
respect to ``x_T`` and all network parameters; one forward and one backward pass per measurement.

* ODE: DPM-Solver++(2M) forward; ``adjoint=None`` (backprop) against the default ``AdjointDEIS()`` (the
  transposed sampler, exact; a multistep path cannot be rebuilt, so ``ceil(sqrt(n))`` states are stored
  and segments replayed: memory grows as ``sqrt(n)``) and ``AdjointDEIS(2, discretisation="continuous")``
  (the paper's adjoint ODE, path rebuilt backwards, memory independent of the steps, not the sampler's
  gradient).
* DDIM: deterministic DDIM forward; backprop against the default ``AdjointDEIS()`` (transposed, path
  rebuilt by inverting each step, checked against ``x_T``: memory independent of the steps while the
  check passes).
* SDE: DDIM with ``eta = 1`` (reverse SDE) on a seeded Brownian grid; backprop against the default
  ``AdjointDEIS()`` (checkpointed replay with the same noise: stored states grow as ``sqrt(n)``).

Memory, measured three ways in the same process (CPU has no ``max_memory_allocated``):

1. ``saved``: the peak total bytes of the tensors autograd keeps for backward, seen through
   ``torch.autograd.graph.saved_tensors_hooks`` (pack/unpack hooks on every saved tensor, counted once
   per storage while any reference to it is alive; this includes AdjointDEIS's own saved state and the
   per-step graph its backward pass builds for each vector-Jacobian product), **plus** the tensors
   AdjointDEIS holds outside autograd: its sampler states at checkpoints and the working set of its
   backward pass (state, adjoints, multistep history, replayed segment), reported by
   ``info.adjoint_stats``. Backprop's number is its saved activations (its forward states are among
   them).
2. ``malloc``: glibc's count of heap bytes in use (``mallinfo2()``: ``uordblks + hblkhd``, all arenas),
   sampled before and after every model call and after the forward and backward passes; the peak minus
   the count before the forward pass. It sees everything torch allocates on the CPU (activations, graph
   nodes, temporaries that live across a model call), not Python's small objects. Only on glibc.
3. With ``--device cuda`` (or ``--device auto`` where CUDA is available):
   ``torch.cuda.max_memory_allocated`` minus the allocation before the pass.

Time: forward + backward, best of ``--repeats`` runs without any meter, after a warm-up.

The table prints each strategy's memory and time, its ratios to backprop at the same step count, and
its memory relative to its own first-step-count run (``flat``: the continuous adjoint and the rebuilt
DDIM path must stay within 1.2x).

Run: ``python benchmarks/adjoint_sampling.py [--steps 10 50 200 1000] [--repeats 2] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import time

import torch
from _machine import describe, emit
from torch import nn

from sdekit.core.brownian import BrownianGrid
from sdekit.diffusion import DDIM, VP, AdjointDEIS, DPMSolverPP, sample
from sdekit.diffusion.timesteps import UniformLogSNR
from sdekit.nn import MLPDenoiser

MB = 2.0**20


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
        "keepcost")]


class MallocMeter:
    """Peak of glibc's in-use heap bytes, sampled by :meth:`sample`."""

    def __init__(self) -> None:
        try:
            libc = ctypes.CDLL("libc.so.6")
            libc.mallinfo2.restype = _MallInfo2
            self._info = libc.mallinfo2
        except (OSError, AttributeError):
            self._info = None
        self.base = self.peak = 0

    @property
    def available(self) -> bool:
        return self._info is not None

    def current(self) -> int:
        info = self._info()
        return info.uordblks + info.hblkhd

    def start(self) -> None:
        if self._info is not None:
            self.base = self.peak = self.current()

    def sample(self) -> None:
        if self._info is not None:
            self.peak = max(self.peak, self.current())


class SavedMeter:
    """Peak total bytes of distinct storages saved for backward (saved-tensor hooks)."""

    def __init__(self) -> None:
        self.live: dict[int, list] = {}
        self.current = self.peak = 0

    def pack(self, tensor):
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        entry = self.live.get(key)
        if entry is None:
            self.live[key] = entry = [0, storage.nbytes()]
            self.current += entry[1]
            self.peak = max(self.peak, self.current)
        entry[0] += 1
        return _Handle(self, key, tensor)

    @staticmethod
    def unpack(handle):
        return handle.tensor


class _Handle:
    def __init__(self, meter: SavedMeter, key: int, tensor) -> None:
        self.meter, self.key, self.tensor = meter, key, tensor

    def __del__(self) -> None:
        entry = self.meter.live[self.key]
        entry[0] -= 1
        if entry[0] == 0:
            del self.meter.live[self.key]
            self.meter.current -= entry[1]


class Metered(nn.Module):
    """The network, with the malloc meter sampled around every call."""

    def __init__(self, net: nn.Module, meter: MallocMeter) -> None:
        super().__init__()
        self.net, self.meter = net, meter

    def forward(self, x, t):
        self.meter.sample()
        out = self.net(x, t)
        self.meter.sample()
        return out


def run_once(model, schedule, x_T, steps, variant, strategy, device):
    solver = {"ODE": DPMSolverPP(2), "DDIM": DDIM(), "SDE": DDIM(eta=1.0)}[variant]
    bm = None
    if variant == "SDE":
        times = UniformLogSNR().times(schedule, steps)
        bm = BrownianGrid(times, tuple(x_T.shape), seed=0, dtype=x_T.dtype, device=device)
    x = x_T.clone().requires_grad_(True)
    out, info = sample(model, schedule, x, steps=steps, timesteps="logsnr", solver=solver, bm=bm, adjoint=strategy,
                       return_info=True)
    return out, x, info.adjoint_stats


def measure(net, schedule, x_T, steps, variant, make_strategy, device, repeats):
    """Memory (three ways) and time of one forward + backward pass."""
    malloc = MallocMeter()
    model = Metered(net, malloc)
    saved = SavedMeter()
    strategy = make_strategy()
    net.zero_grad(set_to_none=True)
    gc.collect()
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        cuda_base = torch.cuda.memory_allocated()
    malloc.start()
    with torch.autograd.graph.saved_tensors_hooks(saved.pack, saved.unpack):
        out, x, st = run_once(model, schedule, x_T, steps, variant, strategy, device)
        malloc.sample()
        out.square().sum().backward()
        malloc.sample()
    cuda_peak = (torch.cuda.max_memory_allocated() - cuda_base) if cuda else None
    held, path = 0, "-"
    if st is not None:
        held = st.peak_working_bytes + st.held_bytes
        path = "rebuilt" if st.trajectory == "reconstruct" else st.trajectory
        path += " (rebuild failed its check)" if st.fallback else ""
    grad = torch.cat([x.grad.flatten()] + [p.grad.flatten() for p in net.parameters()])
    del out, x
    # time, without meters
    best = float("inf")
    for _ in range(repeats):
        strategy = make_strategy()
        net.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out, x, _ = run_once(net, schedule, x_T, steps, variant, strategy, device)
        out.square().sum().backward()
        if cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
        del out, x
    return {"saved": saved.peak + held, "malloc": (malloc.peak - malloc.base) if malloc.available else None,
            "cuda": cuda_peak, "time": best, "grad": grad, "path": path}


def _mb(v) -> str:
    return "-" if v is None else f"{v / MB:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 50, 200, 1000])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--out", default=None, help="also write the markdown report to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    schedule = VP()
    net = MLPDenoiser(64, hidden=256, depth=3, seed=0).to(device)
    x_T = schedule.prior_sample((args.batch, 64), torch.Generator().manual_seed(0)).to(device)
    strategies = {
        "ODE": [("backprop", lambda: None), ("AdjointDEIS", lambda: AdjointDEIS()),
                ("continuous-2", lambda: AdjointDEIS(2, discretisation="continuous"))],
        "DDIM": [("backprop", lambda: None), ("AdjointDEIS", lambda: AdjointDEIS())],
        "SDE": [("backprop", lambda: None), ("AdjointDEIS", lambda: AdjointDEIS())],
    }
    for variant, pairs in strategies.items():  # warm-up
        for _, make in pairs:
            measure(net, schedule, x_T, 5, variant, make, device, 1)

    started = time.perf_counter()
    mem_col = "cuda MB" if device.type == "cuda" else "malloc MB"
    lines = [
        f"# Gradients through sampling: AdjointDEIS against backprop ({datetime.date.today()})",
        "",
        f"Machine: {describe(device)}",
        "",
        f"MLPDenoiser(64, hidden=256, depth=3), eps prediction, VP, batch {args.batch}, float32, device "
        f"{device.type}; one forward + backward pass, gradients w.r.t. x_T and all parameters. ODE: "
        "DPM-Solver++(2M); DDIM: eta=0; SDE: DDIM eta=1 on a seeded Brownian grid. `AdjointDEIS` = the "
        "default (transposed sampler; path rebuilt for DDIM, replayed otherwise); `continuous-2` = "
        "AdjointDEIS(2, discretisation='continuous'). `saved` = peak bytes saved for "
        "backward (hooks) + AdjointDEIS's own stored/working tensors; `malloc` = glibc heap peak; ratios "
        "`/bp` against backprop at the same steps; `flat` = memory (`saved`) over the same strategy at "
        f"{args.steps[0]} steps; time = best of {args.repeats}.",
        "",
        f"| variant | steps | strategy | path | saved MB | {mem_col} | time s | saved / bp "
        f"| {mem_col.split()[0]} / bp | time / bp | flat | grad rel. err. vs bp |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    flat_ok = True
    for variant, pairs in strategies.items():
        first = {}
        for steps in args.steps:
            results = {name: measure(net, schedule, x_T, steps, variant, make, device, args.repeats)
                       for name, make in pairs}
            bp = results["backprop"]
            for name, r in results.items():
                other = r["cuda"] if device.type == "cuda" else r["malloc"]
                other_bp = bp["cuda"] if device.type == "cuda" else bp["malloc"]
                first.setdefault(name, r["saved"])
                flat = r["saved"] / first[name]
                if (name == "continuous-2" or variant == "DDIM" and name != "backprop") and flat > 1.2:
                    flat_ok = False
                err = float((r["grad"] - bp["grad"]).norm() / bp["grad"].norm())
                ratio_other = "-" if other is None or not other_bp else f"{other / other_bp:.3f}"
                lines.append(
                    f"| {variant} | {steps} | {name} | {r['path']} | {_mb(r['saved'])} | {_mb(other)} | "
                    f"{r['time']:.2f} | "
                    f"{r['saved'] / bp['saved']:.3f} | {ratio_other} | {r['time'] / bp['time']:.2f} | "
                    f"{flat:.2f} | {err:.1e} |")
    lines += ["", f"Continuous adjoint and rebuilt DDIM path flat within 1.2x of their {args.steps[0]}-step value: "
              f"{'yes' if flat_ok else 'NO'}. Benchmark time {time.perf_counter() - started:.0f}s."]
    emit(lines, args.out)


if __name__ == "__main__":
    main()
