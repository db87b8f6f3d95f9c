"""The generated graph data sets (sizes, seeds, split), graph <-> tensor conversion and its input checks."""

import numpy as np
import pytest
import torch

from sdekit.graphs import (
    GRAPH_DATASETS,
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

nx = pytest.importorskip("networkx")


def edge_set(G) -> set:
    return {tuple(sorted(e)) for e in G.edges}


def test_community_small_follows_the_official_generator():
    graphs = community_small(seed=0)
    assert len(graphs) == 100  # the paper's size
    sizes = [G.number_of_nodes() for G in graphs]
    assert set(sizes) == {12, 14, 16, 18, 20}  # 2 * (c // 2) for c uniform on 12..20
    for G in graphs:
        n = G.number_of_nodes()
        s = n // 2
        assert sorted(G.nodes) == list(range(n))
        # two communities: G(s, 0.7) with networkx seeds 0 and 1, and at least one bridge between them
        for k in range(2):
            community = nx.convert_node_labels_to_integers(G.subgraph(range(k * s, (k + 1) * s)))
            assert edge_set(community) == edge_set(nx.gnp_random_graph(s, 0.7, seed=k))
        bridges = [(u, v) for u, v in G.edges if (u < s) != (v < s)]
        assert len(bridges) >= 1
        assert nx.is_connected(G)
    # seeded: the same seed gives the same graphs, another seed others
    assert [edge_set(G) for G in community_small(seed=0)] == [edge_set(G) for G in graphs]
    assert [edge_set(G) for G in community_small(seed=1)] != [edge_set(G) for G in graphs]


def test_community_small_bridge_count_matches_its_distribution():
    # inter-community edges: X ~ Binomial(s^2, 0.1 / s), plus one forced bridge when X = 0
    graphs = community_small(800, seed=3)
    bridges, expected, variance = [], [], []
    for G in graphs:
        s = G.number_of_nodes() // 2
        x = sum((u < s) != (v < s) for u, v in G.edges)
        m, p = s * s, 0.1 / s
        p0 = (1 - p) ** m
        mean = m * p + p0
        second = m * p * (1 - p) + (m * p) ** 2 + p0  # E[(X + 1{X=0})^2] = E[X^2] + P(X=0)
        bridges.append(x)
        expected.append(mean)
        variance.append(second - mean**2)
    se = np.sqrt(np.sum(variance)) / len(graphs)
    assert abs(np.mean(bridges) - np.mean(expected)) < 4 * se


def test_grid_graphs_follow_the_official_generator():
    graphs = grid_graphs(seed=0)
    assert len(graphs) == 100
    sides = set()
    for G in graphs:
        n, e = G.number_of_nodes(), G.number_of_edges()
        assert 100 <= n <= 361
        degrees = np.bincount([d for _, d in G.degree()], minlength=5)
        # an m x n grid: 4 corners of degree 2, 2(m + n) - 8 border nodes of degree 3, e = 2mn - m - n
        assert degrees[2] == 4
        m_plus_n = (degrees[3] + 8) // 2
        matches = [(a, m_plus_n - a) for a in range(10, 20) if a * (m_plus_n - a) == n and 10 <= m_plus_n - a <= 19]
        assert matches and e == 2 * n - m_plus_n
        sides.update(matches[0])
        assert sorted(G.nodes) == list(range(n))
    assert len(sides) >= 8  # the sides spread over 10..19
    assert [edge_set(G) for G in grid_graphs(5, seed=0)] == [edge_set(G) for G in graphs[:5]]
    small = grid_graphs(3, min_side=2, max_side=3, seed=1)
    assert all(4 <= G.number_of_nodes() <= 9 for G in small)


def test_ego_small_is_ego_like():
    graphs = ego_small(seed=0)
    assert len(graphs) == 200
    for G in graphs:
        n = G.number_of_nodes()
        assert 4 <= n <= 18
        assert max(d for _, d in G.degree()) == n - 1  # radius-1 ego network: the centre sees every node
        assert nx.number_of_selfloops(G) == 0
    sizes = np.array([G.number_of_nodes() for G in graphs])
    # heavy-tailed like Citeseer's ego nets (there: 34 % have 4 nodes, mean 6.4): mostly small, some large
    assert 0.2 < np.mean(sizes == 4) < 0.5 and 5 < sizes.mean() < 8 and sizes.max() >= 14
    assert [edge_set(G) for G in ego_small(5, seed=0)] == [edge_set(G) for G in graphs[:5]]
    G = citation_like_graph(500, seed=2)
    assert G.number_of_nodes() == 500 and not G.is_directed() and nx.number_of_selfloops(G) == 0
    with pytest.raises(ValueError, match="only"):
        ego_small(10_000, seed=0)
    with pytest.raises(ValueError, match="sum"):
        citation_like_graph(alpha=0.5, beta=0.5, gamma=0.5)


@pytest.mark.parametrize("name", sorted(GRAPH_DATASETS))
def test_load_graph_dataset_split_is_the_official_one(name):
    info = graph_dataset_info(name)
    train, test = load_graph_dataset(name, seed=1)
    n_test = int(0.2 * info.num_graphs)
    assert (len(train), len(test)) == (info.num_graphs - n_test, n_test)
    generate = {"community_small": community_small, "ego_small": ego_small, "grid": grid_graphs}[name]
    everything = generate(info.num_graphs, seed=1)
    # the first 20 % of the generated list, unshuffled, is the test set
    assert [edge_set(G) for G in test] == [edge_set(G) for G in everything[:n_test]]
    assert [edge_set(G) for G in train] == [edge_set(G) for G in everything[n_test:]]
    # the paper's padding size and degree classes fit seeds 0-2
    for seed in range(3):
        tr, te = load_graph_dataset(name, seed=seed) if seed != 1 else (train, test)
        X, A, flags = graphs_to_tensors(tr + te, info.max_nodes, info.max_feat_num)
        assert A.shape == (info.num_graphs, info.max_nodes, info.max_nodes)
        assert X.shape == (info.num_graphs, info.max_nodes, info.max_feat_num)
    assert info.same_as_paper == (name != "ego_small")
    with pytest.raises(ValueError, match="name must be one of"):
        load_graph_dataset("citeseer")


def test_graphs_to_tensors_and_back():
    star = nx.relabel_nodes(nx.star_graph(3), {0: "c", 1: "a", 2: "b", 3: "d"})
    graphs = [nx.path_graph(3), nx.complete_graph(4), star]
    X, A, flags = graphs_to_tensors(graphs, max_nodes=6, max_feat_num=4)
    assert X.shape == (3, 6, 4) and A.shape == (3, 6, 6) and flags.shape == (3, 6)
    assert X.dtype == A.dtype == flags.dtype == torch.float32
    assert flags.tolist() == [[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 0, 0]]
    torch.testing.assert_close(A, A.transpose(1, 2))
    assert torch.all(torch.diagonal(A, dim1=1, dim2=2) == 0)
    # one-hot degree, zero on padding nodes
    assert X.argmax(-1)[0, :3].tolist() == [1, 2, 1] and X[0, 3:].abs().sum() == 0
    assert X.argmax(-1)[1, :4].tolist() == [3, 3, 3, 3]
    assert X.argmax(-1)[2, :4].tolist() == [3, 1, 1, 1]  # the graph's own node order ("c" first)
    torch.testing.assert_close(X.sum(-1), flags)
    back = tensors_to_graphs(A, flags)
    assert [G.number_of_nodes() for G in back] == [3, 4, 4]
    for G, H in zip(graphs, back, strict=True):
        assert nx.is_isomorphic(G, H)
    # arrays and tensors are accepted too
    arrays = [nx.to_numpy_array(g) for g in graphs[:2]] + [A[2, :4, :4]]
    X2, A2, _ = graphs_to_tensors(arrays, 6, 4, dtype=torch.float64)
    torch.testing.assert_close(A2, A.double())
    torch.testing.assert_close(X2, X.double())


def test_tensors_to_graphs_quantises_and_drops_isolated_nodes_as_gdss():
    A = torch.zeros(2, 5, 5)
    A[0, 0, 1] = A[0, 1, 0] = 0.7
    A[0, 1, 2] = A[0, 2, 1] = 0.49  # below the threshold: no edge
    flags = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]], dtype=torch.float32)
    g0, g1 = tensors_to_graphs(A, flags, threshold=0.5)
    assert edge_set(g0) == {(0, 1)} and sorted(g0.nodes) == [0, 1]  # isolated nodes 2, 3 dropped
    assert g1.number_of_nodes() == 1 and g1.number_of_edges() == 0  # an empty result keeps one node
    kept = tensors_to_graphs(A, flags, threshold=0.5, drop_isolated=False)
    assert sorted(kept[0].nodes) == [0, 1, 2, 3] and sorted(kept[1].nodes) == [0, 1]


