"""Graph states: validity checks (issue 15 must-show 6) and the symmetric noise of the forward process on A."""

import math

import pytest
import torch

from sdekit.graphs import check_graph_state, mask_adjs, mask_x, quantize_adjacency, symmetric_noise


def _graph_batch(B=3, N=6, F=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    flags = torch.ones(B, N)
    flags[0, 4:] = 0
    flags[1, 2] = 0  # not contiguous: allowed
    a = (torch.rand(B, N, N, generator=g) < 0.5).float().triu(1)
    a = mask_adjs(a + a.transpose(-1, -2), flags)
    x = mask_x(torch.rand(B, N, F, generator=g), flags)
    return x, a, flags


def test_valid_batch_passes():
    x, a, flags = _graph_batch()
    check_graph_state(x, a, flags, binary=True, max_nodes=6)


@pytest.mark.parametrize("case, match", [
    ("asymmetric", "symmetric"),
    ("self_loop", "zero diagonal"),
    ("weighted", "binary"),
    ("padding_edge", "padding node"),
    ("padding_feature", "padding node"),
    ("flags_not_binary", "flags must be 0"),
    ("flags_shape", "flags must have shape"),
    ("too_large", "max_nodes"),
    ("x_shape", "x must have shape"),
])
def test_bad_states_raise(case, match):
    x, a, flags = _graph_batch()
    if case == "asymmetric":
        a[1, 0, 1], a[1, 1, 0] = 1.0, 0.0
    elif case == "self_loop":
        a[2, 3, 3] = 1.0
    elif case == "weighted":
        a[2, 0, 1] = a[2, 1, 0] = 0.7
    elif case == "padding_edge":
        a[0, 0, 5] = a[0, 5, 0] = 1.0  # node 5 of graph 0 is padding
    elif case == "padding_feature":
        x[1, 2, 0] = 1.0  # node 2 of graph 1 is padding
    elif case == "flags_not_binary":
        flags[0, 0] = 0.5
    elif case == "flags_shape":
        flags = flags[:, :5]
    elif case == "x_shape":
        x = x[:, :5]
    kwargs = {"binary": True, "max_nodes": 5 if case == "too_large" else None}
    with pytest.raises(ValueError, match=match):
        check_graph_state(x, a, flags, **kwargs)


def test_weighted_is_fine_without_binary_and_types_are_checked():
    x, a, flags = _graph_batch()
    check_graph_state(x, 0.3 * a, flags)  # a relaxed (diffused) state need not be binary
    with pytest.raises(TypeError, match="adjs must be a torch.Tensor"):
        check_graph_state(x, a.numpy(), flags)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="floating"):
        check_graph_state(x, a.long(), flags)


def test_symmetric_noise_structure_and_law():
    _, _, flags = _graph_batch(B=3, N=6)
    g = torch.Generator().manual_seed(1)
    z = symmetric_noise((3, 6, 6), flags, g)
    assert torch.equal(z, z.transpose(-1, -2))
    assert torch.all(z.diagonal(dim1=-2, dim2=-1) == 0)
    assert torch.equal(mask_adjs(z, flags), z)
    check_graph_state(torch.zeros(3, 6, 1), z, flags)
    # each upper-triangle entry of an active pair is N(0, 1): pooled over 2e4 draws x 15 pairs
    n = 20000
    z = symmetric_noise((n, 6, 6), torch.ones(n, 6), g)
    iu = torch.triu_indices(6, 6, 1)
    v = z[:, iu[0], iu[1]].flatten().double()
    m = v.numel()
    assert abs(v.mean().item()) < 4 / math.sqrt(m)
    assert abs(v.var().item() - 1) < 4 * math.sqrt(2 / (m - 1))
    # distinct pairs are uncorrelated
    c = (z[:, 0, 1] * z[:, 0, 2]).double().mean().item()
    assert abs(c) < 4 / math.sqrt(n)


def test_symmetric_noise_bad_shape():
    with pytest.raises(ValueError, match="shape must be"):
        symmetric_noise((2, 3, 4), torch.ones(2, 3))
    with pytest.raises(ValueError, match="flags must have shape"):
        symmetric_noise((2, 3, 3), torch.ones(2, 4))


def test_quantize_threshold():
    a = torch.tensor([[[0.0, 0.49], [0.49, 0.0]], [[0.0, 0.5], [0.5, 0.0]]])
    q = quantize_adjacency(a)
    assert q[0].sum() == 0 and q[1, 0, 1] == 1 and q[1, 1, 0] == 1
