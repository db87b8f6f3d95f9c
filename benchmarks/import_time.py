"""Import cost: what ``import sdekit`` (and its subpackages) adds on top of ``import torch``.

Each measurement is a fresh interpreter that imports torch and then the target, timed with
``time.perf_counter`` around each import (the same numbers ``python -X importtime`` sums); the median of
``--repeats`` interpreters is reported, with the ratio to torch's own import time measured in the same
interpreters. Target (issue 11): ``import sdekit`` adds at most 5% to ``import torch``.

Run: ``python benchmarks/import_time.py [--repeats 9] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import subprocess
import sys

from _machine import describe, emit

TARGETS = ("sdekit", "sdekit.core", "sdekit.diffusion", "sdekit.train")

_PROBE = """
import sys, time
t0 = time.perf_counter(); import torch; t1 = time.perf_counter()
import importlib; importlib.import_module(sys.argv[1]); t2 = time.perf_counter()
print(t1 - t0, t2 - t1, sum(m.split('.')[0] == 'sdekit' for m in sys.modules))
"""


def measure(target: str, repeats: int) -> tuple[float, float, int]:
    torch_s, extra_s, modules = [], [], 0
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", _PROBE, target], capture_output=True, text=True, check=True)
        a, b, modules = out.stdout.split()
        torch_s.append(float(a))
        extra_s.append(float(b))
    return statistics.median(torch_s), statistics.median(extra_s), int(modules)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", default=None, help="also write the report to this file")
    args = parser.parse_args()
    lines = [f"# Import cost on top of torch ({datetime.date.today()})", "", f"Machine: {describe()}", "",
             f"Median of {args.repeats} fresh interpreters each.", "",
             "| import | torch (ms) | added (ms) | added / torch | sdekit modules loaded |",
             "|---|---:|---:|---:|---:|"]
    for target in TARGETS:
        t_torch, t_extra, modules = measure(target, args.repeats)
        lines.append(f"| `{target}` | {1e3 * t_torch:.0f} | {1e3 * t_extra:.1f} | {100 * t_extra / t_torch:.1f}% "
                     f"| {modules} |")
    lines += ["", "Target: `import sdekit` adds at most 5% to `import torch`."]
    emit(lines, args.out)


if __name__ == "__main__":
    main()