def test_bad_input_names_the_graph_and_the_problem():
    ok = nx.path_graph(3)
    asym = np.zeros((3, 3))
    asym[0, 1] = 1
    weighted = np.array([[0, 2.0], [2.0, 0]])
    loop = np.eye(2)
    with pytest.raises(ValueError, match=r"graphs\[1\] has an asymmetric adjacency"):
        graphs_to_tensors([ok, asym], 4, 4)
    with pytest.raises(ValueError, match=r"graphs\[1\] is a weighted adjacency"):
        graphs_to_tensors([ok, weighted], 4, 4)
    with pytest.raises(ValueError, match=r"graphs\[0\] has 2 self-loop"):
        graphs_to_tensors([loop], 4, 4)
    G = nx.path_graph(3)
    G.add_edge(2, 2)
    with pytest.raises(ValueError, match=r"graphs\[2\] has 1 self-loop"):
        graphs_to_tensors([ok, ok, G], 4, 4)
    W = nx.Graph()
    W.add_edge(0, 1, weight=0.3)
    with pytest.raises(ValueError, match=r"graphs\[0\] has weighted edges"):
        graphs_to_tensors([W], 4, 4)
    with pytest.raises(ValueError, match=r"graphs\[0\] is directed"):
        graphs_to_tensors([nx.DiGraph([(0, 1)])], 4, 4)
    with pytest.raises(ValueError, match=r"graphs\[1\] has 5 nodes, more than max_nodes=4"):
        graphs_to_tensors([ok, nx.path_graph(5)], 4, 4)
    with pytest.raises(ValueError, match=r"graphs\[0\] has a node of degree 3.*max_feat_num=3"):
        graphs_to_tensors([nx.star_graph(3)], 4, 3)
    with pytest.raises(TypeError, match="list of graphs"):
        graphs_to_tensors(ok, 4, 4)
    with pytest.raises(ValueError, match="max_nodes"):
        graphs_to_tensors([ok], 0, 4)
    # tensors_to_graphs: binary, symmetric, loop-free, matching the flags
    A = torch.zeros(2, 3, 3)
    A[1, 0, 1] = A[1, 1, 0] = 0.6
    with pytest.raises(ValueError, match=r"A\[1\] is not binary.*threshold=0.5"):
        tensors_to_graphs(A)
    A[1, 1, 0] = 0.3
    with pytest.raises(ValueError, match=r"A\[1\] is asymmetric"):
        tensors_to_graphs(A, threshold=0.5)
    B = torch.zeros(1, 3, 3)
    B[0, 2, 2] = 1
    with pytest.raises(ValueError, match=r"A\[0\] has 1 self-loop"):
        tensors_to_graphs(B)
    C = torch.zeros(1, 3, 3)
    C[0, 0, 2] = C[0, 2, 0] = 1
    with pytest.raises(ValueError, match=r"A\[0\] has edges on nodes whose flag is 0"):
        tensors_to_graphs(C, torch.tensor([[1.0, 1.0, 0.0]]))
    with pytest.raises(ValueError, match=r"flags must be a tensor of shape \(1, 3\)"):
        tensors_to_graphs(C, torch.ones(1, 4))
    with pytest.raises(ValueError, match=r"A must be a tensor \(B, N, N\)"):
        tensors_to_graphs(torch.zeros(3, 3))


