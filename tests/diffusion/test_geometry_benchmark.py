"""benchmarks/methods/geometry.py --quick (issue 17, must-show 4): the identities hold to rounding in the report,
the optimal ODE memorises, and the denoising trajectory gets within 10% of the data scale earlier."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_geometry_benchmark_quick(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/methods/geometry.py"), "--quick",
                          "--out", str(tmp_path / "g.md")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    text = (tmp_path / "g.md").read_text()
    ms, ams = (float(v) for v in re.findall(r"\*\*([0-9.e+-]+)\*\*", text)[:2])
    assert ms <= 1e-12 and ams <= 1e-10
    assert "**100.0%** end on a training digit" in text
    rows = re.findall(r"\| ([^|]+ \(\d+-D\)) \| (\S+) \| (\d+) / (\d+) \| (\d+) / (\d+) \|", text)
    assert len(rows) == 6
    for _, _, s10, _, d10, _ in rows:
        assert int(d10) < int(s10)
