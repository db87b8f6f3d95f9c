"""benchmarks/methods/feynman_kac.py --quick (issue 19, must-shows 1-2): the direction of the claims."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_benchmark_quick_shows_the_direction(tmp_path):
    """GBM: Monte Carlo within 4 SE of the exact answer, Crank–Nicolson at order ~2 under refinement, the
    quadrature exact to 1e-12. Every (p, q) pair: CN at order ~2 with a small Richardson error and a
    negligible truncation change; antithetic MC within 4 SE of CN and the bias-corrected control-variate
    estimate too; antithetic and control variates both reduce the variance; the Euler bias is below the
    largest antithetic standard error."""
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/methods/feynman_kac.py"), "--quick", "--threads", "1",
                          "--out", str(tmp_path / "fk.md")], capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.split("RESULT ", 1)[1])
    assert res["gh_check"] < 1e-12
    assert res["gbm_mc_max_z"] < 4
    assert all(1.8 < o < 2.2 for o in res["gbm_cn_orders"]), res["gbm_cn_orders"]
    assert len(res["pairs"]) >= 4
    for name, r in res["pairs"].items():
        assert 1.8 < r["cn_order"] < 2.2, (name, r)
        assert r["cn_error"] < 1e-4 and r["cn_trunc"] < 1e-5, (name, r)
        assert r["max_z_anti"] < 4 and r["max_z_cv"] < 4, (name, r)
        assert r["vrf_anti"] > 2 and r["vrf_control"] > 2, (name, r)
        assert r["bias"] < r["se_anti"], (name, r)
    assert (tmp_path / "fk.md").read_text().startswith("# Feynman–Kac Monte Carlo vs Crank–Nicolson")