def test_node_count_sampler_draws_from_the_training_distribution():
    train = [nx.path_graph(n) for n in (3, 3, 3, 5, 8)]
    sampler = node_count_sampler(train)
    assert isinstance(sampler, NodeCountSampler)
    g = torch.Generator().manual_seed(0)
    n = 20_000
    counts = sampler.sample(n, generator=g)
    assert counts.dtype == torch.int64 and set(counts.tolist()) == {3, 5, 8}
    for value, p in ((3, 0.6), (5, 0.2), (8, 0.2)):
        assert abs((counts == value).double().mean().item() - p) < 4 * np.sqrt(p * (1 - p) / n)
    flags = sampler.flags(6, 10, generator=torch.Generator().manual_seed(1))
    assert flags.shape == (6, 10)
    assert all(row.tolist() == [1.0] * int(row.sum()) + [0.0] * (10 - int(row.sum())) for row in flags)
    assert set(flags.sum(1).long().tolist()) <= {3, 5, 8}
    # reproducible with a seeded generator
    torch.testing.assert_close(sampler.sample(50, generator=torch.Generator().manual_seed(3)),
                               sampler.sample(50, generator=torch.Generator().manual_seed(3)))
    with pytest.raises(ValueError, match="max_nodes=5 is smaller than the largest node count 8"):
        sampler.flags(2, 5)
    with pytest.raises(ValueError, match="train is empty"):
        node_count_sampler([])
    with pytest.raises(ValueError, match=r"train\[0\]"):
        node_count_sampler([nx.Graph()])
