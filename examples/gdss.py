"""GDSS (Jo, Lee, Hwang, ICML 2022) on community-small: train the pair of score networks on (X, A, flags)
with the shared Trainer, generate graphs with the S4 solver and with Euler-Maruyama + Langevin at equal NFE,
and compare degree / clustering / orbit MMDs against the test graphs.

    python examples/gdss.py        # about a minute on 2 cores (benchmarks/methods/gdss.py runs the table)
"""

from __future__ import annotations

import torch

from sdekit.graphs import (
    GDSSNetwork,
    GraphPC,
    GraphS4,
    GraphScoreMatching,
    GraphSDE,
    graph_dataset_info,
    graph_mmds,
    graphs_to_tensors,
    load_graph_dataset,
    sample_graphs,
    sample_node_flags,
    score_function,
    tensors_to_graphs,
    validity,
)
from sdekit.train import TrainConfig, Trainer

torch.manual_seed(0)
torch.set_num_threads(1)
info = graph_dataset_info("community_small")             # 100 graphs of 12-20 nodes, two communities
train, test = load_graph_dataset("community_small")       # the paper's split: the first 20% are the test set
X, A, flags = graphs_to_tensors(train, info.max_nodes, info.max_feat_num)   # one-hot degree features

sde = GraphSDE.gdss("community_small")                    # VP beta 0.1 -> 1 for X and for A
net = GDSSNetwork(X.shape[-1], depth_x=2, layers_adj=2, c_hid=4)   # smaller than the paper's, for speed
config = TrainConfig(steps=150, batch_size=80, lr=5e-3, weight_decay=1e-4, lr_schedule="cosine", warmup_steps=10,
                     ema_decay=0.999, progress=False)
trainer = Trainer(net, GraphScoreMatching(sde), (X, A, flags), config)   # tuple data: rows batched together
losses = trainer.fit()
print(f"loss {sum(losses[:10]) / 10:.1f} -> {sum(losses[-10:]) / 10:.1f}")

score = score_function(trainer.ema_model.eval(), sde)     # s = -eps / sigma(t) for each component
print("training graphs vs test:", {k: round(v, 3) for k, v in graph_mmds(test, train).items()})
for name, sampler, steps in (("S4", GraphS4(), 100), ("EM + Langevin", GraphPC(), 50)):
    g = torch.Generator().manual_seed(1)
    node_flags = sample_node_flags(flags.sum(1).long(), len(test), info.max_nodes, g)   # sizes as in training
    with torch.no_grad():
        out = sample_graphs(score, sde, node_flags, X.shape[-1], sampler=sampler, steps=steps, generator=g)
    graphs = tensors_to_graphs(out.adj, out.flags)        # A quantised at 0.5, isolated nodes dropped
    mmd = graph_mmds(test, graphs)
    print(f"{name} (NFE {out.nfe}):", {k: round(v, 3) for k, v in mmd.items()},
          f"connected {validity(graphs)['connected']:.2f}")
