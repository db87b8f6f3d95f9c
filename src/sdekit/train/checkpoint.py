"""Checkpoints as one safetensors file of tensors plus one JSON file of everything else.

Layout of a checkpoint directory::

    checkpoint.json              the commit point: format, step, sha256 and size of the tensors
                                 file, a manifest of every tensor (dtype, shape), and a JSON tree
                                 of the state in which tensors appear as {"tensor": key}
    state-00001000.safetensors   the tensors (never pickled)

Writes are atomic: the tensors file is written under a fresh name and fsynced, then the JSON is
written to a temporary file and moved over ``checkpoint.json`` with ``os.replace``; only then is
the previous tensors file removed. A crash at any point leaves the previous checkpoint readable.
Reading checks the JSON, the size and sha256 of the tensors file, the manifest against the
tensors present, and raises :class:`CheckpointError` (a ``ValueError``) with one clear line.
Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CheckpointError", "Checkpoint", "save_checkpoint", "load_checkpoint", "load_weights", "CHECKPOINT_JSON",
]

CHECKPOINT_JSON = "checkpoint.json"
_FORMAT = "sdekit-checkpoint"
_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated, tampered with or does not fit the model."""


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        directory: where it was read from.
        step: the training step it was saved at.
        state: the nested state (dicts, lists, numbers, strings and CPU tensors).
        metadata: the JSON metadata stored with it (e.g. the run's configuration).
    """

    directory: Path
    step: int
    state: dict[str, Any]
    metadata: dict[str, Any]


# --------------------------------------------------------------------------------------------
# Nested state <-> (JSON tree, flat dict of tensors)
# --------------------------------------------------------------------------------------------
def _encode(obj, path: str, tensors: dict[str, torch.Tensor]):
    if isinstance(obj, torch.Tensor):
        key = path or "tensor"
        if key in tensors:
            raise ValueError(f"two tensors would be stored under the key {key!r}")
        tensors[key] = obj.detach().to("cpu", copy=True).contiguous()
        return {"tensor": key}
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"float": repr(obj)}
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if not (k is None or isinstance(k, (bool, int, str))):
                raise TypeError(f"cannot store a dict key of type {type(k).__name__} at {path or '<root>'}")
            items.append([k, _encode(v, f"{path}/{k}" if path else str(k), tensors)])
        return {"dict": items}
    if isinstance(obj, (list, tuple)):
        enc = [_encode(v, f"{path}/{i}" if path else str(i), tensors) for i, v in enumerate(obj)]
        return {"tuple" if isinstance(obj, tuple) else "list": enc}
    if isinstance(obj, torch.dtype):
        return {"dtype": str(obj).removeprefix("torch.")}
    where = path or "<root>"
    raise TypeError(f"cannot store an object of type {type(obj).__name__} at {where} in a checkpoint")


def _decode(node, tensors: dict[str, torch.Tensor]):
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, dict) and len(node) == 1:
        (kind, value), = node.items()
        if kind == "tensor":
            if value not in tensors:
                raise CheckpointError(f"the checkpoint's state refers to tensor {value!r}, which is absent")
            return tensors[value]
        if kind == "dict":
            return {k: _decode(v, tensors) for k, v in value}
        if kind == "list":
            return [_decode(v, tensors) for v in value]
        if kind == "tuple":
            return tuple(_decode(v, tensors) for v in value)
        if kind == "float":
            return float(value)
        if kind == "dtype":
            dtype = getattr(torch, str(value), None)
            if not isinstance(dtype, torch.dtype):
                raise CheckpointError(f"the checkpoint names an unknown dtype {value!r}")
            return dtype
    raise CheckpointError(f"the checkpoint's state holds a malformed entry {str(node)[:80]!r}")


# --------------------------------------------------------------------------------------------
# Atomic file writes
# --------------------------------------------------------------------------------------------
def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename durable where the platform allows it
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def save_checkpoint(directory: str | os.PathLike, state: dict[str, Any], *, step: int,
                    metadata: dict[str, Any] | None = None) -> Path:
    """Write ``state`` atomically into ``directory`` (created if needed).

    Arguments:
        directory: checkpoint directory; a previous checkpoint there is replaced.
        state: nested dicts / lists / tuples of tensors, numbers, strings, bools and ``None``
            (model and optimizer ``state_dict``s qualify).
        step: training step (names the tensors file).
        metadata: JSON-serialisable data stored as is (e.g. the run configuration).

    Returns:
        The path of ``checkpoint.json``.

    Raises:
        TypeError: an object in ``state`` that cannot be stored, non-JSON metadata.
    """
    from safetensors.torch import save as st_save

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(state, "", tensors)
    blob = st_save(tensors) if tensors else st_save({"__empty__": torch.zeros(0)})
    name = f"state-{int(step):08d}.safetensors"
    _atomic_write(directory / name, blob)
    manifest = {k: {"dtype": _dtype_name(v), "shape": list(v.shape)} for k, v in tensors.items()}
    doc = {
        "format": _FORMAT,
        "version": _VERSION,
        "step": int(step),
        "tensors_file": name,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "size": len(blob),
        "tensors": manifest,
        "state": tree,
        "metadata": metadata if metadata is not None else {},
    }
    try:
        text = json.dumps(doc, indent=1, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise TypeError(f"checkpoint metadata must be JSON-serialisable: {e}") from None
    json_path = directory / CHECKPOINT_JSON
    _atomic_write(json_path, text.encode())
    for old in directory.glob("state-*.safetensors"):
        if old.name != name:
            try:
                old.unlink()
            except OSError:
                pass
    return json_path


def _dtype_name(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def _require(cond: bool, json_path: Path, what: str) -> None:
    if not cond:
        raise CheckpointError(f"corrupt checkpoint {json_path}: {what}")


def load_checkpoint(directory: str | os.PathLike) -> Checkpoint:
    """Read and verify a checkpoint written by :func:`save_checkpoint`.

    Arguments:
        directory: the checkpoint directory (or the path of its ``checkpoint.json``).

    Returns:
        A :class:`Checkpoint` with CPU tensors.

    Raises:
        CheckpointError: the directory or files are missing, the JSON is invalid or incomplete,
            the tensors file is truncated or its sha256 differs, tensors are missing or have other
            shapes or dtypes than the manifest records.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    path = Path(directory)
    json_path = path if path.name == CHECKPOINT_JSON else path / CHECKPOINT_JSON
    if not json_path.parent.is_dir():
        raise CheckpointError(f"no checkpoint at {json_path.parent}: the directory does not exist")
    if not json_path.is_file():
        raise CheckpointError(f"no checkpoint in {json_path.parent}: {CHECKPOINT_JSON} not found")
    try:
        doc = json.loads(json_path.read_text())
    except UnicodeDecodeError:
        raise CheckpointError(f"corrupt checkpoint {json_path}: not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(
            f"corrupt checkpoint {json_path}: invalid JSON at line {e.lineno} column {e.colno} ({e.msg}); "
            "the file is truncated or was edited"
        ) from None
    _require(isinstance(doc, dict) and doc.get("format") == _FORMAT, json_path, f"not an {_FORMAT} file")
    _require(doc.get("version") == _VERSION, json_path, f"unsupported version {doc.get('version')!r}")
    fields = [("step", int), ("tensors_file", str), ("sha256", str), ("size", int), ("tensors", dict),
              ("state", dict), ("metadata", dict)]
    for field, typ in fields:
        ok = isinstance(doc.get(field), typ)
        _require(ok, json_path, f"field {field!r} is missing or not a {typ.__name__}")
    name = doc["tensors_file"]
    ok = Path(name).name == name and name.endswith(".safetensors")
    _require(ok, json_path, f"bad tensors_file {name!r}")
    st_path = json_path.parent / name
    if not st_path.is_file():
        raise CheckpointError(f"corrupt checkpoint {json_path}: tensors file {name} is missing")
    blob = st_path.read_bytes()
    if len(blob) != doc["size"]:
        raise CheckpointError(
            f"corrupt checkpoint {st_path}: {len(blob)} bytes, expected {doc['size']} (truncated or replaced)"
        )
    if hashlib.sha256(blob).hexdigest() != doc["sha256"]:
        raise CheckpointError(
            f"corrupt checkpoint {st_path}: sha256 does not match the one in {CHECKPOINT_JSON}"
        )
    try:
        tensors = st_load(blob)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"corrupt checkpoint {st_path}: unreadable safetensors data ({e})") from None
    tensors.pop("__empty__", None)
    manifest = doc["tensors"]
    missing = sorted(set(manifest) - set(tensors))
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise CheckpointError(f"corrupt checkpoint {st_path}: missing tensors {', '.join(missing[:3])}{more}")
    for key, spec in manifest.items():
        t = tensors[key]
        spec = spec if isinstance(spec, dict) else {}
        if list(t.shape) != spec.get("shape") or _dtype_name(t) != spec.get("dtype"):
            raise CheckpointError(
                f"corrupt checkpoint {st_path}: tensor {key!r} is {_dtype_name(t)} "
                f"{list(t.shape)}, the manifest records {spec}"
            )
    state = _decode(doc["state"], tensors)
    if not isinstance(state, dict):
        raise CheckpointError(f"corrupt checkpoint {json_path}: its state is a {type(state).__name__}, not a dict")
    return Checkpoint(json_path.parent, doc["step"], state, doc["metadata"])


