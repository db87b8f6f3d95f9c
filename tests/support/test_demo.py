"""The demo's core: a trained 2-D model sampled with the probability-flow ODE reaches the noise floor."""

from __future__ import annotations

import json

import pytest

from sdekit.cli import run_demo


@pytest.mark.slow
def test_pf_ode_samples_are_within_2x_of_the_heldout_noise_floor(tmp_path):
    result = run_demo(tmp_path, steps=800, n_eval=2000, samplers=("ode",), seed=0, progress=False, verbose=False,
                      threads=1)
    ode = result.row("ode")
    prior = result.row("prior")
    print(f"\nSW2 ratio to the held-out floor: PF-ODE {ode.ratio:.2f} (floor {result.floor:.4f}), "
          f"untrained prior {prior.ratio:.2f}")
    # Observed ~1.1 with this seed and budget; 2 is the requirement. The prior shows the metric can tell.
    assert ode.ratio < 2.0
    assert prior.ratio > 4.0
    assert ode.nfe > 0 and result.final_loss < 0.35
    for name in ("samples.png", "loss.png", "results.json", "checkpoint/checkpoint.json"):
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["rows"][0]["ratio"] == pytest.approx(ode.ratio)
