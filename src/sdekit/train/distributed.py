"""Process groups and a stateless sharded batch sampler.

Training runs as ``W`` processes (ranks); ``W = 1`` is the ordinary single-process case and goes
through the same code. Every optimiser step consumes one *global batch*, a slice of a seeded
random permutation of the data (a new permutation per epoch). The global batch is cut into
``S = W * accumulation_steps`` equal *shards*; rank ``r`` computes shards ``r*A .. r*A + A - 1``.
Each shard gets its own noise generator, seeded from ``(seed, step, shard)``. The indices and
the noise of a step are thus a pure function of the seed and the step: nothing needs saving to
resume, and ``W`` ranks with ``A`` accumulation steps compute exactly what one process with
``W * A`` accumulation steps computes.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistributedContext", "init_distributed", "ShardedBatchSampler", "derive_seed"]


def derive_seed(*parts: int) -> int:
    """A 63-bit seed that depends on every one of ``parts`` (for per-step, per-shard generators)."""
    h = hashlib.blake2b("/".join(str(int(p)) for p in parts).encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") & ((1 << 63) - 1)


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands.

    Attributes:
        rank: this process's rank in ``0..world_size-1``.
        world_size: number of processes.
        local_rank: rank on this machine (selects the GPU).
        device: the device this rank trains on.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """True on rank 0, which writes checkpoints and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process trains."""
        return self.world_size > 1

    @classmethod
    def current(cls, device: torch.device | str | None = None) -> DistributedContext:
        """The context of the initialised default process group, or a single-process one."""
        if dist.is_available() and dist.is_initialized():
            rank, world = dist.get_rank(), dist.get_world_size()
            local = int(os.environ.get("LOCAL_RANK", rank))
        else:
            rank, world, local = 0, 1, 0
        if device is None:
            device = _default_device(local)
        return cls(rank, world, local, torch.device(device))


def _default_device(local_rank: int) -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def init_distributed(backend: str | None = None, *, device: str | torch.device | None = None,
                     timeout_s: float = 600.0) -> DistributedContext:
    """Join the process group described by torchrun's environment, if there is one.

    With ``WORLD_SIZE`` > 1 in the environment (``torchrun --nproc_per_node=N``), initialise the
    default process group (``nccl`` when CUDA is available, else ``gloo``) and pin this rank's
    GPU; otherwise return a single-process context without touching ``torch.distributed``.

    Arguments:
        backend: ``"gloo"`` or ``"nccl"`` (default: by device).
        device: force a device (default: ``cuda:LOCAL_RANK`` if CUDA is available, else CPU).
        timeout_s: collective timeout.

    Returns:
        The :class:`DistributedContext` of this process.

    Raises:
        ValueError: malformed torchrun environment variables or an unknown backend.
    """
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ValueError("WORLD_SIZE, RANK and LOCAL_RANK must be integers (as torchrun sets them)") from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"need 0 <= RANK < WORLD_SIZE, got RANK={rank}, WORLD_SIZE={world}")
    dev = torch.device(device) if device is not None else _default_device(local)
    if world == 1:
        return DistributedContext(0, 1, 0, dev)
    if backend is None:
        backend = "nccl" if dev.type == "cuda" else "gloo"
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"backend must be 'gloo' or 'nccl', got {backend!r}")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    return DistributedContext(dist.get_rank(), dist.get_world_size(), local, dev)


class ShardedBatchSampler:
    """Indices of every shard of every global batch, as a pure function of ``(seed, step)``.

    Epoch ``e`` visits the data in the order ``randperm(n, seed=derive_seed(seed, e))``; global
    batch ``s`` is positions ``[s * B, (s + 1) * B)`` of the concatenated epochs (so a batch may
    straddle two epochs and ``B`` may exceed ``n``); shard ``k`` of it is its ``k``-th block of
    ``B / S`` positions.

    Arguments:
        n: number of data points.
        batch_size: global batch size ``B``.
        shards: number of shards ``S`` (``world_size * accumulation_steps``); must divide ``B``.
        seed: seed of the epoch permutations.

    Raises:
        ValueError: non-positive sizes or ``B`` not divisible by ``S``.
    """

    def __init__(self, n: int, batch_size: int, shards: int = 1, seed: int = 0) -> None:
        for name, v in (("n", n), ("batch_size", batch_size), ("shards", shards)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if batch_size % shards:
            raise ValueError(
                f"batch_size={batch_size} must be divisible by world_size * accumulation_steps = {shards}"
            )
        self.n, self.batch_size, self.shards, self.seed = n, batch_size, shards, int(seed)
        self.shard_size = batch_size // shards
        self._cache: tuple[int, torch.Tensor] | None = None

    def _perm(self, epoch: int) -> torch.Tensor:
        if self._cache is None or self._cache[0] != epoch:
            g = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
            self._cache = (epoch, torch.randperm(self.n, generator=g))
        return self._cache[1]

    def batch(self, step: int) -> torch.Tensor:
        """The ``(B,)`` indices of global batch ``step``."""
        start = step * self.batch_size
        end = start + self.batch_size
        parts = []
        pos = start
        while pos < end:
            epoch, offset = divmod(pos, self.n)
            take = min(end - pos, self.n - offset)
            parts.append(self._perm(epoch)[offset:offset + take])
            pos += take
        return torch.cat(parts)

    def shard(self, step: int, shard: int) -> torch.Tensor:
        """The ``(B / S,)`` indices of shard ``shard`` of global batch ``step``."""
        if not 0 <= shard < self.shards:
            raise ValueError(f"shard must lie in [0, {self.shards}), got {shard}")
        return self.batch(step)[shard * self.shard_size:(shard + 1) * self.shard_size]
