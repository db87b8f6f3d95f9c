"""Graph generation with a system of SDEs.

GDSS (Jo, Lee, Hwang, "Score-based Generative Modeling of Graphs via the System of Stochastic
Differential Equations", ICML 2022): node features X (B, N, F) and a symmetric adjacency A (B, N, N) with
a node-flag mask diffuse jointly as a system of two SDEs, each with its own schedule and score network.
networkx (the ``graphs`` extra) is needed for the data sets and graph statistics only.
"""

__all__: list[str] = []
