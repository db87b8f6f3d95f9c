"""``sdekit bench``: run a benchmark script of the repository's ``benchmarks/`` folder.

The benchmarks live outside the package (they import optional anchors such as diffusers and
k-diffusion), so this command finds ``benchmarks/<name>.py`` in the current directory or in the source
checkout sdekit was installed from, and forwards every argument after the benchmark's name to it:
``sdekit bench samplers --quick`` runs ``python benchmarks/samplers.py --quick``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from ._common import CLIError, Parser

BENCHMARKS = {"samplers": "sampler accuracy vs diffusers and k-diffusion on exact oracles"}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench", help="run a benchmark of the repository's benchmarks/ folder",
        description="Run benchmarks/<name>.py of an sdekit checkout; the arguments after the name go to the "
        "benchmark (e.g. `sdekit bench samplers --quick`, `sdekit bench samplers --help`).",
    )
    which = p.add_subparsers(dest="benchmark", metavar="{" + ",".join(BENCHMARKS) + "}", parser_class=Parser)
    which.required = True
    for name, text in BENCHMARKS.items():
        q = which.add_parser(name, help=text, add_help=False, prefix_chars="\0")
        q.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the benchmark")
    p.set_defaults(func=run)


def find_benchmark(name: str) -> Path:
    """``benchmarks/<name>.py`` in the working directory or the source checkout of this package."""
    here = Path(__file__).resolve()
    places = [Path.cwd() / "benchmarks", here.parents[3] / "benchmarks"]
    for folder in places:
        path = folder / f"{name}.py"
        if path.is_file():
            return path
    raise CLIError(f"benchmarks/{name}.py not found in {places[0].parent} or {places[1].parent}; run `sdekit "
                   "bench` from a checkout of the sdekit repository")


def run(args) -> int:
    path = find_benchmark(args.benchmark)
    spec = importlib.util.spec_from_file_location(f"sdekit_benchmark_{args.benchmark}", path)
    if spec is None or spec.loader is None:
        raise CLIError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module             # dataclasses look their module up while the script loads
    folder = str(path.parent)
    sys.path.insert(0, folder)                  # the scripts share helpers of their folder (_machine.py)
    try:
        spec.loader.exec_module(module)
        return int(module.main(list(args.args), prog=f"sdekit bench {args.benchmark}") or 0)
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
