"""Trainer with tuple data (e.g. graphs as (X, A, flags)): batches keep the rows of every tensor together,
resume is bit for bit, bad tuples are refused."""

from typing import Any

import pytest
import torch
from torch import nn

from sdekit.train import TrainConfig, Trainer


class _Pair(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)


def _loss(seen):
    def loss(model, batch, generator=None, model_kwargs=None):
        a, b, idx = batch
        seen.append(idx.clone())
        # a row of `a` is its index times ones, a row of `b` is minus that: the rows travel together
        assert torch.equal(a[:, 0], idx.to(a.dtype)) and torch.equal(b[:, 0], -idx.to(b.dtype))
        noise = torch.randn(a.shape, generator=generator, dtype=a.dtype)
        return (model.lin(a + noise) - b[:, :2]).square().mean()
    return loss


def _data(n=40):
    idx = torch.arange(n)
    a = idx[:, None].float().expand(n, 3).clone()
    return a, -a.clone(), idx


def test_tuple_batches_and_resume(tmp_path):
    cfg: dict[str, Any] = dict(steps=12, batch_size=8, lr=1e-2, seed=3, progress=False, ema_decay=0.9)
    seen: list[torch.Tensor] = []
    torch.manual_seed(0)
    full = Trainer(_Pair(), _loss(seen), _data(), TrainConfig(**cfg))
    full.fit()
    assert len(seen) == 12 and all(s.numel() == 8 for s in seen)
    assert full.data[2].dtype == torch.long  # integer tensors keep their dtype, floats take the model's

    torch.manual_seed(0)
    first = Trainer(_Pair(), _loss([]), _data(), TrainConfig(**cfg), out_dir=tmp_path / "run")
    first.fit(5)
    torch.manual_seed(1)
    resumed = Trainer(_Pair(), _loss([]), _data(), TrainConfig(**cfg), out_dir=tmp_path / "run")
    resumed.load_checkpoint(tmp_path / "run")
    resumed.fit()
    assert resumed.loss_history == full.loss_history
    for a, b in zip(full.module.state_dict().values(), resumed.module.state_dict().values()):
        assert torch.equal(a, b)


def test_bad_tuple_data():
    a, b, idx = _data()
    with pytest.raises(ValueError, match="share their first dimension"):
        Trainer(_Pair(), _loss([]), (a, b[:10], idx))
    with pytest.raises(TypeError, match="tuple of such tensors"):
        Trainer(_Pair(), _loss([]), (a, [1, 2]))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tuple of such tensors"):
        Trainer(_Pair(), _loss([]), ())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"labels must have shape \(40,\)"):
        Trainer(_Pair(), _loss([]), (a, b, idx), labels=torch.zeros(3))
