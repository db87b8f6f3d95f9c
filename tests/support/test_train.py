"""Trainer: bit-for-bit resume, checkpoint integrity errors, argument checks."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from sdekit.data import load_dataset
from sdekit.nn import MLPDenoiser, UNet
from sdekit.train import (
    CheckpointError,
    ShardedBatchSampler,
    TrainConfig,
    Trainer,
    load_checkpoint,
    save_checkpoint,
)

from ._losses import vp_eps_loss


def _config(**kw) -> TrainConfig:
    base = dict(steps=30, batch_size=48, lr=2e-3, warmup_steps=4, lr_schedule="cosine", ema_decay=0.95,
                accumulation_steps=2, seed=5, progress=False)
    base.update(kw)
    return TrainConfig(**base)


def _model(seed=0) -> MLPDenoiser:
    # Dropout makes the global RNG matter: resume must restore the trainer's RNG streams too.
    return MLPDenoiser(2, hidden=32, depth=2, emb_dim=16, dropout=0.1, seed=seed)


@pytest.fixture(scope="module")
def data() -> torch.Tensor:
    return load_dataset("moons", n=400)[0]


def test_resume_reproduces_the_uninterrupted_run_bit_for_bit(tmp_path, data):
    full = Trainer(_model(), vp_eps_loss, data, _config())
    full.fit()

    first = Trainer(_model(), vp_eps_loss, data, _config(), out_dir=tmp_path / "run")
    first.fit(13)  # stop mid-epoch, in the cosine phase
    torch.rand(7)  # the caller's global RNG moves on in between: must not matter
    resumed = Trainer(_model(seed=99), vp_eps_loss, data, _config(), out_dir=tmp_path / "run")
    resumed.load_checkpoint(tmp_path / "run")
    assert resumed.step == 13
    resumed.fit()

    assert resumed.loss_history == full.loss_history  # exact float equality, every step
    for (k, a), b in zip(full.module.state_dict().items(), resumed.module.state_dict().values()):
        assert torch.equal(a, b), k
    for a, b in zip(full.ema_model.parameters(), resumed.ema_model.parameters()):
        assert torch.equal(a, b)
    assert len(list((tmp_path / "run").glob("state-*.safetensors"))) == 1  # old tensors file removed


def test_training_is_seeded_and_does_not_touch_the_global_rng(data):
    state = torch.get_rng_state()
    a = Trainer(_model(), vp_eps_loss, data, _config(steps=5)).fit()
    assert torch.equal(state, torch.get_rng_state())
    b = Trainer(_model(), vp_eps_loss, data, _config(steps=5)).fit()
    c = Trainer(_model(), vp_eps_loss, data, _config(steps=5, seed=6)).fit()
    assert a == b and a != c


def test_class_labels_reach_the_model(tmp_path):
    x, y = load_dataset("digits", n=64)
    net = UNet(1, base_channels=8, channel_mults=(1, 2), groups=4, num_classes=10, seed=0)
    trainer = Trainer(net, vp_eps_loss, x, _config(steps=3, batch_size=16, accumulation_steps=1), labels=y,
                      out_dir=tmp_path)
    losses = trainer.fit()
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    assert trainer.module.class_embed.table.weight.grad is not None
    resumed = Trainer(UNet(1, base_channels=8, channel_mults=(1, 2), groups=4, num_classes=10, seed=1),
                      vp_eps_loss, x, _config(steps=3, batch_size=16, accumulation_steps=1), labels=y)
    resumed.load_checkpoint(tmp_path)
    assert torch.equal(resumed.module.stem.weight, trainer.module.stem.weight)


def test_sampler_covers_each_epoch_once():
    s = ShardedBatchSampler(10, 4, shards=2, seed=0)
    seen = torch.cat([s.batch(k) for k in range(5)])  # 20 indices = two epochs
    assert sorted(seen[:10].tolist()) == list(range(10)) and sorted(seen[10:].tolist()) == list(range(10))
    assert torch.equal(torch.cat([s.shard(3, 0), s.shard(3, 1)]), s.batch(3))
    with pytest.raises(ValueError, match="divisible by world_size"):
        ShardedBatchSampler(10, 5, shards=2)


# --------------------------------------------------------------------------------------------
# Corrupt, truncated and tampered checkpoints
# --------------------------------------------------------------------------------------------
@pytest.fixture()
def saved(tmp_path, data) -> Path:
    trainer = Trainer(_model(), vp_eps_loss, data, _config(steps=2), out_dir=tmp_path / "ck")
    trainer.fit()
    return tmp_path / "ck"


def _fresh(data) -> Trainer:
    return Trainer(_model(), vp_eps_loss, data, _config(steps=2))


def _tensors_file(d: Path) -> Path:
    return d / json.loads((d / "checkpoint.json").read_text())["tensors_file"]


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and isinstance(err.value, ValueError)
    return msg


def test_missing_checkpoint(tmp_path, data):
    with pytest.raises(CheckpointError, match="does not exist") as e:
        _fresh(data).load_checkpoint(tmp_path / "nowhere")
    _one_line(e)
    with pytest.raises(CheckpointError, match="checkpoint.json not found"):
        _fresh(data).load_checkpoint(tmp_path)


def test_truncated_json(saved, data):
    p = saved / "checkpoint.json"
    p.write_text(p.read_text()[:200])
    with pytest.raises(CheckpointError, match="invalid JSON at line") as e:
        _fresh(data).load_checkpoint(saved)
    _one_line(e)


def test_truncated_tensors_file(saved, data):
    f = _tensors_file(saved)
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="expected .* \\(truncated or replaced\\)") as e:
        _fresh(data).load_checkpoint(saved)
    _one_line(e)


def test_flipped_byte_fails_the_checksum(saved, data):
    f = _tensors_file(saved)
    blob = bytearray(f.read_bytes())
    blob[-5] ^= 0x01
    f.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="sha256 does not match") as e:
        _fresh(data).load_checkpoint(saved)
    _one_line(e)


def _rewrite(saved: Path, edit_tensors=None, edit_doc=None) -> None:
    """Tamper consistently: change the tensors, then fix up size and sha256 so only deeper checks catch it."""
    import hashlib

    doc = json.loads((saved / "checkpoint.json").read_text())
    f = saved / doc["tensors_file"]
    tensors = st_load(f.read_bytes())
    if edit_tensors:
        edit_tensors(tensors)
    blob = st_save(tensors)
    f.write_bytes(blob)
    doc["size"], doc["sha256"] = len(blob), hashlib.sha256(blob).hexdigest()
    if edit_doc:
        edit_doc(doc)
    (saved / "checkpoint.json").write_text(json.dumps(doc))


def test_missing_tensor(saved, data):
    _rewrite(saved, edit_tensors=lambda t: t.pop("model/out.weight"))
    with pytest.raises(CheckpointError, match="missing tensors model/out.weight") as e:
        _fresh(data).load_checkpoint(saved)
    _one_line(e)


def test_wrong_shape_against_manifest(saved, data):
    _rewrite(saved, edit_tensors=lambda t: t.__setitem__("model/out.weight", torch.zeros(3, 3)))
    with pytest.raises(CheckpointError, match="tensor 'model/out.weight' is float32 \\[3, 3\\]"):
        _fresh(data).load_checkpoint(saved)


def test_wrong_shape_against_the_model(saved, data):
    def edit(doc):
        doc["tensors"]["model/out.weight"]["shape"] = [3, 3]

    _rewrite(saved, edit_tensors=lambda t: t.__setitem__("model/out.weight", torch.zeros(3, 3)),
             edit_doc=edit)
    expected = "'out.weight' has shape \\(3, 3\\), the model expects \\(2, 32\\)"
    with pytest.raises(CheckpointError, match=expected):
        _fresh(data).load_checkpoint(saved)


def test_other_architecture(saved, data):
    narrow = MLPDenoiser(2, hidden=16, depth=2, emb_dim=16, seed=0)
    other = Trainer(narrow, vp_eps_loss, data, _config(steps=2))
    with pytest.raises(CheckpointError, match="does not fit the model"):
        other.load_checkpoint(saved)


def test_json_fields_tampered(saved, data):
    _rewrite(saved, edit_doc=lambda d: d.pop("sha256"))
    with pytest.raises(CheckpointError, match="field 'sha256' is missing"):
        _fresh(data).load_checkpoint(saved)
    _rewrite(saved, edit_doc=lambda d: d.__setitem__("tensors_file", "../../etc/passwd"))
    with pytest.raises(CheckpointError, match="bad tensors_file"):
        _fresh(data).load_checkpoint(saved)


def test_save_load_roundtrip_of_nested_state(tmp_path):
    state = {"a": torch.arange(3), "b": {1: (torch.ones(2, dtype=torch.float64), "x", None, 2.5, math.inf)},
             "c": [True, torch.tensor(3.0)], "d": torch.float16}
    save_checkpoint(tmp_path, state, step=4, metadata={"k": [1, 2]})
    ck = load_checkpoint(tmp_path)
    assert ck.step == 4 and ck.metadata == {"k": [1, 2]}
    assert torch.equal(ck.state["a"], state["a"]) and ck.state["b"][1][1:] == ("x", None, 2.5, math.inf)
    assert ck.state["d"] is torch.float16 and isinstance(ck.state["b"][1], tuple)
    assert oct(os.stat(tmp_path / "checkpoint.json").st_mode & 0o777) != "0o600"
    with pytest.raises(TypeError, match="cannot store an object of type object at b"):
        save_checkpoint(tmp_path, {"b": object()}, step=5)
    assert load_checkpoint(tmp_path).step == 4  # a failed save leaves the previous checkpoint intact


# --------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------
def test_config_and_trainer_argument_errors(data):
    with pytest.raises(ValueError, match="lr must be a positive finite number, got -1"):
        TrainConfig(lr=-1)
    with pytest.raises(ValueError, match="lr_schedule must be 'constant' or 'cosine'"):
        TrainConfig(lr_schedule="linear")
    with pytest.raises(ValueError, match="ema_decay must lie in"):
        TrainConfig(ema_decay=1.5)
    with pytest.raises(ValueError, match="unknown TrainConfig keys \\['stepz'\\]"):
        TrainConfig.from_dict({"stepz": 3})
    with pytest.raises(ValueError, match="batch_size=48 must be divisible"):
        Trainer(_model(), vp_eps_loss, data, _config(accumulation_steps=5))
    with pytest.raises(ValueError, match="labels must have shape \\(400,\\)"):
        Trainer(_model(), vp_eps_loss, data, _config(), labels=torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="loss_fn must return a scalar tensor"):
        Trainer(_model(), lambda m, x, generator=None, model_kwargs=None: 1.0, data, _config()).fit(1)

    def nan_loss(model, x0, generator=None, model_kwargs=None):
        return vp_eps_loss(model, x0, generator) * math.nan

    with pytest.raises(FloatingPointError, match="loss became nan at step 0"):
        Trainer(_model(), nan_loss, data, _config()).fit(1)
    assert TrainConfig.from_dict(_config().to_dict()) == _config()
