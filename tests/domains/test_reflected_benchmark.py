"""benchmarks/methods/reflected.py --quick (issue 14, must-show 2): the direction of the paper's claim."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_benchmark_quick_shows_the_direction(tmp_path):
    """Uniform in, uniform out for the reflected sampler (thresholding is not); the reflected model is closer
    than the thresholded one to the class-conditional law (w = 0) and to the guided target (w = 3) in sliced W2,
    and to the true boundary mass at w = 0 and 3, at NFE 20 and 100."""
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/methods/reflected.py"), "--quick",
                          "--out", str(tmp_path / "r.md")], capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.split("RESULT ", 1)[1])
    assert res["uniform_reflected_p"] > 0.01
    assert res["uniform_thresholded_p"] < 1e-6
    for nfe in (20, 100):
        for w in ("0", "3"):
            assert res[f"sw_reflected_{nfe}_{w}"] < res[f"sw_thresholded_{nfe}_{w}"]
            assert res[f"frac_err_reflected_{nfe}_{w}"] < res[f"frac_err_thresholded_{nfe}_{w}"]
    assert (tmp_path / "r.md").read_text().startswith("# Reflected diffusion vs thresholding")
