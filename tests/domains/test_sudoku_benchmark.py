"""benchmarks/methods/sudoku.py --quick (issue 14, must-show 4): a short 4x4 DDSM training through the shared
trainer already generates grids far above chance (the >= 99% of the must-show comes from the full run's
longer training, benchmarks/results/sudoku.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_benchmark_quick_learns_4x4_sudoku(tmp_path):
    """600 steps (batch 128) of the 4x4 network; 300 samples at 4x dilation. Independent uniform cells give a
    valid grid with probability 288 / 4^16 = 6.7e-8 (rows alone: (24/256)^4 = 7.7e-5), so a few percent valid is
    learned structure; the quick run must give at least 2% fully valid (rows, columns and boxes)."""
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks/methods/sudoku.py"), "--quick", "--samples", "300",
                          "--ckpt-dir", str(tmp_path), "--out", str(tmp_path / "s.md")],
                         capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.split("RESULT ", 1)[1])
    assert res["valid4_all"] >= 2.0, res
    assert res["valid4_rows_columns"] >= res["valid4_all"]
    assert (tmp_path / "s.md").read_text().startswith("# Sudoku with Dirichlet diffusion")
