"""benchmarks/methods/multiscale.py --quick (issue 19, must-show 3): the direction of the paper's claim."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_benchmark_quick_shows_the_direction(tmp_path):
    """At equal gradient budget on the 8-Gaussian ring, MultALMC and MultCDiff are closer to the target than
    ULMC in entropic W2 and cover more modes; ULA's and OBABO's stationary variances match their closed forms."""
    pytest.importorskip("ot")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/methods/multiscale.py"), "--quick",
                          "--out", str(tmp_path / "m.md")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.split("RESULT ", 1)[1])
    ring = res["ring8"]
    ulmc = next(v for k, v in ring.items() if k.startswith("ULMC"))
    for name in ("MultALMC", "MultCDiff"):
        row = next(v for k, v in ring.items() if k.startswith(name))
        assert row["w2"] < 0.7 * ulmc["w2"], (name, row, ulmc)
        assert row["coverage"] > ulmc["coverage"]
        assert row["grad_evals"] <= ulmc["grad_evals"]
    assert all(abs(z) < 4 for z in res["gauss"].values()), res["gauss"]
    assert (tmp_path / "m.md").read_text().startswith("# Multiscale samplers")
