"""Training: a seeded trainer with EMA and AdamW, safe checkpoints, and DDP through torchrun."""

from .checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from .distributed import DistributedContext, ShardedBatchSampler, derive_seed, init_distributed
from .ema import EMA
from .trainer import LossFn, TrainConfig, Trainer

__all__ = [
    "Trainer", "TrainConfig", "LossFn", "EMA",
    "CheckpointError", "Checkpoint", "save_checkpoint", "load_checkpoint",
    "DistributedContext", "init_distributed", "ShardedBatchSampler", "derive_seed",
]
