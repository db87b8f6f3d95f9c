"""Sharded sampling: two gloo ranks on CPU draw exactly the samples of one process (per-sample seeds)."""

from __future__ import annotations

import os
import socket
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sdekit.diffusion import DDIM, VP, GaussianMixture, gather_shards, sample_sharded
from sdekit.nn import MLPDenoiser

N, BATCH = 45, 8          # 6 global batches: rank 0 gets 3 full ones, rank 1 two full ones and the rest


def _jobs():
    """(name, model, prediction): an exact oracle and a small network (batched matmuls)."""
    schedule = VP()
    oracle = GaussianMixture([1.0, 2.0], [[-2.0, 0.0], [2.0, 1.0]], [0.3, 0.2])
    net = MLPDenoiser(2, hidden=16, depth=1, emb_dim=8, seed=0).double()
    return schedule, [("oracle", oracle.as_denoiser(schedule), "eps"), ("mlp", net, "eps")]


def _draw(rank=None, world_size=None, batch_size=BATCH):
    schedule, jobs = _jobs()
    out = {}
    for name, model, prediction in jobs:
        with torch.no_grad():
            shard = sample_sharded(model, schedule, (2,), N, seed=11, rank=rank, world_size=world_size,
                                   batch_size=batch_size, solver=DDIM(eta=1.0), steps=12,
                                   prediction=prediction, dtype=torch.float64)
        out[name] = shard
    return out


def _worker(rank: int, world: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        shards = _draw()
        full = {name: gather_shards(shard, N) for name, shard in shards.items()}
        if rank == 0:
            torch.save({name: x for name, x in full.items()}, os.path.join(out, "gathered.pt"))
            torch.save({name: s.indices for name, s in shards.items()}, os.path.join(out, "rank0.pt"))
        else:
            assert all(x is None for x in full.values())
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_equal_one_process_bit_for_bit():
    single = {name: gather_shards(s, N) for name, s in _draw().items()}
    with tempfile.TemporaryDirectory() as out:
        mp.spawn(_worker, args=(2, _free_port(), out), nprocs=2, join=True)
        gathered = torch.load(os.path.join(out, "gathered.pt"))
        rank0 = torch.load(os.path.join(out, "rank0.pt"))
    for name, x in single.items():
        assert x.shape == (N, 2) and x.dtype == torch.float64
        assert torch.equal(gathered[name], x), name
        assert rank0[name].tolist() == list(range(0, 8)) + list(range(16, 24)) + list(range(32, 40))


def test_shards_partition_the_job_and_samples_do_not_depend_on_the_batch():
    ranks = [_draw(rank=r, world_size=3) for r in range(3)]
    single = _draw()
    for name in single:
        idx = torch.cat([r[name].indices for r in ranks])
        assert sorted(idx.tolist()) == list(range(N))
        x = torch.empty(N, 2, dtype=torch.float64)
        for r in ranks:
            x[r[name].indices] = r[name].samples
        assert torch.equal(x, single[name].samples)
        assert sum(r[name].nfe for r in ranks) == single[name].nfe == 12 * 6
    # Other batch sizes: the same samples (to rounding for the network's batched matmuls).
    other = _draw(batch_size=45)
    assert torch.equal(other["oracle"].samples, single["oracle"].samples)
    torch.testing.assert_close(other["mlp"].samples, single["mlp"].samples, rtol=1e-12, atol=1e-12)
    # Every sample has its own noise.
    assert not torch.allclose(single["oracle"].samples[:5], single["oracle"].samples[5:10])


def test_errors_name_the_argument():
    schedule, jobs = _jobs()
    model = jobs[0][1]
    with pytest.raises(ValueError, match="rank"):
        sample_sharded(model, schedule, (2,), 4, rank=2, world_size=2, steps=2)
    with pytest.raises(ValueError, match="batch_size"):
        sample_sharded(model, schedule, (2,), 4, batch_size=0, steps=2)
    shard = sample_sharded(model, schedule, (2,), 4, rank=0, world_size=2, batch_size=2, steps=2,
                           dtype=torch.float64)
    with pytest.raises(ValueError, match="cover"):
        gather_shards(shard, 4)


@pytest.mark.slow
def test_cli_sample_under_torchrun_equals_one_process(tmp_path):
    """`torchrun --nproc_per_node=2 -m sdekit sample` (gloo, loopback) writes exactly the samples of one
    process: float64 checkpoint, a stochastic sampler, batches split unevenly between the ranks."""
    import subprocess
    import sys
    from pathlib import Path

    from sdekit.cli import main

    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed next to this Python")
    run = tmp_path / "run"
    assert main(["train", "--data", "moons", "--n-train", "128", "--batch-size", "32", "--width", "16", "--depth",
                 "1", "--threads", "1", "--no-progress", "--steps", "3", "--dtype", "float64", "--out", str(run)]) == 0
    args = ["--checkpoint", str(run), "--num-samples", "45", "--batch-size", "8", "--solver", "euler-maruyama",
            "--steps", "20", "--seed", "5", "--threads", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [str(torchrun), "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
         "-m", "sdekit", "sample", *args, "--out", str(tmp_path / "two.pt")],
        capture_output=True, text=True, env=env, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 processes" in proc.stdout and "45 samples" in proc.stdout
    assert main(["sample", *args, "--out", str(tmp_path / "one.pt")]) == 0
    two, one = torch.load(tmp_path / "two.pt"), torch.load(tmp_path / "one.pt")
    assert one.shape == (45, 2) and one.dtype == torch.float64
    assert torch.equal(two, one)


def test_pc_draws_sub_step_noise_per_sample():
    """PredictorCorrector declares noise_substeps = corrector_steps + 1 and sample_sharded serves those
    sub-intervals (it raised "got an increment over (1.0, 0.9...)" before): the shards equal one process bit
    for bit, the samples do not depend on the batch, and each sub-interval gets its own noise."""
    from sdekit.diffusion import PredictorCorrector

    schedule, jobs = _jobs()
    model = jobs[0][1]

    def draw(solver, rank=None, world_size=None, batch_size=BATCH, n=20):
        return sample_sharded(model, schedule, (2,), n, seed=7, rank=rank, world_size=world_size,
                              batch_size=batch_size, solver=solver, steps=10, dtype=torch.float64)

    for solver in ("pc", PredictorCorrector(corrector_steps=2)):
        single = draw(solver)
        assert single.samples.shape == (20, 2) and bool(torch.isfinite(single.samples).all())
        x = torch.empty(20, 2, dtype=torch.float64)
        for r in range(3):
            shard = draw(solver, rank=r, world_size=3)
            x[shard.indices] = shard.samples
        assert torch.equal(x, single.samples)
        assert torch.equal(draw(solver, batch_size=20).samples, single.samples)
    # The first samples of a longer job are the same samples (keyed by (seed, index) alone).
    assert torch.equal(draw("pc", n=30).samples[:20], draw("pc").samples)
    # Corrector and predictor noise differ: with one sub-step (corrector_steps=0) the result changes.
    assert not torch.allclose(draw(PredictorCorrector(corrector_steps=0)).samples, draw("pc").samples)
