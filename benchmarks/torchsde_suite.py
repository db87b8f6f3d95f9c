"""Run torchsde's own test files against ``sdekit.torchsde`` and count passes and failures per file.

``python benchmarks/torchsde_suite.py PATH [--files test_sdeint.py ...] [-k EXPR] [-x] [--out FILE]``

``PATH`` is a torchsde checkout (its ``tests/`` folder is used; nothing in it is modified). A
temporary package named ``torchsde`` is placed first on the import path; it replaces itself in
``sys.modules`` by ``sdekit.torchsde`` (and ``torchsde.settings`` / ``torchsde.types`` by its
submodules), so every ``import torchsde`` in the tests, including after their
``sys.path = sys.path[1:]`` line, resolves to sdekit. Each file runs in its own process, from a
scratch directory (so a ``torchsde/`` source folder inside ``PATH`` is never imported).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

from _machine import describe, emit

FILES = ["test_sdeint.py", "test_adjoint.py", "test_brownian_interval.py", "test_brownian_path.py",
         "test_brownian_tree.py"]

_ALIAS = """\
import sys

import sdekit.torchsde as _compat

sys.modules[__name__] = _compat
sys.modules[__name__ + ".settings"] = _compat.settings
sys.modules[__name__ + ".types"] = _compat.types
"""

_DRIVER = """\
import json, sys
sys.path.insert(0, {alias!r})
import torchsde
assert torchsde.__name__ == "sdekit.torchsde", torchsde.__name__
import pytest

class Count:
    def __init__(self):
        self.outcome = {{}}
        self.reason = {{}}

    def pytest_runtest_logreport(self, report):
        if report.failed:
            self.outcome[report.nodeid] = "failed"
            crash = getattr(report.longrepr, "reprcrash", None)
            self.reason[report.nodeid] = crash.message if crash is not None else str(report.longrepr)[-300:]
        elif report.skipped:
            self.outcome.setdefault(report.nodeid, "skipped")
        elif report.when == "call":
            self.outcome.setdefault(report.nodeid, "passed")

count = Count()
code = pytest.main({args!r}, plugins=[count])
print("@@RESULT@@" + json.dumps({{"outcome": count.outcome, "reason": count.reason, "code": int(code)}}))
"""


def run_file(path: str, alias_dir: str, scratch: str, k: str | None, exitfirst: bool) -> dict:
    args = [path, "-q", "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning", "-W",
            "ignore::FutureWarning"]
    if k:
        args += ["-k", k]
    if exitfirst:
        args.append("-x")
    driver = _DRIVER.format(alias=alias_dir, args=args)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", driver], cwd=scratch, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    for line in proc.stdout.splitlines():
        if line.startswith("@@RESULT@@"):
            result = json.loads(line[len("@@RESULT@@"):])
            result["seconds"] = seconds
            return result
    raise RuntimeError(f"{path}: the test process ended without a result (exit {proc.returncode}):\n"
                       f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", help="a torchsde checkout (with tests/)")
    parser.add_argument("--files", nargs="+", default=FILES, help="test files under PATH/tests")
    parser.add_argument("-k", default=None, help="pytest -k expression (subsets while developing)")
    parser.add_argument("-x", action="store_true", help="stop each file at its first failure")
    parser.add_argument("--out", default=None, help="also write the report (markdown) to this file")
    opts = parser.parse_args()
    tests = os.path.join(os.path.abspath(opts.path), "tests")
    if not os.path.isdir(tests):
        parser.error(f"PATH must be a torchsde checkout with a tests/ folder; {tests} does not exist")
    with tempfile.TemporaryDirectory() as alias_dir, tempfile.TemporaryDirectory() as scratch:
        os.makedirs(os.path.join(alias_dir, "torchsde"))
        with open(os.path.join(alias_dir, "torchsde", "__init__.py"), "w") as fh:
            fh.write(_ALIAS)
        rows, failures = [], []
        total_pass = total_fail = total_skip = 0
        for name in opts.files:
            result = run_file(os.path.join(tests, name), alias_dir, scratch, opts.k, opts.x)
            outcomes = list(result["outcome"].values())
            n_pass, n_fail, n_skip = (outcomes.count(s) for s in ("passed", "failed", "skipped"))
            total_pass, total_fail, total_skip = total_pass + n_pass, total_fail + n_fail, total_skip + n_skip
            rows.append(f"| {name} | {n_pass} | {n_fail} | {n_skip} | {result['seconds']:.0f} |")
            print(f"{name}: {n_pass} passed, {n_fail} failed, {n_skip} skipped ({result['seconds']:.0f} s)",
                  file=sys.stderr, flush=True)
            for node, reason in sorted(result["reason"].items()):
                failures.append(f"- `{node}`: {textwrap.shorten(reason, 300)}")
    ran = total_pass + total_fail
    lines = [
        "# torchsde's test suite against sdekit.torchsde",
        "",
        f"{datetime.date.today()} | {describe()}",
        f"command: `python benchmarks/torchsde_suite.py PATH{' -k ' + opts.k if opts.k else ''}"
        f"{' -x' if opts.x else ''}`",
        "",
        "| file | passed | failed | skipped | seconds |",
        "|---|---:|---:|---:|---:|",
        *rows,
        f"| **total** | **{total_pass}** | **{total_fail}** | **{total_skip}** | |",
        "",
        f"pass rate: {100.0 * total_pass / max(ran, 1):.2f}% of {ran} cases run",
        "",
        "## Failures",
        "",
        *(failures or ["none"]),
    ]
    emit(lines, opts.out)


if __name__ == "__main__":
    main()
