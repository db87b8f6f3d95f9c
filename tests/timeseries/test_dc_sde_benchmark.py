"""benchmarks/methods/dc_sde.py --quick (issue 18, must-show 4): the pipeline runs and both generators learn the
contraction of the opinion dynamics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from scipy.stats import wasserstein_distance

from sdekit.timeseries import opinion_dynamics

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_benchmark_quick_learns_the_contraction(tmp_path):
    """After 40 steps every generator's marginal at t = 1 is far closer to the held-out one than the initial
    law U[-2, 2] carried along unchanged (W1 ~ 0.9: the agents contract towards the centre)."""
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/methods/dc_sde.py"), "--quick",
                          "--out", str(tmp_path / "d.md")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.split("RESULT ", 1)[1])
    _, test = opinion_dynamics(512, steps=50, seed=200)  # the quick run's held-out system
    still = wasserstein_distance(test[:, 0, 0].numpy(), test[:, -1, 0].numpy())
    assert still > 0.8
    models = [k for k in res if k not in ("floor", "wall")]
    assert len(models) == 3
    for name in models:
        assert res[name]["w1"][-1] < 0.3 * still, (name, res[name]["w1"])
    assert all(v < 0.1 for v in res["floor"]["w1"])
    assert (tmp_path / "d.md").read_text().startswith("# Directed-chain SDE generator")
