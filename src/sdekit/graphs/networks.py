r"""The score networks of GDSS, written with dense tensors (no message-passing library: graphs here have at
most a few hundred nodes, and a padded dense batch keeps every operation a batched matmul).

Jo, Lee, Hwang, "Score-based Generative Modeling of Graphs via the System of Stochastic Differential
Equations", ICML 2022, section 3.2 and appendix:

* ``s_X`` (:class:`ScoreNetworkX`): graph convolutions ``H_{l+1} = tanh(GCN(H_l, A))`` over the noisy
  ``(X, A)``; the input and every layer's output are concatenated and an MLP maps them to the output.
* ``s_A`` (:class:`ScoreNetworkA`): graph multi-head attention (GMH, Baek et al., "Accurate learning of
  graph representations with graph multiset pooling", ICLR 2021) on the channels
  ``[A, A^2, ..., A^{c_init}]``; each layer makes new node features and new symmetric adjacency channels
  ``M + M^T``, all channels are concatenated and an MLP on each entry gives a symmetric output, zero on
  the diagonal.

Both are permutation-equivariant (permuting the nodes permutes the outputs) and masked (outputs on
padding nodes are exactly zero). Neither takes the time: as in GDSS, a network predicts the standard
noise of its component and the score is ``-output / sigma(t)`` (:func:`sdekit.graphs.score_function`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .state import mask_adjs, mask_x

__all__ = ["DenseGCN", "ScoreNetworkX", "ScoreNetworkA", "GDSSNetwork", "GDSS_NETWORK_PRESETS"]

#: network sizes of the GDSS configs
GDSS_NETWORK_PRESETS: dict[str, dict[str, int]] = {
    "community_small": dict(depth_x=3, layers_adj=5, nhid=32, adim=32, heads=4, c_init=2, c_hid=8, c_final=4),
    "ego_small": dict(depth_x=2, layers_adj=5, nhid=32, adim=32, heads=4, c_init=2, c_hid=8, c_final=4),
    "grid": dict(depth_x=5, layers_adj=7, nhid=32, adim=32, heads=4, c_init=2, c_hid=8, c_final=4),
}


def _pos_int(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name} must be a positive int, got {v!r}")
    return v


class _MLP(nn.Sequential):
    """``layers`` linear maps with ELU between them."""

    def __init__(self, layers: int, d_in: int, d_hidden: int, d_out: int) -> None:
        dims = [d_in] + [d_hidden] * (layers - 1) + [d_out]
        mods: list[nn.Module] = []
        for i in range(layers):
            mods.append(nn.Linear(dims[i], dims[i + 1]))
            if i < layers - 1:
                mods.append(nn.ELU())
        super().__init__(*mods)


class DenseGCN(nn.Module):
    r"""A dense graph convolution (Kipf & Welling, "Semi-supervised classification with graph convolutional
    networks", ICLR 2017): ``D^{-1/2} (A + I) D^{-1/2} H W + b`` with ``D`` the row sums of ``A + I``
    clamped below at 1 (the noisy ``A`` of a diffusion may have negative entries).

    Shapes: ``h (B, N, d_in)``, ``adj (B, N, N)`` -> ``(B, N, d_out)``.
    """

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(d_in, d_out))
        self.bias = nn.Parameter(torch.zeros(d_out))
        bound = math.sqrt(6.0 / (d_in + d_out))
        nn.init.uniform_(self.weight, -bound, bound)

    @staticmethod
    def normalize(adj: torch.Tensor) -> torch.Tensor:
        """``D^{-1/2} (A + I) D^{-1/2}`` (the diagonal of ``A`` replaced by 1), shared by several layers."""
        a = adj.clone()
        a.diagonal(dim1=-2, dim2=-1).fill_(1.0)
        d = a.sum(-1).clamp_min(1.0).rsqrt()
        return d.unsqueeze(-1) * a * d.unsqueeze(-2)

    def forward(self, h: torch.Tensor, adj: torch.Tensor, *, normalized: bool = False) -> torch.Tensor:
        """``h (B, N, d_in)``, ``adj (B, N, N)`` (already passed through ``normalize`` if ``normalized``)."""
        a = adj if normalized else self.normalize(adj)
        return a @ (h @ self.weight) + self.bias


class ScoreNetworkX(nn.Module):
    r"""GDSS's ``s_X``: ``depth`` GCN layers with tanh, then an MLP (3 layers, ELU) on the concatenation
    ``[X, H_1, ..., H_depth]``; padding rows are zero.

    Arguments:
        features: ``F``, the node-feature width.
        depth: number of GCN layers (GDSS: 2 ego-small, 3 community-small, 5 grid).
        nhid: width of every GCN layer (GDSS: 32).

    Shapes: ``x (B, N, F)``, ``adj (B, N, N)``, ``flags (B, N)`` -> ``(B, N, F)``.
    """

    def __init__(self, features: int, depth: int = 3, nhid: int = 32) -> None:
        super().__init__()
        for name, v in (("features", features), ("depth", depth), ("nhid", nhid)):
            _pos_int(name, v)
        self.convs = nn.ModuleList(DenseGCN(features if i == 0 else nhid, nhid) for i in range(depth))
        fdim = features + depth * nhid
        self.final = _MLP(3, fdim, 2 * fdim, features)

    def forward(self, x: torch.Tensor, adj: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
        hs = [x]
        h = x
        a = DenseGCN.normalize(adj)
        for conv in self.convs:
            h = torch.tanh(conv(h, a, normalized=True))
            hs.append(h)
        return mask_x(self.final(torch.cat(hs, -1)), flags)


def _glorot(*shape: int) -> nn.Parameter:
    bound = math.sqrt(6.0 / (shape[-2] + shape[-1]))
    return nn.Parameter(torch.empty(shape).uniform_(-bound, bound))


class _AttentionLayer(nn.Module):
    """A layer of ``s_A``: graph multi-head attention (GMH) on each of ``c_in`` adjacency channels, all
    channels at once. Per channel ``c``: GCN queries, keys and values on ``A_c``, ``heads`` heads, the
    head-averaged, symmetrised attention map ``tanh(Q K^T / sqrt(d_out))``; then new node features
    (``d_out``, an MLP over the channels' values) and ``c_out`` symmetric channels ``M + M^T`` from an MLP over
    ``[attention maps, input channels]`` per entry."""

    def __init__(self, num_linears: int, d_in: int, attn_dim: int, d_out: int, c_in: int, c_out: int,
                 heads: int) -> None:
        super().__init__()
        if attn_dim % heads:
            raise ValueError(f"adim must be divisible by heads; got adim={attn_dim}, heads={heads}")
        self.wq, self.wk = _glorot(c_in, d_in, attn_dim), _glorot(c_in, d_in, attn_dim)
        self.wv = _glorot(c_in, d_in, d_out)
        self.bq, self.bk = nn.Parameter(torch.zeros(c_in, attn_dim)), nn.Parameter(torch.zeros(c_in, attn_dim))
        self.bv = nn.Parameter(torch.zeros(c_in, d_out))
        self.heads, self.scale = heads, 1.0 / math.sqrt(d_out)
        hidden = 2 * max(c_in, c_out)
        self.mlp = _MLP(num_linears, 2 * c_in, hidden, c_out)
        self.mix = _MLP(2, c_in * d_out, hidden, d_out)

    def _gcn(self, a: torch.Tensor, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ torch.einsum("bnd,cde->bcne", x, w) + b[None, :, None, :]

    def forward(self, x: torch.Tensor, adjc: torch.Tensor, flags: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, C, N, _ = adjc.shape
        a = DenseGCN.normalize(adjc)
        q = self._gcn(a, x, self.wq, self.bq).view(B, C, N, self.heads, -1)
        k = self._gcn(a, x, self.wk, self.bk).view(B, C, N, self.heads, -1)
        v = self._gcn(a, x, self.wv, self.bv)
        att = torch.tanh(torch.einsum("bcihd,bcjhd->bchij", q, k) * self.scale).mean(2)
        att = 0.5 * (att + att.transpose(-1, -2))
        x_out = torch.tanh(mask_x(self.mix(v.permute(0, 2, 1, 3).reshape(B, N, -1)), flags))
        m = self.mlp(torch.cat([att, adjc], 1).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return x_out, mask_adjs(m + m.transpose(-1, -2), flags)


class ScoreNetworkA(nn.Module):
    r"""GDSS's ``s_A``: ``layers`` graph multi-head attention layers over the adjacency powers
    ``[A, ..., A^{c_init}]`` (channels ``c_init -> c_hid -> ... -> c_final``); every layer's channels are
    concatenated and a 3-layer MLP per entry gives the output, symmetric, zero on the diagonal and on
    padding rows/columns.

    Arguments:
        features: ``F``, the node-feature width.
        layers: number of attention layers (GDSS: 5, grid 7).
        nhid: node-feature width inside (32); adim: attention width (32); heads: attention heads (4).
        num_linears: layers of each per-entry MLP inside a layer (2).
        c_init, c_hid, c_final: adjacency channels at the input, inside and at the last layer (2, 8, 4).

    Shapes: ``x (B, N, F)``, ``adj (B, N, N)``, ``flags (B, N)`` -> ``(B, N, N)``.
    """

    def __init__(self, features: int, layers: int = 5, nhid: int = 32, adim: int = 32, heads: int = 4,
                 num_linears: int = 2, c_init: int = 2, c_hid: int = 8, c_final: int = 4) -> None:
        super().__init__()
        for name, v in (("features", features), ("layers", layers), ("nhid", nhid), ("adim", adim),
                        ("heads", heads), ("num_linears", num_linears), ("c_init", c_init), ("c_hid", c_hid),
                        ("c_final", c_final)):
            _pos_int(name, v)
        self.c_init = c_init
        mods = []
        for i in range(layers):
            c_in = c_init if i == 0 else c_hid
            c_out = c_final if i == layers - 1 else c_hid
            mods.append(_AttentionLayer(num_linears, features if i == 0 else nhid, adim, nhid, c_in, c_out, heads))
        self.layers = nn.ModuleList(mods)
        fdim = c_hid * (layers - 1) + c_final + c_init
        self.final = _MLP(3, fdim, 2 * fdim, 1)

    def forward(self, x: torch.Tensor, adj: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
        powers = [adj]
        for _ in range(self.c_init - 1):
            p = powers[-1] @ adj
            powers.append(0.5 * (p + p.transpose(-1, -2)))  # symmetric in exact arithmetic; made exact here
        adjc = torch.stack(powers, 1)
        chans = [adjc]
        for layer in self.layers:
            x, adjc = layer(x, adjc, flags)
            chans.append(adjc)
        out = self.final(torch.cat(chans, 1).permute(0, 2, 3, 1)).squeeze(-1)
        out = 0.5 * (out + out.transpose(-1, -2))  # exact symmetry whatever the matmul kernels round
        eye = torch.eye(out.shape[-1], dtype=out.dtype, device=out.device)
        return mask_adjs(out * (1 - eye), flags)


class GDSSNetwork(nn.Module):
    r"""The pair of GDSS networks as one module (one optimiser, one checkpoint): ``forward(x, adj, flags)``
    returns ``(eps_x, eps_adj)``, the predicted standard noise of each component; the scores are
    ``-eps / sigma(t)`` (:func:`sdekit.graphs.score_function`). GDSS trains the two networks with two
    Adam optimisers; with one AdamW over both the updates are the same except that gradient clipping
    acts on the joint norm.

    Arguments:
        features: ``F``, the node-feature width.
        depth_x: GCN layers of ``s_X``; layers_adj: attention layers of ``s_A``; the rest as
            :class:`ScoreNetworkA` (defaults: GDSS's community-small config, ``GDSS_NETWORK_PRESETS``).
    """

    def __init__(self, features: int, *, depth_x: int = 3, layers_adj: int = 5, nhid: int = 32, adim: int = 32,
                 heads: int = 4, num_linears: int = 2, c_init: int = 2, c_hid: int = 8, c_final: int = 4) -> None:
        super().__init__()
        self.config = dict(features=features, depth_x=depth_x, layers_adj=layers_adj, nhid=nhid, adim=adim,
                           heads=heads, num_linears=num_linears, c_init=c_init, c_hid=c_hid, c_final=c_final)
        self.net_x = ScoreNetworkX(features, depth_x, nhid)
        self.net_adj = ScoreNetworkA(features, layers_adj, nhid, adim, heads, num_linears, c_init, c_hid, c_final)

    def forward(self, x: torch.Tensor, adj: torch.Tensor, flags: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net_x(x, adj, flags), self.net_adj(x, adj, flags)
