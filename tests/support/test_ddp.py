"""DDP through the trainer: two gloo ranks on CPU equal one process on the same global batch."""

from __future__ import annotations

import os
import socket
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from sdekit.data import load_dataset
from sdekit.nn import MLPDenoiser
from sdekit.train import TrainConfig, Trainer

from ._losses import regression_loss, vp_eps_loss

STEPS = 12


def _config(accumulation_steps: int = 1) -> TrainConfig:
    return TrainConfig(steps=STEPS, batch_size=64, lr=3e-3, warmup_steps=3, grad_clip=1.0, ema_decay=0.9,
                       accumulation_steps=accumulation_steps, seed=7, progress=False)


def _data() -> torch.Tensor:
    return load_dataset("moons", n=500)[0].double()


def _model() -> MLPDenoiser:
    return MLPDenoiser(2, hidden=32, depth=2, emb_dim=16, seed=3).double()


def _train(loss, accumulation_steps: int = 1) -> tuple[Trainer, dict[str, torch.Tensor]]:
    trainer = Trainer(_model(), loss, _data(), _config(accumulation_steps))
    trainer.fit()
    params = {f"model.{k}": v.detach().clone() for k, v in trainer.module.state_dict().items()}
    params.update({f"ema.{k}": v.detach().clone() for k, v in trainer.ema_model.state_dict().items()})
    params["loss"] = torch.tensor(trainer.loss_history, dtype=torch.float64)
    return trainer, params


def _worker(rank: int, world: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        results = {}
        for name, loss in (("eps", vp_eps_loss), ("reg", regression_loss)):
            trainer, params = _train(loss)
            assert trainer.ctx.world_size == world and trainer.ctx.rank == rank
            assert isinstance(trainer.model, torch.nn.parallel.DistributedDataParallel)
            results.update({f"{name}.{k}": v for k, v in params.items()})
        save_file(results, os.path.join(out, f"rank{rank}.safetensors"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_ranks_match_single_process():
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    with tempfile.TemporaryDirectory() as out:
        mp.spawn(_worker, args=(2, _free_port(), out), nprocs=2, join=True)
        r0 = load_file(os.path.join(out, "rank0.safetensors"))
        r1 = load_file(os.path.join(out, "rank1.safetensors"))

    # Both ranks hold the same parameters, EMA and (globally averaged) loss history.
    assert r0.keys() == r1.keys()
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k

    # The noisy loss: 2 ranks x 1 shard == 1 process x 2 accumulated shards (same data, same noise).
    _, single = _train(vp_eps_loss, accumulation_steps=2)
    for k, v in single.items():
        torch.testing.assert_close(r0[f"eps.{k}"], v, rtol=0, atol=1e-10, msg=k)
    # The noise-free loss: 2 ranks == 1 process on the whole global batch, no accumulation.
    _, single = _train(regression_loss, accumulation_steps=1)
    for k, v in single.items():
        torch.testing.assert_close(r0[f"reg.{k}"], v, rtol=0, atol=1e-10, msg=k)
    # Training moved the weights (the comparison is not trivially between initial weights).
    assert not torch.allclose(r0["eps.model.out.weight"], _model().out.weight)
