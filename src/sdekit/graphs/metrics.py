"""Graph statistics and the MMDs of GDSS's evaluation: degree, clustering and 4-node orbit counts.

The generic-graph evaluation of GDSS (Jo, Lee, Hwang, "Score-based Generative Modeling of Graphs via the
System of Stochastic Differential Equations", ICML 2022), which follows GraphRNN (You et al., "GraphRNN:
Generating Realistic Graphs with Deep Auto-regressive Models", ICML 2018), computes the biased squared
MMD between a reference set and a generated set,

    MMD^2 = mean_{x,x'} k(x, x') + mean_{y,y'} k(y, y') - 2 mean_{x,y} k(x, y)

(all pairs, the diagonal included), with

- **degree**: each graph's degree histogram, normalised to a pmf; Gaussian-EMD kernel
  ``exp(-EMD(p, q)^2 / (2 sigma^2))`` with ``sigma = 1`` and ground distance ``|i - j|``;
- **clustering**: each graph's histogram of local clustering coefficients over 100 bins of ``[0, 1]``,
  normalised; Gaussian-EMD with ``sigma = 0.1`` and ground distance ``|i - j| / 100``;
- **orbit**: each graph's 15 node-orbit counts of graphlets of up to 4 nodes (ORCA's ``node 4``), summed
  over nodes and divided by the number of nodes; Gaussian kernel on the Euclidean distance
  ``exp(-|x - y|^2 / (2 sigma^2))`` with ``sigma = 30``, no normalisation.

Empty generated graphs are left out of the degree and clustering sets, as the official code does. On the
line the EMD between two pmfs is the L1 distance between their CDFs, which is what is computed here.

The orbit counts follow ORCA (Hočevar, Demšar, "A combinatorial approach to graphlet counting",
Bioinformatics 2014) and the orbit numbering of Pržulj ("Biological network comparison using graphlet
degree distribution", Bioinformatics 2007); they are computed from adjacency-matrix products instead of
running the ORCA program.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse

from sdekit.extras import require

if TYPE_CHECKING:  # pragma: no cover
    import networkx as nx

__all__ = [
    "ORBIT_NAMES",
    "orbit_counts",
    "degree_histograms",
    "clustering_coefficients",
    "clustering_histograms",
    "mean_orbit_counts",
    "gaussian_emd_mmd",
    "gaussian_mmd",
    "degree_mmd",
    "clustering_mmd",
    "orbit_mmd",
    "graph_mmds",
    "validity",
]

#: The 15 node orbits of graphlets with 2 to 4 nodes, in ORCA's (Pržulj's) order.
ORBIT_NAMES: tuple[str, ...] = (
    "edge", "path3-end", "path3-middle", "triangle",
    "path4-end", "path4-inner", "star-leaf", "star-centre", "cycle4",
    "paw-tail", "paw-triangle", "paw-centre", "diamond-degree2", "diamond-degree3", "clique4",
)


def _nx(feature: str) -> Any:
    return require("networkx", "graphs", feature)


def _check_graph(G: Any, name: str, nx: Any) -> None:
    if not isinstance(G, nx.Graph) or G.is_directed() or G.is_multigraph():
        raise TypeError(f"{name} must be an undirected simple networkx.Graph, got {type(G).__name__}")
    loops = nx.number_of_selfloops(G)
    if loops:
        raise ValueError(f"{name} has {loops} self-loop(s); orbit counts need a loop-free graph")


def _check_graphs(graphs: Any, name: str, nx: Any) -> list[Any]:
    if isinstance(graphs, nx.Graph) or not isinstance(graphs, Sequence):
        raise TypeError(f"{name} must be a list of networkx graphs, got {type(graphs).__name__}")
    if len(graphs) == 0:
        raise ValueError(f"{name} is empty; at least one graph is needed")
    for i, G in enumerate(graphs):
        if not isinstance(G, nx.Graph):
            raise TypeError(f"{name}[{i}] must be a networkx graph, got {type(G).__name__}")
    return list(graphs)


def _choose2(x: np.ndarray) -> np.ndarray:
    return x * (x - 1) / 2


def _adjacency(G: Any) -> Any:
    """The sparse CSR adjacency of ``G`` (float64), rows in ``G.nodes`` order."""
    n = G.number_of_nodes()
    index = {v: i for i, v in enumerate(G.nodes)}
    edges = np.array([(index[u], index[v]) for u, v in G.edges], dtype=np.int64).reshape(-1, 2)
    rows, cols = np.concatenate([edges[:, 0], edges[:, 1]]), np.concatenate([edges[:, 1], edges[:, 0]])
    return sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))


def orbit_counts(G: nx.Graph) -> np.ndarray:
    """Per-node counts of the 15 orbits of graphlets with 2 to 4 nodes (ORCA's ``node 4`` output).

    Column ``k`` of row ``v`` is the number of induced connected subgraphs of 2 to 4 nodes in which ``v``
    sits in orbit ``k`` (order ``sdekit.graphs.ORBIT_NAMES``, the numbering of Pržulj, Bioinformatics 2007, used by
    ORCA, Hočevar and Demšar, Bioinformatics 2014). Non-induced counts of each 4-node pattern are closed
    forms in ``A``, ``A^2``, the degrees and the triangle counts (the 4-cliques come from triangles in each
    node's neighbourhood); the induced counts follow by inverting the triangular system that says how
    often each pattern sits inside each graphlet. Cost ``O(N^3)`` for the products plus
    ``sum_v deg(v)^3``: a few milliseconds on a 361-node grid.

    Arguments:
        G: an undirected simple graph without self-loops.

    Returns:
        ``(n, 15)`` int64 counts, rows in ``G.nodes`` order.
    """
    nx = _nx("sdekit.graphs.orbit_counts()")
    _check_graph(G, "G", nx)
    n = G.number_of_nodes()
    if n == 0:
        return np.zeros((0, 15), dtype=np.int64)
    A = _adjacency(G)
    d = np.asarray(A.sum(1)).ravel()
    A2: Any = sparse.csr_matrix(A @ A)
    AA2: Any = sparse.csr_matrix(A.multiply(A2))  # A_ij * (common neighbours of i and j)
    t = np.asarray(AA2.sum(1)).ravel() / 2  # triangles at each node
    Ad1 = A @ (d - 1)
    C2 = A2.copy()
    C2.data = _choose2(C2.data)
    # non-induced counts of each pattern with the node in the given orbit
    N4 = A @ Ad1 - d * (d - 1) - 2 * t
    N5 = (d - 1) * Ad1 - 2 * t
    N6 = A @ _choose2(d - 1)
    N7 = d * (d - 1) * (d - 2) / 6
    N8 = np.asarray(C2.sum(1)).ravel() - _choose2(d)
    N9 = A @ t - 2 * t
    N10 = AA2 @ (d - 2)
    N12 = np.asarray((A @ (AA2 - A)).multiply(A).sum(1)).ravel() / 2
    N11 = t * (d - 2)
    N13 = np.asarray(A.multiply(C2).sum(1)).ravel()
    N14 = np.zeros(n)
    dense = A.toarray() if n <= 4096 else None
    for v in np.flatnonzero(t):  # 4-cliques at v: triangles among v's neighbours
        nb = A.indices[A.indptr[v]:A.indptr[v + 1]]
        B = dense[np.ix_(nb, nb)] if dense is not None else A[nb][:, nb].toarray()
        N14[v] = ((B @ B) * B).sum() / 6
    O14 = N14
    O13 = N13 - 3 * O14
    O12 = N12 - 3 * O14
    O11 = N11 - 2 * O13 - 3 * O14
    O10 = N10 - 2 * O12 - 2 * O13 - 6 * O14
    O9 = N9 - 2 * O12 - 3 * O14
    O8 = N8 - O12 - O13 - 3 * O14
    O7 = N7 - O11 - O13 - O14
    O6 = N6 - O9 - O10 - 2 * O12 - O13 - 3 * O14
    O5 = N5 - 2 * O8 - O10 - 2 * O11 - 2 * O12 - 4 * O13 - 6 * O14
    O4 = N4 - 2 * O8 - 2 * O9 - O10 - 4 * O12 - 2 * O13 - 6 * O14
    O1 = Ad1 - 2 * t
    O2 = _choose2(d) - t
    out = np.stack([d, O1, O2, t, O4, O5, O6, O7, O8, O9, O10, O11, O12, O13, O14], axis=1)
    return np.rint(out).astype(np.int64)


def degree_histograms(graphs: Sequence[nx.Graph]) -> list[np.ndarray]:
    """Each graph's degree histogram (counts of degree 0, 1, ..., max), as ``networkx.degree_histogram``."""
    nx = _nx("sdekit.graphs.degree_histograms()")
    return [np.asarray(nx.degree_histogram(G), dtype=np.float64) for G in _check_graphs(graphs, "graphs", nx)]


def clustering_coefficients(G: nx.Graph) -> np.ndarray:
    """Local clustering coefficients ``2 T_v / (d_v (d_v - 1))`` (0 where ``d_v < 2``), in ``G.nodes`` order.

    The same values, bit for bit, as ``networkx.clustering`` on an unweighted graph (the same integer
    ratio, correctly rounded), from sparse matrix products instead of Python loops (Watts, Strogatz,
    "Collective dynamics of 'small-world' networks", Nature 1998).
    """
    nx = _nx("sdekit.graphs.clustering_coefficients()")
    _check_graph(G, "G", nx)
    if G.number_of_nodes() == 0:
        return np.zeros(0)
    A = _adjacency(G)
    d = np.rint(np.asarray(A.sum(1)).ravel()).astype(np.int64)
    two_t = np.rint(np.asarray(A.multiply(A @ A).sum(1)).ravel()).astype(np.int64)  # 2 x triangles
    out = np.zeros(len(d))
    ok = two_t > 0
    out[ok] = two_t[ok] / (d[ok] * (d[ok] - 1))
    return out


def clustering_histograms(graphs: Sequence[nx.Graph], bins: int = 100) -> list[np.ndarray]:
    """Each graph's histogram of local clustering coefficients over ``bins`` equal bins of ``[0, 1]``."""
    nx = _nx("sdekit.graphs.clustering_histograms()")
    out = []
    for G in _check_graphs(graphs, "graphs", nx):
        c = clustering_coefficients(G)
        out.append(np.histogram(c, bins=bins, range=(0.0, 1.0))[0].astype(np.float64))
    return out


def mean_orbit_counts(graphs: Sequence[nx.Graph]) -> np.ndarray:
    """``(len(graphs), 15)``: each graph's orbit counts summed over its nodes, divided by its number of nodes."""
    nx = _nx("sdekit.graphs.mean_orbit_counts()")
    rows = []
    for i, G in enumerate(_check_graphs(graphs, "graphs", nx)):
        if G.number_of_nodes() == 0:
            raise ValueError(f"graphs[{i}] has no nodes; orbit counts per node are undefined")
        rows.append(orbit_counts(G).sum(0) / G.number_of_nodes())
    return np.stack(rows)


def _pad(hists: Sequence[np.ndarray], length: int) -> np.ndarray:
    out = np.zeros((len(hists), length))
    for i, h in enumerate(hists):
        out[i, :len(h)] = h
    return out


def _biased_mmd(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    return float(kxx.mean() + kyy.mean() - 2 * kxy.mean())


def _pairwise_l1_cdf(P: np.ndarray, Q: np.ndarray, scale: float) -> np.ndarray:
    cp, cq = np.cumsum(P, 1), np.cumsum(Q, 1)
    out = np.empty((len(P), len(Q)))
    step = max(1, 2**22 // max(1, len(Q) * P.shape[1]))  # bound the (rows, m, L) temporary
    for s in range(0, len(P), step):
        out[s:s + step] = np.abs(cp[s:s + step, None, :] - cq[None, :, :]).sum(-1)
    return out / scale


def gaussian_emd_mmd(ref: Sequence[np.ndarray], gen: Sequence[np.ndarray], *, sigma: float = 1.0,
                     distance_scaling: float = 1.0) -> float:
    """Biased squared MMD between two sets of histograms with the Gaussian-EMD kernel (GraphRNN / GDSS).

    Each histogram is normalised to a pmf and zero-padded to the longest; the kernel is
    ``exp(-W1(p, q)^2 / (2 sigma^2))`` with ``W1`` the earth mover's distance for the ground distance
    ``|i - j| / distance_scaling``, i.e. ``sum_k |P_k - Q_k| / distance_scaling`` with ``P, Q`` the CDFs.
    As the ``gaussian_emd`` kernel of the GDSS evaluation (Jo, Lee, Hwang, ICML 2022).
    """
    if not (sigma > 0 and distance_scaling > 0):
        raise ValueError(f"sigma and distance_scaling must be > 0, got sigma={sigma!r}, "
                         f"distance_scaling={distance_scaling!r}")
    for name, hs in (("ref", ref), ("gen", gen)):
        if len(hs) == 0:
            raise ValueError(f"{name} is empty; at least one histogram is needed")
        for i, h in enumerate(hs):
            if np.ndim(h) != 1 or not np.sum(h) > 0 or np.any(np.asarray(h) < 0):
                raise ValueError(f"{name}[{i}] must be a 1-D histogram with non-negative counts and a positive sum")
    length = max(len(h) for h in [*ref, *gen])
    P = _pad([np.asarray(h, np.float64) / np.sum(h) for h in ref], length)
    Q = _pad([np.asarray(h, np.float64) / np.sum(h) for h in gen], length)

    def k(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        return np.exp(-_pairwise_l1_cdf(X, Y, distance_scaling) ** 2 / (2 * sigma**2))

    return _biased_mmd(k(P, P), k(Q, Q), k(P, Q))


def gaussian_mmd(ref: np.ndarray, gen: np.ndarray, *, sigma: float = 1.0) -> float:
    """Biased squared MMD between two sets of vectors ``(n, D)``, ``(m, D)`` with the Gaussian kernel.

    ``k(x, y) = exp(-|x - y|^2 / (2 sigma^2))``, no normalisation: the ``gaussian`` kernel with
    ``is_hist=False`` that GDSS (Jo, Lee, Hwang, ICML 2022) uses for the orbit counts.
    """
    X, Y = np.asarray(ref, np.float64), np.asarray(gen, np.float64)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[1] != Y.shape[1] or len(X) == 0 or len(Y) == 0:
        raise ValueError(f"ref and gen must be non-empty (n, D) and (m, D) arrays, got {X.shape} and {Y.shape}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")

    def k(U: np.ndarray, V: np.ndarray) -> np.ndarray:
        sq = (U**2).sum(1)[:, None] + (V**2).sum(1)[None, :] - 2 * U @ V.T
        return np.exp(-np.maximum(sq, 0.0) / (2 * sigma**2))

    return _biased_mmd(k(X, X), k(Y, Y), k(X, Y))


def _nonempty(graphs: list[Any]) -> list[Any]:
    kept = [G for G in graphs if G.number_of_nodes() > 0]
    if not kept:
        raise ValueError("gen has only empty graphs")
    return kept


def degree_mmd(ref: Sequence[nx.Graph], gen: Sequence[nx.Graph]) -> float:
    """Degree MMD of GDSS's evaluation: degree pmfs, Gaussian-EMD kernel with ``sigma = 1``.

    Empty graphs of ``gen`` are left out, as in the official ``degree_stats`` (Jo, Lee, Hwang, ICML 2022).
    """
    nx = _nx("sdekit.graphs.degree_mmd()")
    ref_l, gen_l = _check_graphs(ref, "ref", nx), _nonempty(_check_graphs(gen, "gen", nx))
    return gaussian_emd_mmd(degree_histograms(ref_l), degree_histograms(gen_l), sigma=1.0)


def clustering_mmd(ref: Sequence[nx.Graph], gen: Sequence[nx.Graph], *, bins: int = 100) -> float:
    """Clustering MMD of GDSS's evaluation: 100-bin clustering pmfs, Gaussian-EMD, ``sigma = 0.1``.

    The EMD's ground distance is ``|i - j| / bins`` (``distance_scaling = bins`` in the official
    ``clustering_stats``; Jo, Lee, Hwang, ICML 2022). Empty graphs of ``gen`` are left out.
    """
    nx = _nx("sdekit.graphs.clustering_mmd()")
    ref_l, gen_l = _check_graphs(ref, "ref", nx), _nonempty(_check_graphs(gen, "gen", nx))
    return gaussian_emd_mmd(clustering_histograms(ref_l, bins), clustering_histograms(gen_l, bins), sigma=0.1,
                            distance_scaling=float(bins))


def orbit_mmd(ref: Sequence[nx.Graph], gen: Sequence[nx.Graph]) -> float:
    """Orbit MMD of GDSS's evaluation: per-node mean 4-node orbit counts, Gaussian kernel with ``sigma = 30``.

    As the official ``orbit_stats_all`` (Jo, Lee, Hwang, ICML 2022) with counts from
    :func:`sdekit.graphs.orbit_counts` in place of the ORCA program. Empty graphs of ``gen`` are left out.
    """
    nx = _nx("sdekit.graphs.orbit_mmd()")
    ref_l, gen_l = _check_graphs(ref, "ref", nx), _nonempty(_check_graphs(gen, "gen", nx))
    return gaussian_mmd(mean_orbit_counts(ref_l), mean_orbit_counts(gen_l), sigma=30.0)


def graph_mmds(ref: Sequence[nx.Graph], gen: Sequence[nx.Graph]) -> dict[str, float]:
    """``{"degree", "clustering", "orbit"}`` MMDs of GDSS's table, and their ``"average"``.

    See :func:`sdekit.graphs.degree_mmd`, :func:`sdekit.graphs.clustering_mmd` and
    :func:`sdekit.graphs.orbit_mmd` (Jo, Lee, Hwang, ICML 2022).
    """
    out = {"degree": degree_mmd(ref, gen), "clustering": clustering_mmd(ref, gen), "orbit": orbit_mmd(ref, gen)}
    out["average"] = (out["degree"] + out["clustering"] + out["orbit"]) / 3
    return out


def validity(gen: Sequence[nx.Graph], ref: Sequence[nx.Graph] | None = None) -> dict[str, float]:
    """Validity of generated graphs: the fraction that is connected, and their node-count distribution.

    Returns ``connected`` (fraction of non-empty connected graphs), ``mean_nodes``, ``mean_edges`` and,
    when ``ref`` is given, ``node_count_w1``: the Wasserstein-1 distance between the node-count
    distributions of ``gen`` and ``ref`` (in nodes), and ``ref_mean_nodes``. These complement the MMDs of
    GDSS (Jo, Lee, Hwang, ICML 2022), which are blind to disconnected samples and to node counts.
    """
    nx = _nx("sdekit.graphs.validity()")
    gen_l = _check_graphs(gen, "gen", nx)
    n = np.array([G.number_of_nodes() for G in gen_l], dtype=np.float64)
    out = {
        "connected": float(np.mean([G.number_of_nodes() > 0 and nx.is_connected(G) for G in gen_l])),
        "mean_nodes": float(n.mean()),
        "mean_edges": float(np.mean([G.number_of_edges() for G in gen_l])),
    }
    if ref is not None:
        ref_l = _check_graphs(ref, "ref", nx)
        m = np.array([G.number_of_nodes() for G in ref_l], dtype=np.float64)
        grid = np.union1d(n, m)
        cdf_n = np.searchsorted(np.sort(n), grid, side="right") / len(n)
        cdf_m = np.searchsorted(np.sort(m), grid, side="right") / len(m)
        out["node_count_w1"] = float(np.sum(np.abs(cdf_n - cdf_m)[:-1] * np.diff(grid)))
        out["ref_mean_nodes"] = float(m.mean())
    return out
