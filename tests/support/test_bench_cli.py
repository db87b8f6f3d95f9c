"""``sdekit bench samplers``: the CLI finds benchmarks/samplers.py, runs a tiny configuration with every
available library and writes the table and the figure; a missing anchor is skipped with a note."""

from __future__ import annotations

import importlib.util
import json

import pytest

from sdekit.cli import main
from sdekit.cli._bench import find_benchmark

TINY = ["--problems", "gm2", "--n", "300", "--nfe", "5", "8", "--select-nfe", "8"]


def test_bench_samplers_tiny_run_writes_table_and_figure(tmp_path, capsys):
    assert main(["bench", "samplers", *TINY, "--out-dir", str(tmp_path)]) == 0
    table = (tmp_path / "samplers.md").read_text()
    assert "## Headline: SW2 / noise floor at NFE 8" in table and "| gm2 |" in table
    assert (tmp_path / "samplers.png").stat().st_size > 10_000
    rows = json.loads((tmp_path / "samplers.json").read_text())["gm2"]["rows"]
    libraries = {r["library"] for r in rows}
    assert "sdekit" in libraries
    if importlib.util.find_spec("diffusers") is not None:
        assert "diffusers" in libraries
    if importlib.util.find_spec("k_diffusion") is not None:
        assert "k-diffusion" in libraries
    for r in rows:
        # NFE is counted: never above the budget (EDM / k-diffusion Heun use 2 steps - 1 calls).
        assert all(int(used) <= int(budget) for budget, used in r["nfe"].items()), r
        assert set(r["sw2"]) == {"5", "8"} or r["sampler"] in ("heun",), r
    out = capsys.readouterr().out
    assert "noise floor SW2" in out and "wrote" in out


def test_missing_anchor_is_skipped_with_a_note(monkeypatch, capsys):
    path = find_benchmark("samplers")
    spec = importlib.util.spec_from_file_location("bench_samplers_probe", path)
    module = importlib.util.module_from_spec(spec)
    import sys

    monkeypatch.setitem(sys.modules, spec.name, module)
    monkeypatch.syspath_prepend(str(path.parent))
    spec.loader.exec_module(module)
    monkeypatch.setattr(module.importlib.util, "find_spec", lambda name: None)
    assert module.load_k_diffusion_sampling() is None
    assert "k-diffusion is not installed" in capsys.readouterr().out


def test_bench_help_and_unknown_benchmark(capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "samplers", "--help"])
    assert e.value.code == 0 and "--quick" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["bench", "nope"])
    assert e.value.code == 2
