"""Graph generation with a system of SDEs.

GDSS (Jo, Lee, Hwang, "Score-based Generative Modeling of Graphs via the System of Stochastic
Differential Equations", ICML 2022): node features X (B, N, F) and a symmetric adjacency A (B, N, N) with
a node-flag mask diffuse jointly as a system of two SDEs, each with its own schedule and score network.
networkx (the ``graphs`` extra) is needed for the data sets and graph statistics only.
"""

from .data import (
    GRAPH_DATASETS,
    GraphDatasetInfo,
    NodeCountSampler,
    citation_like_graph,
    community_small,
    ego_small,
    graph_dataset_info,
    graphs_to_tensors,
    grid_graphs,
    load_graph_dataset,
    node_count_sampler,
    tensors_to_graphs,
)
from .losses import GraphScoreFn, GraphScoreMatching, score_function
from .metrics import (
    ORBIT_NAMES,
    clustering_coefficients,
    clustering_histograms,
    clustering_mmd,
    degree_histograms,
    degree_mmd,
    gaussian_emd_mmd,
    gaussian_mmd,
    graph_mmds,
    mean_orbit_counts,
    orbit_counts,
    orbit_mmd,
    validity,
)
from .networks import GDSS_NETWORK_PRESETS, DenseGCN, GDSSNetwork, ScoreNetworkA, ScoreNetworkX
from .samplers import GraphPC, GraphS4, GraphSample, GraphSampler, sample_graphs, sample_node_flags
from .sde import GDSS_SDE_PRESETS, GraphSDE
from .state import check_graph_state, mask_adjs, mask_x, quantize_adjacency, symmetric_noise

__all__: list[str] = [
    # state (G1)
    "check_graph_state", "mask_x", "mask_adjs", "symmetric_noise", "quantize_adjacency",
    # forward system, networks, loss, samplers (G1)
    "GraphSDE", "GDSS_SDE_PRESETS", "DenseGCN", "ScoreNetworkX", "ScoreNetworkA", "GDSSNetwork",
    "GDSS_NETWORK_PRESETS", "GraphScoreMatching", "GraphScoreFn", "score_function", "GraphSampler", "GraphPC",
    "GraphS4", "GraphSample", "sample_graphs", "sample_node_flags",
    # data sets and tensors (G2)
    "community_small", "ego_small", "citation_like_graph", "grid_graphs", "load_graph_dataset", "GRAPH_DATASETS",
    "GraphDatasetInfo", "graph_dataset_info", "graphs_to_tensors", "tensors_to_graphs", "node_count_sampler",
    "NodeCountSampler",
    # metrics (G2)
    "orbit_counts", "ORBIT_NAMES", "degree_histograms", "clustering_coefficients",
    "clustering_histograms", "mean_orbit_counts",
    "gaussian_emd_mmd", "gaussian_mmd", "degree_mmd", "clustering_mmd", "orbit_mmd", "graph_mmds", "validity",
]
