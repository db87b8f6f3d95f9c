"""torchsde's latent SDE example (``examples/latent_sde_lorenz.py``), run unchanged on torchsde and, with
its import line changed to ``import sdekit.torchsde as torchsde``, on sdekit.

``python examples/torchsde_latent_sde_lorenz.py PATH [--iters 60] [--batch 256] [--seeds 0 1] [--out FILE]``

``PATH`` is a torchsde checkout. The example's source is read from it (it is not copied here): for
sdekit the single line ``import torchsde`` is replaced, nothing else. The harness then calls the
example's ``main`` with a shorter schedule: it stubs ``fire`` (only used under ``__main__``), makes the
data set once (both libraries train on the same file), and, while timing, replaces the plotting
function ``vis`` by a no-op (it is then called once per library after timing, to check that
sampling with ``names={"drift": "h"}`` and a ``BrownianInterval`` works). The training loss is read
from the example's own log lines, every ``pause_every`` steps.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import tempfile
import time
import types

import torch


def load_example(path: str, library: str) -> types.ModuleType:
    source = open(os.path.join(path, "examples", "latent_sde_lorenz.py")).read()
    if library == "sdekit":
        lines = source.splitlines(keepends=True)
        hits = [i for i, line in enumerate(lines) if line.strip() == "import torchsde"]
        if len(hits) != 1:
            raise RuntimeError(f"expected one 'import torchsde' line in the example, found {len(hits)}")
        lines[hits[0]] = "import sdekit.torchsde as torchsde\n"
        source = "".join(lines)
    sys.modules.setdefault("fire", types.SimpleNamespace(Fire=lambda fn: fn()))
    module = types.ModuleType(f"latent_sde_lorenz_{library}")
    exec(compile(source, f"latent_sde_lorenz.py ({library})", "exec"), module.__dict__)
    return module


class LossLog(logging.Handler):
    pattern = re.compile(r"global_step: (\d+).*?loss: (-?[\d.]+)")

    def __init__(self) -> None:
        super().__init__()
        self.points: list[tuple[int, float]] = []

    def emit(self, record) -> None:
        match = self.pattern.search(record.getMessage())
        if match:
            self.points.append((int(match.group(1)), float(match.group(2))))


def train(module, seed: int, train_dir: str, iters: int, batch: int, pause_every: int):
    handler = LossLog()
    logging.getLogger().addHandler(handler)
    real_vis = module.vis
    module.vis = lambda *args, **kwargs: None
    torch.manual_seed(seed)
    start = time.perf_counter()
    module.main(batch_size=batch, num_iters=iters, pause_every=pause_every, train_dir=train_dir)
    seconds = time.perf_counter() - start
    module.vis = real_vis
    logging.getLogger().removeHandler(handler)
    return handler.points, seconds


def check_sampling(module, train_dir: str, batch: int) -> float:
    """The example's ``vis`` once: sampling from the prior with ``names={"drift": "h"}`` and a BrownianInterval."""
    xs, ts = module.make_dataset(t0=0.0, t1=2.0, batch_size=batch, noise_std=0.01, train_dir=train_dir,
                                 device=torch.device("cpu"))
    sde = module.LatentSDE(data_size=3, latent_size=4, context_size=64, hidden_size=128)
    bm = module.torchsde.BrownianInterval(t0=0.0, t1=2.0, size=(batch, 4), levy_area_approximation="space-time")
    start = time.perf_counter()
    module.vis(xs, ts, sde, bm, os.path.join(train_dir, "vis.pdf"))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", help="a torchsde checkout (with examples/latent_sde_lorenz.py)")
    parser.add_argument("--iters", type=int, default=60)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--pause-every", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (both libraries)")
    parser.add_argument("--out", default=None, help="also write the markdown report to this file")
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger().handlers[:] = [logging.NullHandler()]  # the example's log lines are collected, not shown
    import matplotlib

    matplotlib.use("Agg")
    modules = {lib: load_example(opts.path, lib) for lib in ("torchsde", "sdekit")}
    curves: dict[tuple[str, int], list] = {}
    seconds: dict[tuple[str, int], float] = {}
    with tempfile.TemporaryDirectory() as train_dir:
        torch.manual_seed(1234)  # one data set for both libraries, made before timing
        modules["sdekit"].make_dataset(t0=0.0, t1=2.0, batch_size=opts.batch, noise_std=0.01,
                                       train_dir=train_dir, device=torch.device("cpu"))
        for seed in opts.seeds:
            for lib in ("torchsde", "sdekit"):
                curves[lib, seed], seconds[lib, seed] = train(modules[lib], seed, train_dir, opts.iters, opts.batch,
                                                              opts.pause_every)
                print(f"{lib} seed {seed}: {seconds[lib, seed]:.1f} s, loss {curves[lib, seed]}", flush=True)
        vis_seconds = {lib: check_sampling(modules[lib], train_dir, opts.batch) for lib in modules}
    total = {lib: sum(seconds[lib, s] for s in opts.seeds) for lib in modules}
    steps = [step for step, _ in curves["torchsde", opts.seeds[0]]]
    lines = [
        "# torchsde's latent SDE Lorenz example on torchsde and on sdekit.torchsde",
        "",
        f"`python examples/torchsde_latent_sde_lorenz.py PATH --iters {opts.iters} --batch {opts.batch} "
        f"--seeds {' '.join(map(str, opts.seeds))}` | torch {torch.__version__} | threads {torch.get_num_threads()}",
        "",
        "Training loss (the example's own log lines; same data, same initialisation per seed):",
        "",
        "| step | " + " | ".join(f"torchsde s{s} | sdekit s{s}" for s in opts.seeds) + " |",
        "|---:|" + "---:|---:|" * len(opts.seeds),
    ]
    for i, step in enumerate(steps):
        cells = []
        for s in opts.seeds:
            cells += [f"{curves['torchsde', s][i][1]:.1f}", f"{curves['sdekit', s][i][1]:.1f}"]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| library | training seconds (all seeds) | one `vis` (sampling 2000 steps + plot) |",
        "|---|---:|---:|",
        *(f"| {lib} | {total[lib]:.1f} | {vis_seconds[lib]:.1f} |" for lib in modules),
        "",
        f"time ratio sdekit / torchsde (training): {total['sdekit'] / total['torchsde']:.2f}",
    ]
    text = "\n".join(lines)
    print(text)
    if opts.out:
        with open(opts.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
