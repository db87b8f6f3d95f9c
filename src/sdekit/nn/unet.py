"""A small UNet for 8x8 to 32x32 images, with a time and optional class embedding."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import nn

from ._common import _check_time, _ClassEmbedding, _positive_int, _seeded, _time_embedding

__all__ = ["UNet"]


class _ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, plus the embedding, GroupNorm -> SiLU -> dropout -> conv, skip."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(nn.functional.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(self.dropout(nn.functional.silu(self.norm2(h))))
        return self.skip(x) + h


class _Attention(nn.Module):
    """Single-head self-attention over pixels (used at the coarsest resolution only)."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        out = nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2)[:, None], k.transpose(1, 2)[:, None], v.transpose(1, 2)[:, None]
        )[:, 0]
        return x + self.proj(out.transpose(1, 2).reshape(b, c, h, w))


class UNet(nn.Module):
    """A compact UNet ``net(x, t)`` for images ``(batch, C, H, W)`` with ``H, W`` in roughly 8..32.

    Levels ``i = 0..L-1`` have ``base_channels * channel_mults[i]`` channels and ``num_res_blocks``
    residual blocks (GroupNorm + SiLU, time embedding added after the first conv); between levels
    a stride-2 conv halves the resolution and nearest upsampling + conv doubles it again; encoder
    activations are concatenated into the decoder (Ronneberger et al. 2015; DDPM, Ho et al. 2020).

    Arguments:
        in_channels: image channels ``C``.
        out_channels: output channels (default ``in_channels``).
        base_channels: channels of the first level (a multiple of ``groups``).
        channel_mults: channel multiplier per level; ``len(channel_mults) - 1`` downsamplings, so
            ``H`` and ``W`` must be divisible by ``2 ** (len(channel_mults) - 1)``.
        num_res_blocks: residual blocks per level.
        emb_dim: size of the time embedding (default ``4 * base_channels``).
        groups: GroupNorm groups.
        attention: add self-attention at the coarsest level.
        num_classes: if given, ``forward`` accepts ``class_labels`` (``None`` / ``num_classes`` =
            no label, which makes classifier-free guidance possible).
        time_embedding, time_scale: as in :class:`~sdekit.nn.MLPDenoiser`.
        dropout: dropout probability in the residual blocks.
        seed: initialise parameters from this seed without touching the global generator.

    Raises:
        TypeError / ValueError for sizes that do not fit (named in the message).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int | None = None,
        base_channels: int = 32,
        channel_mults: Sequence[int] = (1, 2),
        num_res_blocks: int = 1,
        emb_dim: int | None = None,
        *,
        groups: int = 8,
        attention: bool = False,
        num_classes: int | None = None,
        time_embedding: str = "sinusoidal",
        time_scale: float = 1000.0,
        dropout: float = 0.0,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = _positive_int("in_channels", in_channels)
        out_channels = in_channels if out_channels is None else out_channels
        self.out_channels = _positive_int("out_channels", out_channels)
        base_channels = _positive_int("base_channels", base_channels)
        num_res_blocks = _positive_int("num_res_blocks", num_res_blocks)
        groups = _positive_int("groups", groups)
        mults = list(channel_mults)
        if not mults:
            raise ValueError("channel_mults must hold at least one level, got an empty sequence")
        for i, m in enumerate(mults):
            _positive_int(f"channel_mults[{i}]", m)
        chans = [base_channels * m for m in mults]
        for c in chans:
            if c % groups:
                raise ValueError(
                    f"channels per level {chans} must be divisible by groups={groups}; "
                    "change base_channels or groups"
                )
        emb_dim = _positive_int("emb_dim", emb_dim if emb_dim is not None else 4 * base_channels)
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        self.factor = 2 ** (len(mults) - 1)
        dropout = float(dropout)

        with _seeded(seed):
            feat_dim = base_channels + base_channels % 2  # sinusoidal / Fourier features need an even size
            self.time_embed = nn.Sequential(
                _time_embedding(time_embedding, feat_dim, time_scale),
                nn.Linear(feat_dim, emb_dim),
                nn.SiLU(),
                nn.Linear(emb_dim, emb_dim),
            )
            self.class_embed = _ClassEmbedding(num_classes, emb_dim) if num_classes is not None else None
            self.stem = nn.Conv2d(self.in_channels, chans[0], 3, padding=1)

            self.down = nn.ModuleList()
            self.downsample = nn.ModuleList()
            skip_chans = [chans[0]]
            c = chans[0]
            for level, c_level in enumerate(chans):
                blocks = nn.ModuleList()
                for _ in range(num_res_blocks):
                    blocks.append(_ResBlock(c, c_level, emb_dim, groups, dropout))
                    c = c_level
                    skip_chans.append(c)
                self.down.append(blocks)
                if level < len(chans) - 1:
                    self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                    skip_chans.append(c)

            self.mid1 = _ResBlock(c, c, emb_dim, groups, dropout)
            self.mid_attn = _Attention(c, groups) if attention else nn.Identity()
            self.mid2 = _ResBlock(c, c, emb_dim, groups, dropout)

            self.up = nn.ModuleList()
            self.upsample = nn.ModuleList()
            for level in reversed(range(len(chans))):
                blocks = nn.ModuleList()
                for _ in range(num_res_blocks + 1):
                    blocks.append(_ResBlock(c + skip_chans.pop(), chans[level], emb_dim, groups, dropout))
                    c = chans[level]
                self.up.append(blocks)
                if level > 0:
                    self.upsample.append(nn.Conv2d(c, c, 3, padding=1))

            self.out_norm = nn.GroupNorm(groups, c)
            self.out = nn.Conv2d(c, self.out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t: float | torch.Tensor,
                class_labels: torch.Tensor | None = None) -> torch.Tensor:
        """Evaluate the network.

        Arguments:
            x: ``(batch, in_channels, H, W)`` with ``H, W`` divisible by ``2 ** (levels - 1)``.
            t: ``(batch,)`` tensor, 0-d tensor or float.
            class_labels: ``(batch,)`` integer tensor (only when built with ``num_classes``).

        Returns:
            ``(batch, out_channels, H, W)``.

        Raises:
            ValueError: wrong shapes, labels without ``num_classes``.
        """
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != self.in_channels:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (batch, {self.in_channels}, H, W), got {got}")
        if x.shape[2] % self.factor or x.shape[3] % self.factor:
            raise ValueError(
                f"x's height and width must be divisible by {self.factor} (2 ** (levels - 1)), "
                f"got {tuple(x.shape[2:])}"
            )
        t = _check_time(t, x)
        emb = self.time_embed(t)
        if self.class_embed is not None:
            emb = emb + self.class_embed(class_labels, x.shape[0], x.device)
        elif class_labels is not None:
            raise ValueError("class_labels were given but the model was built without num_classes")

        h = self.stem(x)
        skips = [h]
        for level, blocks in enumerate(self.down):
            for block in cast(nn.ModuleList, blocks):
                h = block(h, emb)
                skips.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)
                skips.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for i, blocks in enumerate(self.up):
            for block in cast(nn.ModuleList, blocks):
                h = block(torch.cat([h, skips.pop()], dim=1), emb)
            if i < len(self.upsample):
                h = self.upsample[i](nn.functional.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(nn.functional.silu(self.out_norm(h)))
