"""Training: a seeded trainer with EMA and AdamW, safe checkpoints, and DDP through torchrun."""

from .checkpoint import (
    CHECKPOINT_JSON,
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)
from .distributed import DistributedContext, ShardedBatchSampler, derive_seed, init_distributed
from .ema import EMA
from .trainer import LossFn, TrainConfig, Trainer

__all__ = [
    "Trainer", "TrainConfig", "LossFn", "EMA",
    "CheckpointError", "Checkpoint", "CHECKPOINT_JSON", "save_checkpoint", "load_checkpoint", "load_weights",
    "DistributedContext", "init_distributed", "ShardedBatchSampler", "derive_seed",
]
