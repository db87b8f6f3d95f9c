"""`sdekit train --data community_small` and `sdekit sample` of the graph checkpoint (issue 15 must-show 5)."""

import json

import torch

from sdekit.cli import main
from sdekit.graphs import check_graph_state


def test_train_resume_and_sample_a_graph_model(tmp_path, capsys):
    run = tmp_path / "run"
    common = ["--width", "8", "--depth", "1", "--batch-size", "16", "--no-progress", "--threads", "1"]
    assert main(["train", "--data", "community_small", "--steps", "2", "--out", str(run), *common]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["run"]["kind"] == "graph" and cfg["model"]["layers_adj"] == 1 and cfg["model"]["nhid"] == 8
    assert main(["train", "--out", str(run), "--resume", "--steps", "3", "--no-progress"]) == 0
    out = tmp_path / "graphs.pt"
    assert main(["sample", "--checkpoint", str(run), "--n", "5", "--steps", "4", "--solver", "pc",
                 "--out", str(out)]) == 0
    res = torch.load(out)
    assert res["adj"].shape == (5, 20, 20) and res["flags"].shape == (5, 20)
    check_graph_state(res["x"], res["adj"].float(), res["flags"], binary=True)
    assert "degree MMD" in capsys.readouterr().out


def test_graph_cli_errors(tmp_path, capsys):
    assert main(["train", "--data", "community_small", "--schedule", "ve", "--out", str(tmp_path / "r")]) == 2
    assert "do not apply to graph data" in capsys.readouterr().err
    assert main(["train", "--data", "grid", "--width", "10", "--out", str(tmp_path / "r")]) == 2
    assert "divisible" in capsys.readouterr().err