def _check_state_dict(where: object, name: str, saved: object,
                      expected: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``saved`` once it is checked to hold a tensor of the expected shape under each of ``expected``'s keys,
    and nothing else; a CheckpointError naming ``where`` otherwise."""
    if not isinstance(saved, dict):
        raise CheckpointError(f"corrupt checkpoint {where}: {name} state is not a mapping")
    missing = [k for k in expected if k not in saved]
    extra = [k for k in saved if k not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        if extra:
            parts.append(f"unexpected {', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''}")
        raise CheckpointError(f"checkpoint {where} does not fit the model: {name} tensors {'; '.join(parts)}")
    for k, v in expected.items():
        t = saved[k]
        if not isinstance(t, torch.Tensor) or t.shape != v.shape:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise CheckpointError(
                f"checkpoint {where} does not fit the model: {name} tensor {k!r} has shape {got}, "
                f"the model expects {tuple(v.shape)}"
            )
    return saved


def load_weights(model: torch.nn.Module, directory: str | os.PathLike, *, which: str = "ema") -> int:
    """Load a trained network's weights from a :class:`~sdekit.train.Trainer` checkpoint.

    Arguments:
        model: a network of the architecture the checkpoint was trained with.
        directory: the checkpoint directory.
        which: ``"ema"`` (the averaged weights; falls back to ``"model"`` when the run had no EMA) or
            ``"model"`` (the raw weights).

    Returns:
        The training step of the checkpoint.

    Raises:
        CheckpointError: a missing or corrupt checkpoint, or tensors that do not fit ``model``.
        ValueError: ``which`` is neither ``"ema"`` nor ``"model"``.
    """
    if which not in ("ema", "model"):
        raise ValueError(f"which must be 'ema' or 'model', got {which!r}")
    ckpt = load_checkpoint(directory)
    state = ckpt.state
    if which == "ema" and isinstance(state.get("ema"), dict):
        weights = state["ema"].get("model")
    else:
        weights = state.get("model")
    model.load_state_dict(_check_state_dict(ckpt.directory, which, weights, model.state_dict()))
    return ckpt.step
