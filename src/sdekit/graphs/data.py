"""Graph data sets generated with networkx, and the conversion between graphs and padded tensors.

The generic-graph benchmarks of GDSS (Jo, Lee, Hwang, "Score-based Generative Modeling of Graphs via the
System of Stochastic Differential Equations", ICML 2022), built here from their definitions, without
downloads:

- **community-small**: 100 graphs; ``c`` drawn uniformly from 12..20, two communities of ``c // 2``
  nodes each (so 12, 14, ..., 20 nodes). Each community is an Erdős–Rényi graph ``G(c // 2, 0.7)``
  drawn with the fixed networkx seeds 0 and 1 (as the official generator, which follows Niu et al.,
  "Permutation invariant graph generation via score-based generative modeling", AISTATS 2020); every pair
  of nodes in different communities is joined with probability ``0.1 / (c // 2)``, and one bridge is
  added between the communities' first nodes when no pair was joined.
- **grid**: 100 two-dimensional ``m x n`` grids with ``m, n`` drawn uniformly from 10..19 (100 to 361
  nodes, as the official generator).
- **ego-small (ego-like)**: the paper cuts 200 radius-1 ego networks of 4 to 18 nodes from the Citeseer
  citation graph, which is not shipped here. :func:`sdekit.graphs.ego_small` cuts them, the same way,
  from a *citation-like random graph* generated with networkx instead (see its docstring), so results on
  it are **not** comparable one-to-one with the paper's Citeseer numbers.

Split (:func:`sdekit.graphs.load_graph_dataset`): the official loader keeps the generated order (no
shuffle) and takes the first 20 % as the test set and the rest as the training set; the order of a
generated set is already random, so the same is done here.

Tensors follow the official code: adjacency ``A: (B, N, N)`` padded with zeros, node flags ``(B, N)``
(1 for the first ``n_i`` nodes of graph ``i``), and node features ``X: (B, N, F)``, the one-hot degree
with ``F = max_feat_num`` classes (masked to zero on padding nodes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from sdekit.extras import require

if TYPE_CHECKING:  # pragma: no cover
    import networkx as nx

__all__ = [
    "GRAPH_DATASETS",
    "GraphDatasetInfo",
    "NodeCountSampler",
    "community_small",
    "ego_small",
    "citation_like_graph",
    "grid_graphs",
    "graph_dataset_info",
    "load_graph_dataset",
    "graphs_to_tensors",
    "tensors_to_graphs",
    "node_count_sampler",
]


def _nx(feature: str) -> Any:
    return require("networkx", "graphs", feature)


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class GraphDatasetInfo:
    """The settings of one of GDSS's generic-graph data sets (from the official ``config/*.yaml``).

    ``max_feat_num`` is one more than the largest degree these generators can produce in practice, which is
    the paper's value for grid (5) and one more than the paper's for community-small (11, paper 10: the
    official pickle's largest degree is 9, but two bridges at a node of degree 8 make a 10) and ego-small
    (18, paper 17: an 18-node ego network's centre has degree 17; the official first 200 Citeseer egos
    have at most 17 nodes).

    Attributes:
        name: the data set's name (a key of ``sdekit.graphs.GRAPH_DATASETS``).
        num_graphs: number of graphs generated.
        max_nodes: the padding size ``N`` (``max_node_num``).
        max_feat_num: number of one-hot degree classes ``F`` (``max_feat_num``).
        test_fraction: fraction of the graphs, taken from the front, that form the test set.
        same_as_paper: whether the graphs come from the same generator as the paper's (False for the
            ego-like set, cut from a random citation-like graph instead of Citeseer).
    """

    name: str
    num_graphs: int
    max_nodes: int
    max_feat_num: int
    test_fraction: float
    same_as_paper: bool


#: The three generic-graph data sets of GDSS, by name.
GRAPH_DATASETS: dict[str, GraphDatasetInfo] = {
    "community_small": GraphDatasetInfo("community_small", 100, 20, 11, 0.2, True),
    "ego_small": GraphDatasetInfo("ego_small", 200, 18, 18, 0.2, False),
    "grid": GraphDatasetInfo("grid", 100, 361, 5, 0.2, True),
}


def graph_dataset_info(name: str) -> GraphDatasetInfo:
    """The :class:`sdekit.graphs.GraphDatasetInfo` of ``name`` (``community_small``, ``ego_small`` or ``grid``)."""
    if name not in GRAPH_DATASETS:
        raise ValueError(f"name must be one of {sorted(GRAPH_DATASETS)}, got {name!r}")
    return GRAPH_DATASETS[name]


def community_small(num_graphs: int = 100, *, seed: int = 0) -> list[nx.Graph]:
    """Two-community graphs of 12 to 20 nodes (GDSS's community-small, from its generator's definition).

    For each graph, ``c`` is drawn uniformly from 12..20 and two communities of ``c // 2`` nodes are made,
    community ``k`` being ``networkx.gnp_random_graph(c // 2, 0.7, seed=k)`` (the official generator fixes
    these seeds, so communities of one size are always the same graph: with networkx 3.6 the two
    communities of each of the 100 graphs of the official pickle are exactly these graphs); each
    inter-community pair of nodes is joined with probability ``0.1 / (c // 2)``, with one bridge between
    the first nodes of the two communities if none was drawn. As in Jo, Lee, Hwang, "Score-based
    Generative Modeling of Graphs via the System of Stochastic Differential Equations" (ICML 2022) and
    Niu et al. (AISTATS 2020).

    Arguments:
        num_graphs: number of graphs (the paper: 100).
        seed: seeds the sizes and the bridges (``numpy.random.default_rng(seed)``).

    Returns:
        ``num_graphs`` undirected graphs with nodes ``0..n-1`` (``n`` even, 12 to 20).
    """
    nx = _nx("sdekit.graphs.community_small()")
    num_graphs = _check_int("num_graphs", num_graphs, 1)
    rng = np.random.default_rng(seed)
    graphs = []
    for _ in range(num_graphs):
        size = int(rng.integers(12, 21)) // 2
        G = nx.disjoint_union_all([nx.gnp_random_graph(size, 0.7, seed=k) for k in range(2)])
        parts = [sorted(c) for c in nx.connected_components(G)]
        p_bridge = 0.1 / size  # p_inter * 2 / ((communities - 1) * size) with p_inter = 0.05
        for a in range(len(parts)):
            for b in range(a + 1, len(parts)):
                draws = rng.random((len(parts[a]), len(parts[b]))) < p_bridge
                for i, j in zip(*np.nonzero(draws), strict=True):
                    G.add_edge(parts[a][i], parts[b][j])
                if not draws.any():
                    G.add_edge(parts[a][0], parts[b][0])
        graphs.append(G)
    return graphs


def grid_graphs(num_graphs: int = 100, *, min_side: int = 10, max_side: int = 19, seed: int = 0,
                ) -> list[nx.Graph]:
    """Two-dimensional ``m x n`` grid graphs with ``m, n`` uniform on ``min_side..max_side`` (GDSS's grid).

    The official generator (Jo, Lee, Hwang, ICML 2022) draws ``m`` and ``n`` from 10..19, so the graphs
    have 100 to 361 nodes; nodes are relabelled ``0..m n - 1`` in networkx's ``grid_2d_graph`` order.

    Arguments:
        num_graphs: number of graphs (the paper: 100).
        min_side, max_side: the range of ``m`` and ``n`` (inclusive).
        seed: seeds the sides (``numpy.random.default_rng(seed)``).
    """
    nx = _nx("sdekit.graphs.grid_graphs()")
    num_graphs = _check_int("num_graphs", num_graphs, 1)
    min_side = _check_int("min_side", min_side, 1)
    max_side = _check_int("max_side", max_side, min_side)
    rng = np.random.default_rng(seed)
    graphs = []
    for _ in range(num_graphs):
        m, n = (int(v) for v in rng.integers(min_side, max_side + 1, size=2))
        graphs.append(nx.convert_node_labels_to_integers(nx.grid_2d_graph(m, n)))
    return graphs


def citation_like_graph(num_nodes: int = 3327, *, alpha: float = 0.5, beta: float = 0.45, gamma: float = 0.05,
                        seed: int = 0) -> nx.Graph:
    """A random undirected graph shaped like a citation network (the stand-in for Citeseer).

    networkx's ``scale_free_graph`` (Bollobás, Borgs, Chayes, Riordan, "Directed scale-free graphs",
    SODA 2003: a directed preferential-attachment model of citation and web graphs), made undirected and
    simple (self-loops and repeated edges dropped). Citeseer has 3327 nodes. The default ``alpha, beta,
    gamma`` (probabilities of a new node citing, an edge between existing nodes, a new node being cited)
    were chosen here among a handful of settings so that the radius-1 ego networks of
    :func:`sdekit.graphs.ego_small` resemble the Citeseer ego-small set of GDSS: measured against that set
    (the official pickle, used only for this check and not shipped), their degree / clustering / orbit
    MMDs, averaged over seeds 0-2, are 0.004 / 0.010 / 0.002, below the MMDs between the official set's
    own test and training splits (0.014 / 0.027 / 0.004); networkx's defaults (0.41, 0.54, 0.05) give
    0.011 / 0.033 / 0.001.

    Arguments:
        num_nodes: number of nodes before taking components.
        alpha, beta, gamma: the model's three event probabilities (they must sum to 1).
        seed: the networkx seed.
    """
    nx = _nx("sdekit.graphs.citation_like_graph()")
    num_nodes = _check_int("num_nodes", num_nodes, 4)
    if min(alpha, beta, gamma) < 0 or abs(alpha + beta + gamma - 1) > 1e-9:
        raise ValueError(f"alpha, beta, gamma must be probabilities summing to 1, got {alpha}, {beta}, {gamma}")
    D = nx.scale_free_graph(num_nodes, alpha=alpha, beta=beta, gamma=gamma, seed=seed)
    G = nx.Graph(D)
    G.remove_edges_from(list(nx.selfloop_edges(G)))
    return G


def ego_small(num_graphs: int = 200, *, min_nodes: int = 4, max_nodes: int = 18, seed: int = 0,
              ) -> list[nx.Graph]:
    """Ego-LIKE graphs: radius-1 ego networks of 4 to 18 nodes cut from a citation-like random graph.

    **Not the paper's data.** GDSS (Jo, Lee, Hwang, ICML 2022) cuts its ego-small set from the Citeseer
    citation graph, which is not shipped here; this set is cut, with the official procedure, from a random
    graph generated with networkx (:func:`sdekit.graphs.citation_like_graph`: ``scale_free_graph``,
    Bollobás et al. 2003, a directed preferential-attachment model of citation graphs, made undirected and
    simple, with Citeseer's 3327 nodes): keep the largest connected component, visit its nodes in a seeded
    random order (Citeseer's are visited in file order), and take the radius-1 ego network of each,
    keeping those with ``min_nodes`` to ``max_nodes`` nodes, until ``num_graphs`` are found. Table rows on
    it must say that it is not Citeseer.

    Arguments:
        num_graphs: number of ego networks (the paper: the first 200).
        min_nodes, max_nodes: the size range kept (inclusive).
        seed: seeds the random graph and the node order.

    Raises:
        ValueError: if the random graph yields fewer than ``num_graphs`` ego networks of the sizes asked.
    """
    nx = _nx("sdekit.graphs.ego_small()")
    num_graphs = _check_int("num_graphs", num_graphs, 1)
    min_nodes = _check_int("min_nodes", min_nodes, 1)
    max_nodes = _check_int("max_nodes", max_nodes, min_nodes)
    rng = np.random.default_rng(seed)
    G = citation_like_graph(seed=int(rng.integers(2**31)))
    G = G.subgraph(max(nx.connected_components(G), key=len))
    order = list(G.nodes)
    graphs = []
    for k in rng.permutation(len(order)):
        ego = nx.ego_graph(G, order[k], radius=1)
        if min_nodes <= ego.number_of_nodes() <= max_nodes:
            graphs.append(nx.convert_node_labels_to_integers(nx.Graph(ego)))
            if len(graphs) == num_graphs:
                return graphs
    raise ValueError(f"the citation-like graph has only {len(graphs)} ego networks of {min_nodes} to "
                     f"{max_nodes} nodes; num_graphs={num_graphs} asked for more")


def load_graph_dataset(name: str, *, seed: int = 0) -> tuple[list[nx.Graph], list[nx.Graph]]:
    """``(train, test)`` graphs of one of GDSS's generic-graph data sets, with the paper's split.

    The official loader (Jo, Lee, Hwang, ICML 2022) takes the first ``int(0.2 * len)`` graphs of the
    generated list, unshuffled, as the test set and the rest as the training set; so does this function
    (the order of a generated set is already random). community-small and grid: 80 / 20 graphs;
    ego-small (ego-like, see :func:`sdekit.graphs.ego_small`): 160 / 40.

    Arguments:
        name: ``"community_small"``, ``"ego_small"`` or ``"grid"``.
        seed: the generator's seed.
    """
    info = graph_dataset_info(name)
    generate = {"community_small": community_small, "ego_small": ego_small, "grid": grid_graphs}[name]
    graphs = generate(info.num_graphs, seed=seed)
    n_test = int(info.test_fraction * len(graphs))
    return graphs[n_test:], graphs[:n_test]


def _as_adjacency(graph: Any, index: int, nx: Any) -> np.ndarray:
    """The adjacency of one graph (networkx graph or square array), checked to be binary, symmetric, loop-free."""
    if isinstance(graph, nx.Graph):
        if graph.is_directed():
            raise ValueError(f"graphs[{index}] is directed; an undirected graph (symmetric adjacency) is expected")
        if graph.is_multigraph():
            raise ValueError(f"graphs[{index}] is a multigraph; a simple graph (binary adjacency) is expected")
        loops = nx.number_of_selfloops(graph)
        if loops:
            raise ValueError(f"graphs[{index}] has {loops} self-loop(s); the diagonal of A must be zero")
        weights = {w for _, _, w in graph.edges(data="weight", default=1)}
        if any(w != 1 for w in weights):
            raise ValueError(f"graphs[{index}] has weighted edges (weights {sorted(weights, key=str)[:4]}); "
                             "a binary adjacency is expected")
        return nx.to_numpy_array(graph, nodelist=list(graph.nodes), weight=None, dtype=np.float64)
    a = graph.detach().cpu().numpy() if isinstance(graph, torch.Tensor) else np.asarray(graph)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"graphs[{index}] must be a networkx graph or a square adjacency matrix, got shape "
                         f"{a.shape}")
    a = a.astype(np.float64)
    if not np.all((a == 0) | (a == 1)):
        bad = a[(a != 0) & (a != 1)]
        raise ValueError(f"graphs[{index}] is a weighted adjacency (entries such as {bad[0]!r}); binary 0/1 "
                         "entries are expected")
    if not np.array_equal(a, a.T):
        i, j = np.argwhere(a != a.T)[0]
        raise ValueError(f"graphs[{index}] has an asymmetric adjacency (A[{i},{j}] != A[{j},{i}]); an "
                         "undirected graph is expected")
    if np.any(np.diag(a) != 0):
        raise ValueError(f"graphs[{index}] has {int(np.count_nonzero(np.diag(a)))} self-loop(s); the diagonal "
                         "of A must be zero")
    return a


def graphs_to_tensors(graphs: Sequence[Any], max_nodes: int, max_feat_num: int, *,
                      dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Padded tensors ``(X, A, flags)`` of a list of graphs, with GDSS's one-hot degree node features.

    As the official code (Jo, Lee, Hwang, ICML 2022): graph ``i`` with ``n_i`` nodes fills the top-left
    ``n_i x n_i`` block of ``A[i]`` (nodes in the graph's own order), ``flags[i, :n_i] = 1``, and
    ``X[i, v]`` is the one-hot vector of node ``v``'s degree over ``max_feat_num`` classes (zero on padding).

    Arguments:
        graphs: networkx graphs, or square binary symmetric adjacency matrices (arrays or tensors).
        max_nodes: the padding size ``N``.
        max_feat_num: the number ``F`` of degree classes (every degree must be ``< F``).
        dtype: floating dtype of the three tensors.

    Returns:
        ``X: (B, N, F)``, ``A: (B, N, N)``, ``flags: (B, N)``.

    Raises:
        ValueError: naming the graph's index, for a directed/asymmetric or weighted adjacency, self-loops, a
            graph with more than ``max_nodes`` nodes, or a degree ``>= max_feat_num``.
    """
    nx = _nx("sdekit.graphs.graphs_to_tensors()")
    max_nodes = _check_int("max_nodes", max_nodes, 1)
    max_feat_num = _check_int("max_feat_num", max_feat_num, 1)
    if isinstance(graphs, (nx.Graph, np.ndarray, torch.Tensor)) or not isinstance(graphs, Sequence):
        raise TypeError(f"graphs must be a list of graphs or adjacency matrices, got {type(graphs).__name__}")
    if len(graphs) == 0:
        raise ValueError("graphs is empty; at least one graph is needed")
    A = np.zeros((len(graphs), max_nodes, max_nodes))
    flags = np.zeros((len(graphs), max_nodes))
    for i, g in enumerate(graphs):
        a = _as_adjacency(g, i, nx)
        n = a.shape[0]
        if n > max_nodes:
            raise ValueError(f"graphs[{i}] has {n} nodes, more than max_nodes={max_nodes}")
        degree = a.sum(1)
        if n and degree.max() >= max_feat_num:
            raise ValueError(f"graphs[{i}] has a node of degree {int(degree.max())}; the one-hot degree features "
                             f"need max_feat_num > {int(degree.max())}, got max_feat_num={max_feat_num}")
        A[i, :n, :n] = a
        flags[i, :n] = 1.0
    degrees = torch.from_numpy(A.sum(-1)).long()
    X = torch.nn.functional.one_hot(degrees, max_feat_num).to(dtype) * torch.from_numpy(flags).to(dtype)[..., None]
    return X, torch.from_numpy(A).to(dtype), torch.from_numpy(flags).to(dtype)


def tensors_to_graphs(A: torch.Tensor, flags: torch.Tensor | None = None, *, threshold: float | None = None,
                      drop_isolated: bool = True) -> list[nx.Graph]:
    """networkx graphs from padded adjacency tensors, as GDSS turns its samples into graphs.

    The official code (Jo, Lee, Hwang, ICML 2022) quantises the sampled adjacency (``A < 0.5`` becomes 0,
    else 1), drops self-loops and isolated nodes, and keeps one node when none is left; here the
    quantisation is asked for with ``threshold=0.5`` and anything else that is not a binary, symmetric,
    loop-free adjacency is an error.

    Arguments:
        A: ``(B, N, N)`` adjacency; binary unless ``threshold`` is given.
        flags: ``(B, N)`` 0/1 node flags (``None``: all nodes present). Edges on flagged-off nodes are an error.
        threshold: if given, entries ``>= threshold`` become edges (GDSS: 0.5); the result must be symmetric.
        drop_isolated: drop nodes without edges (GDSS's evaluation does); an empty result keeps one node.

    Returns:
        ``B`` graphs, nodes labelled by their row in ``A``.

    Raises:
        ValueError: naming the graph's index, for non-binary entries (without ``threshold``), an asymmetric
            adjacency, self-loops, or edges on nodes whose flag is 0.
    """
    nx = _nx("sdekit.graphs.tensors_to_graphs()")
    if not isinstance(A, torch.Tensor) or A.dim() != 3 or A.shape[-1] != A.shape[-2]:
        got = tuple(A.shape) if isinstance(A, torch.Tensor) else type(A).__name__
        raise ValueError(f"A must be a tensor (B, N, N), got {got}")
    a = A.detach().cpu().double().numpy()
    if flags is None:
        f = np.ones(a.shape[:2])
    else:
        if not isinstance(flags, torch.Tensor) or tuple(flags.shape) != a.shape[:2]:
            got = tuple(flags.shape) if isinstance(flags, torch.Tensor) else type(flags).__name__
            raise ValueError(f"flags must be a tensor of shape {a.shape[:2]} (B, N), got {got}")
        f = flags.detach().cpu().double().numpy()
        if not np.all((f == 0) | (f == 1)):
            raise ValueError("flags must be 0/1")
    if threshold is not None:
        a = (a >= float(threshold)).astype(np.float64)
    graphs = []
    for i in range(a.shape[0]):
        ai = a[i]
        if threshold is None and not np.all((ai == 0) | (ai == 1)):
            bad = ai[(ai != 0) & (ai != 1)]
            raise ValueError(f"A[{i}] is not binary (entries such as {bad[0]!r}); pass threshold=0.5 to quantise")
        if not np.array_equal(ai, ai.T):
            r, c = np.argwhere(ai != ai.T)[0]
            raise ValueError(f"A[{i}] is asymmetric (A[{i},{r},{c}] != A[{i},{c},{r}])")
        if np.any(np.diag(ai) != 0):
            raise ValueError(f"A[{i}] has {int(np.count_nonzero(np.diag(ai)))} self-loop(s); the diagonal must be 0")
        off = f[i] == 0
        if np.any(ai[off]) or np.any(ai[:, off]):
            raise ValueError(f"A[{i}] has edges on nodes whose flag is 0; the mask does not match the padding")
        keep = np.flatnonzero(f[i])
        G = nx.Graph()
        G.add_nodes_from(keep.tolist())
        r, c = np.nonzero(np.triu(ai, 1))
        G.add_edges_from(zip(r.tolist(), c.tolist(), strict=True))
        if drop_isolated:
            G.remove_nodes_from(list(nx.isolates(G)))
            if G.number_of_nodes() == 0:
                G.add_node(0)
        graphs.append(G)
    return graphs


class NodeCountSampler:
    """Draws numbers of nodes, and the matching node flags, from a training set's node counts.

    GDSS (Jo, Lee, Hwang, ICML 2022) generates a batch with the node flags of training graphs drawn
    uniformly with replacement; this is that draw.

    Arguments:
        counts: the training graphs' numbers of nodes.
    """

    def __init__(self, counts: Sequence[int]) -> None:
        c = np.asarray(counts)
        if c.ndim != 1 or c.size == 0 or not np.issubdtype(c.dtype, np.integer) or np.any(c < 1):
            raise ValueError(f"counts must be a non-empty list of positive integers, got {counts!r}")
        self.counts = torch.as_tensor(c, dtype=torch.long)

    def sample(self, batch_size: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(batch_size,)`` int64 node counts drawn uniformly, with replacement, from the training counts."""
        batch_size = _check_int("batch_size", batch_size, 1)
        idx = torch.randint(len(self.counts), (batch_size,), generator=generator)
        return self.counts[idx]

    def flags(self, batch_size: int, max_nodes: int, *, generator: torch.Generator | None = None,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``(batch_size, max_nodes)`` node flags, 1 on the first ``n`` nodes for each drawn count ``n``."""
        max_nodes = _check_int("max_nodes", max_nodes, 1)
        if int(self.counts.max()) > max_nodes:
            raise ValueError(f"max_nodes={max_nodes} is smaller than the largest node count {int(self.counts.max())}")
        n = self.sample(batch_size, generator=generator)
        return (torch.arange(max_nodes)[None, :] < n[:, None]).to(dtype)


def node_count_sampler(train: Sequence[Any]) -> NodeCountSampler:
    """A :class:`sdekit.graphs.NodeCountSampler` over the node counts of ``train`` (networkx graphs)."""
    if len(train) == 0:
        raise ValueError("train is empty; at least one graph is needed")
    counts = []
    for i, g in enumerate(train):
        n = g.number_of_nodes() if hasattr(g, "number_of_nodes") else None
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"train[{i}] must be a graph with at least one node, got {g!r}")
        counts.append(n)
    return NodeCountSampler(counts)
