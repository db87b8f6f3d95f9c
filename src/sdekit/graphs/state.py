r"""Graph states: node features ``X (B, N, F)``, a symmetric adjacency ``A (B, N, N)`` and node flags.

A batch of graphs is padded to ``N`` (the largest graph allowed) nodes. ``flags (B, N)`` holds 1 for a
node that exists and 0 for padding; the active nodes need not come first (permuting the nodes of a
padded graph permutes its flags too, and the score networks are equivariant under that). A valid state
has

* ``A`` symmetric with a zero diagonal (no self-loops),
* every row and column of ``A`` and every row of ``X`` that belongs to a padding node exactly zero,
* flags that are exactly 0 or 1,

and, for data (``binary=True``), adjacency entries in ``{0, 1}``. The diffusion of GDSS keeps these
invariants at every step: noise on ``A`` is drawn on the upper triangle and mirrored, and every update
is masked (Jo, Lee, Hwang, "Score-based Generative Modeling of Graphs via the System of Stochastic
Differential Equations", ICML 2022, section 3).
"""

from __future__ import annotations

import torch

__all__ = ["check_graph_state", "mask_x", "mask_adjs", "symmetric_noise", "quantize_adjacency"]


def _check_tensor(name: str, value, dim: int, shape_doc: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor {shape_doc}, got {type(value).__name__}")
    if value.dim() != dim:
        raise ValueError(f"{name} must have shape {shape_doc}, got shape {tuple(value.shape)}")
    return value


def _check_flags(flags, batch: int, nodes: int) -> torch.Tensor:
    flags = _check_tensor("flags", flags, 2, "(batch, nodes)")
    if tuple(flags.shape) != (batch, nodes):
        raise ValueError(f"flags must have shape (batch, nodes) = ({batch}, {nodes}) to match the state, "
                         f"got {tuple(flags.shape)}")
    bad = (flags != 0) & (flags != 1)
    if bool(bad.any()):
        b, i = (int(v) for v in bad.nonzero()[0])
        raise ValueError(f"flags must be 0 (padding) or 1 (node); got flags[{b}, {i}] = {float(flags[b, i])}")
    return flags


def mask_x(x: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
    """Zero the rows of node features ``x (B, N, F)`` of padding nodes (``flags (B, N)`` equal to 0)."""
    return x * flags.to(x.dtype).unsqueeze(-1)


def mask_adjs(adjs: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
    """Zero the rows and columns of padding nodes in ``adjs (B, N, N)`` or ``(B, C, N, N)`` (channels)."""
    f = flags.to(adjs.dtype)
    if adjs.dim() == 4:
        f = f.unsqueeze(1)
    return adjs * f.unsqueeze(-1) * f.unsqueeze(-2)


def symmetric_noise(shape: tuple[int, ...] | torch.Size, flags: torch.Tensor,
                    generator: torch.Generator | None = None, *, dtype: torch.dtype | None = None,
                    device: torch.device | str | None = None) -> torch.Tensor:
    r"""Standard normal noise for an adjacency ``(B, N, N)``: the strict upper triangle is drawn i.i.d.
    ``N(0, 1)`` and mirrored, the diagonal and the rows and columns of padding nodes are zero.

    This is the noise of the forward process on ``A`` in GDSS (one Gaussian per unordered node pair),
    so the perturbed adjacency stays symmetric with a zero diagonal.

    Arguments:
        shape: ``(B, N, N)``.
        flags: ``(B, N)`` node flags (0/1).
        generator: a ``torch.Generator`` for reproducible draws (``None``: torch's global one).
        dtype, device: of the result (default: the flags' device, torch's default dtype).

    Raises:
        ValueError: a shape that is not ``(B, N, N)``, flags of another batch or node count.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or shape[1] != shape[2]:
        raise ValueError(f"shape must be (batch, nodes, nodes), got {shape}")
    flags = _check_flags(flags, shape[0], shape[1])
    device = flags.device if device is None else device
    z = torch.randn(shape, generator=generator, dtype=dtype, device=device).triu(1)
    return mask_adjs(z + z.transpose(-1, -2), flags)


def quantize_adjacency(adjs: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Round a relaxed adjacency to ``{0, 1}``: entries ``>= threshold`` become 1 (GDSS's final step, with
    threshold 0.5). Symmetry, the zero diagonal and the padding mask carry over."""
    return (adjs >= threshold).to(adjs.dtype)


def check_graph_state(x: torch.Tensor, adjs: torch.Tensor, flags: torch.Tensor, *, binary: bool = False,
                      max_nodes: int | None = None) -> None:
    """Check that ``(x, adjs, flags)`` is a valid batch of padded graphs (see the module docstring).

    Arguments:
        x: ``(B, N, F)`` node features.
        adjs: ``(B, N, N)`` adjacency matrices.
        flags: ``(B, N)`` node flags, exactly 0 or 1 (active nodes anywhere, not only first).
        binary: also require adjacency entries in ``{0, 1}`` (data, or a quantised sample).
        max_nodes: if given, ``N`` must not exceed it.

    Raises:
        TypeError: an argument that is not a tensor, or non-floating features/adjacency.
        ValueError: the first violated rule, naming the batch element and entry: shapes that do not
            match, flags not 0/1, an asymmetric adjacency, a self-loop, a weighted entry with
            ``binary=True``, a nonzero entry on a padding node, more than ``max_nodes`` nodes.
    """
    x = _check_tensor("x", x, 3, "(batch, nodes, features)")
    adjs = _check_tensor("adjs", adjs, 3, "(batch, nodes, nodes)")
    for name, v in (("x", x), ("adjs", adjs)):
        if not v.is_floating_point():
            raise TypeError(f"{name} must be a floating tensor, got dtype {v.dtype}")
    B, N = adjs.shape[0], adjs.shape[1]
    if adjs.shape[2] != N:
        raise ValueError(f"adjs must be square, (batch, nodes, nodes); got shape {tuple(adjs.shape)}")
    if tuple(x.shape[:2]) != (B, N):
        raise ValueError(f"x must have shape (batch, nodes, features) = ({B}, {N}, F) to match adjs, "
                         f"got {tuple(x.shape)}")
    if max_nodes is not None and N > max_nodes:
        raise ValueError(f"graphs have {N} nodes (padded), more than max_nodes={max_nodes}")
    flags = _check_flags(flags, B, N)

    def first(mask: torch.Tensor) -> tuple[int, ...]:
        return tuple(int(v) for v in mask.nonzero()[0])

    asym = adjs != adjs.transpose(-1, -2)
    if bool(asym.any()):
        b, i, j = first(asym)
        raise ValueError(f"adjs must be symmetric; adjs[{b}, {i}, {j}] = {float(adjs[b, i, j])} but "
                         f"adjs[{b}, {j}, {i}] = {float(adjs[b, j, i])}")
    diag = adjs.diagonal(dim1=-2, dim2=-1) != 0
    if bool(diag.any()):
        b, i = first(diag)
        raise ValueError(f"adjs must have a zero diagonal (no self-loops); adjs[{b}, {i}, {i}] = "
                         f"{float(adjs[b, i, i])}")
    if binary:
        weighted = (adjs != 0) & (adjs != 1)
        if bool(weighted.any()):
            b, i, j = first(weighted)
            raise ValueError(f"adjs must be binary (entries 0 or 1); adjs[{b}, {i}, {j}] = {float(adjs[b, i, j])}")
    pad = flags == 0
    off = (adjs != 0) & (pad.unsqueeze(-1) | pad.unsqueeze(-2))
    if bool(off.any()):
        b, i, j = first(off)
        node = i if bool(pad[b, i]) else j
        raise ValueError(f"adjs[{b}, {i}, {j}] = {float(adjs[b, i, j])} touches padding node {node} "
                         f"(flags[{b}, {node}] = 0); rows and columns of padding nodes must be zero")
    xoff = (x != 0) & pad.unsqueeze(-1)
    if bool(xoff.any()):
        b, i, k = first(xoff)
        raise ValueError(f"x[{b}, {i}, {k}] = {float(x[b, i, k])} on padding node {i} (flags[{b}, {i}] = 0); "
                         f"features of padding nodes must be zero")
