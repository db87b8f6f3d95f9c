"""The ``sdekit`` command: train / resume / sample round trip, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sdekit.cli import main
from sdekit.train import load_checkpoint

TINY = ["--data", "moons", "--n-train", "256", "--batch-size", "32", "--width", "16", "--depth", "1", "--threads", "1",
        "--no-progress"]


def _run(*argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "sdekit", *argv], capture_output=True, text=True, env=env,
                          timeout=120)


def _error_line(capsys, argv: list[str]) -> str:
    """Run main(argv) in-process; it must fail with status 2 and exactly one line on stderr."""
    with pytest.raises(SystemExit) as e:
        code = main(argv)
        raise SystemExit(code)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "moons"
    assert main(["train", *TINY, "--steps", "6", "--out", str(out)]) == 0
    return out


def test_train_writes_checkpoint_and_config(trained):
    config = json.loads((trained / "config.json").read_text())
    assert config["run"]["data"] == "moons" and config["train"]["steps"] == 6
    ckpt = load_checkpoint(trained)
    assert ckpt.step == 6 and ckpt.metadata["model"]["name"] == "mlp"


def test_resume_through_the_cli_matches_one_run(tmp_path, capsys):
    main(["train", *TINY, "--steps", "8", "--out", str(tmp_path / "full")])
    main(["train", *TINY, "--steps", "5", "--out", str(tmp_path / "part")])
    main(["train", "--steps", "8", "--resume", "--no-progress", "--out", str(tmp_path / "part")])
    a = load_checkpoint(tmp_path / "full").state
    b = load_checkpoint(tmp_path / "part").state
    assert torch.equal(a["loss_history"], b["loss_history"])
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


@pytest.mark.parametrize("suffix", [".pt", ".npy", ".safetensors", ".png"])
def test_sample_formats(trained, tmp_path, suffix, capsys):
    out = tmp_path / f"s{suffix}"
    assert main(["sample", "--checkpoint", str(trained), "--n", "50", "--solver", "ddim", "--steps", "5",
                 "--out", str(out)]) == 0
    assert out.stat().st_size > 0
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        assert load_file(str(out))["samples"].shape == (50, 2)
    assert "wrote 50 samples" in capsys.readouterr().out


def test_sample_is_seeded(trained, tmp_path):
    from safetensors.torch import load_file

    for name in ("a", "b"):
        main(["sample", "--checkpoint", str(trained), "--n", "20", "--solver", "euler-maruyama", "--steps", "10",
              "--seed", "3", "--out", str(tmp_path / f"{name}.safetensors")])
    a, b = (load_file(str(tmp_path / f"{n}.safetensors"))["samples"] for n in "ab")
    assert torch.equal(a, b)


def test_user_errors_are_one_line_with_status_2(trained, tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    cases = {
        "exists and is not a directory": ["demo", "--out", str(tmp_path / "a_file")],
        "invalid choice: 'mnist'": ["demo", "--data", "mnist"],
        "argument --n: expected a positive integer": ["sample", "--checkpoint", str(trained), "--n", "-3",
                                                      "--out", "x.pt"],
        "argument --data: invalid choice": ["train", "--data", "mnist", "--out", str(tmp_path / "x")],
        "required: --out": ["train", "--data", "moons"],
        "no checkpoint at": ["sample", "--checkpoint", str(tmp_path / "none"), "--out", "x.pt"],
        "checkpoint.json not found": ["sample", "--checkpoint", str(tmp_path), "--out", "x.pt"],
        "already holds a checkpoint": ["train", *TINY, "--out", str(trained)],
        "drop --lr": ["train", "--lr", "0.1", "--resume", "--out", str(trained)],
        "does not fit schedule 'flow'": ["train", "--schedule", "flow", "--prediction", "eps", "--out",
                                         str(tmp_path / "y")],
        "--out must end in one of": ["sample", "--checkpoint", str(trained), "--out", str(tmp_path / "s.txt")],
        "--class-label 3 does not fit 'moons'": ["sample", "--checkpoint", str(trained), "--class-label", "3",
                                                 "--out", str(tmp_path / "s.pt")],
        "unknown ODE method 'foo'": ["sample", "--checkpoint", str(trained), "--ode-method", "foo", "--out",
                                     str(tmp_path / "s.pt")],
    }
    for expected, argv in cases.items():
        line = _error_line(capsys, argv)
        assert expected in line, (expected, line)
        assert line.startswith("sdekit")


def test_corrupt_checkpoints_are_one_line(trained, tmp_path, capsys):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(trained, bad)
    tensors = next(bad.glob("state-*.safetensors"))
    tensors.write_bytes(tensors.read_bytes()[:500])
    line = _error_line(capsys, ["sample", "--checkpoint", str(bad), "--out", str(tmp_path / "s.pt")])
    assert "truncated" in line
    (bad / "checkpoint.json").write_text('{"format": "sdekit-checkpoint", "vers')
    line = _error_line(capsys, ["sample", "--checkpoint", str(bad), "--out", str(tmp_path / "s.pt")])
    assert "invalid JSON" in line
    line = _error_line(capsys, ["train", "--resume", "--steps", "9", "--out", str(bad)])
    assert "invalid JSON" in line


def test_python_dash_m_reports_one_line_and_exit_2(tmp_path):
    proc = _run("sample", "--checkpoint", str(tmp_path / "missing"), "--out", str(tmp_path / "s.pt"))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "no checkpoint at" in proc.stderr
    proc = _run("train", "--steps", "zero", "--out", str(tmp_path / "r"))
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_processes_equal_one_process_with_two_shards(tmp_path):
    """`torchrun --nproc_per_node=2 -m sdekit train` (gloo, loopback) equals one process that
    computes the same two shards of every global batch (--accumulation-steps 2)."""
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed next to this Python")
    args = [*TINY, "--steps", "5", "--dtype", "float64"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [str(torchrun), "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
         "-m", "sdekit", "train", *args, "--out", str(tmp_path / "ddp")],
        capture_output=True, text=True, env=env, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "on 2 processes" in proc.stdout
    assert main(["train", *args, "--accumulation-steps", "2", "--out", str(tmp_path / "one")]) == 0
    a = load_checkpoint(tmp_path / "ddp")
    b = load_checkpoint(tmp_path / "one")
    assert a.metadata["world_size"] == 2 and b.metadata["world_size"] == 1
    assert torch.equal(a.state["loss_history"], b.state["loss_history"])
    for k, v in a.state["model"].items():
        torch.testing.assert_close(v, b.state["model"][k], rtol=0, atol=1e-12)
