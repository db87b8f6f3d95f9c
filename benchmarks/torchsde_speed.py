"""Speed of ``sdekit.torchsde`` against torchsde on the same problems, called the same way.

Each row is one ``sdeint`` / ``sdeint_adjoint`` call (with a backward pass for the adjoint rows) with
identical arguments on identical SDE objects; the default Brownian motion of each library
(``bm=None``). Best of ``--repeats`` runs, measured in the same process, on the CPU.
Run: ``python benchmarks/torchsde_speed.py [--repeats 5] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import datetime
import time

import torch
from _machine import describe, emit

import sdekit.torchsde as compat


class Diagonal(torch.nn.Module):
    noise_type, sde_type = "diagonal", "ito"

    def __init__(self, d: int, sde_type: str = "ito") -> None:
        super().__init__()
        self.sde_type = sde_type
        self.net = torch.nn.Sequential(torch.nn.Linear(d, 32), torch.nn.Tanh(), torch.nn.Linear(32, d))
        self.scale = torch.nn.Parameter(torch.full((d,), 0.3))

    def f(self, t, y):
        return self.net(y) - y

    def g(self, t, y):
        return self.scale * torch.sigmoid(y)


class General(torch.nn.Module):
    noise_type, sde_type = "general", "stratonovich"

    def __init__(self, d: int, m: int) -> None:
        super().__init__()
        self.d, self.m = d, m
        self.f_net = torch.nn.Sequential(torch.nn.Linear(d, 32), torch.nn.Tanh(), torch.nn.Linear(32, d))
        self.g_net = torch.nn.Sequential(torch.nn.Linear(d, 32), torch.nn.Tanh(), torch.nn.Linear(32, d * m))

    def f(self, t, y):
        return self.f_net(y) - y

    def g(self, t, y):
        return 0.2 * torch.tanh(self.g_net(y)).view(-1, self.d, self.m)


def cases():
    d, batch, ts = 8, 256, torch.linspace(0, 1, 11)
    y0 = torch.full((batch, d), 0.1)
    yield "euler, diagonal Ito", Diagonal(d), y0, ts, dict(method="euler", dt=1e-2), False
    yield "milstein, diagonal Ito", Diagonal(d), y0, ts, dict(method="milstein", dt=1e-2), False
    yield "srk, diagonal Ito", Diagonal(d), y0, ts, dict(method="srk", dt=1e-2), False
    yield "midpoint, general Stratonovich", General(d, 3), y0, ts, dict(method="midpoint", dt=1e-2), False
    yield "euler_heun, general Stratonovich", General(d, 3), y0, ts, dict(method="euler_heun", dt=1e-2), False
    yield "euler adaptive, diagonal Ito", Diagonal(d), y0, ts, dict(method="euler", dt=1e-2, adaptive=True), False
    yield "logqp euler, diagonal Ito", _WithPrior(d), y0, ts, dict(method="euler", dt=1e-2, logqp=True), False
    yield "adjoint midpoint, general (fwd+bwd)", General(d, 3), y0, ts, dict(method="midpoint", dt=1e-2), True
    yield "adjoint reversible_heun, general (fwd+bwd)", General(d, 3), y0, ts, \
        dict(method="reversible_heun", dt=1e-2), True


class _WithPrior(Diagonal):
    def h(self, t, y):
        return -y


def run(library, sde, y0, ts, kwargs, adjoint):
    torch.manual_seed(0)
    if adjoint:
        x = y0.clone().requires_grad_(True)
        ys = library.sdeint_adjoint(sde, x, ts, **kwargs)
        ys.square().sum().backward()
    else:
        with torch.no_grad():
            library.sdeint(sde, y0, ts, **kwargs)


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None)
    opts = parser.parse_args()
    import warnings

    import torchsde

    warnings.simplefilter("ignore")
    rows = []
    for name, *problem in cases():
        t_ref = best_time(lambda: run(torchsde, *problem), opts.repeats)  # noqa: B023 (called at once)
        t_new = best_time(lambda: run(compat, *problem), opts.repeats)  # noqa: B023
        rows.append(f"| {name} | {1e3 * t_ref:.0f} | {1e3 * t_new:.0f} | {t_new / t_ref:.2f} |")
        print(rows[-1], flush=True)
    emit([
        "# sdekit.torchsde against torchsde: time per call",
        "",
        f"{datetime.date.today()} | {describe()} | torchsde {torchsde.__version__} | best of {opts.repeats}",
        "",
        "batch 256, d = 8 (general noise: m = 3), ts = linspace(0, 1, 11), dt = 0.01, float32, bm=None.",
        "",
        "| problem | torchsde ms | sdekit.torchsde ms | ratio |",
        "|---|---:|---:|---:|",
        *rows,
    ], opts.out)


if __name__ == "__main__":
    main()
