"""benchmarks/methods/gdss.py --quick (issue 15, must-shows 4-5): the pipeline end to end, and its direction."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_quick(tmp_path):
    """60 training steps on community-small, S4 and EM + Langevin at NFE 60: the loss falls, both samplers
    give graphs of the training sizes, most of them connected, with finite MMDs; the table and figure are
    written."""
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/methods/gdss.py"), "--quick", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.split("RESULT ", 1)[1])
    seed = res["seeds"][0]
    assert seed["loss_last"] < 0.8 * seed["loss_first"]
    for row in seed["samplers"].values():
        assert row["nfe"] == 60
        assert all(0 <= row[m] < 2 for m in ("degree", "clustering", "orbit"))
        assert row["connected"] >= 0.5
        assert abs(row["mean_nodes"] - row["ref_mean_nodes"]) < 4
    assert (tmp_path / "gdss.md").read_text().startswith("# GDSS")
    assert (tmp_path / "gdss_community_small.png").stat().st_size > 1000
