"""examples/latent_sde.py runs end to end (a few iterations) and writes its figure."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("adjoint", ["continuous", "reversible"])
def test_latent_sde_example_runs(tmp_path, adjoint):
    out = tmp_path / "latent.png"
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "latent_sde.py"), "--iters", "3", "--samples", "8",
         "--adjoint", adjoint, "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert out.exists() and out.stat().st_size > 10_000
    assert "mean |error|" in result.stdout
