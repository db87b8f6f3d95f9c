"""``sdekit train --data community_small|ego_small|grid`` and ``sdekit sample`` of a graph checkpoint (GDSS).

Jo, Lee, Hwang, "Score-based Generative Modeling of Graphs via the System of Stochastic Differential
Equations", ICML 2022. The run is a :class:`sdekit.graphs.GDSSNetwork` trained with
:class:`sdekit.graphs.GraphScoreMatching` by the same :class:`sdekit.train.Trainer` as image models, so the
checkpoint has the same format (safetensors + JSON, ``config.json`` beside it); its ``run`` metadata has
``kind: "graph"`` and what sampling needs (the data set, the padding size, the training node counts).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..train import CheckpointError, TrainConfig, Trainer, load_weights
from ._common import CLIError, fit_and_report, say, start_run

__all__ = ["GRAPH_DATA", "GRAPH_SOLVERS", "GRAPH_TRAIN_DEFAULTS", "is_graph_run", "train_graphs", "sample_graph_run"]

GRAPH_DATA = ("community_small", "ego_small", "grid")
GRAPH_SOLVERS = ("s4", "pc")
# full-batch steps on the 80-160 training graphs (the paper: 5000 epochs, Adam 1e-2)
GRAPH_TRAIN_DEFAULTS: dict[str, Any] = dict(steps=500, batch_size=80, lr=5e-3, weight_decay=1e-4, warmup_steps=20,
                                            lr_schedule="cosine")
_NOT_FOR_GRAPHS = ("n_train", "schedule", "prediction", "model", "dtype")


def is_graph_run(run: Any) -> bool:
    """Whether a checkpoint's ``run`` metadata describes a graph model."""
    return isinstance(run, dict) and run.get("kind") == "graph"


def _network_config(args, data: str) -> dict[str, int]:
    from ..graphs import GDSS_NETWORK_PRESETS

    net = dict(GDSS_NETWORK_PRESETS[data])
    if args.width is not None:
        if args.width % net["heads"]:
            raise CLIError(f"--width {args.width} must be divisible by the {net['heads']} attention heads")
        net.update(nhid=args.width, adim=args.width)
    if args.depth is not None:
        net.update(layers_adj=args.depth)
    return net


def train_graphs(args, stored_run: dict | None, config: TrainConfig, ctx, out: Path, resume: bool) -> int:
    """Train a GDSS model on a graph data set (``args`` of ``sdekit train``)."""
    from ..graphs import (
        GDSSNetwork,
        GraphScoreMatching,
        GraphSDE,
        graph_dataset_info,
        graphs_to_tensors,
        load_graph_dataset,
    )

    if stored_run is None:
        given = [k for k in _NOT_FOR_GRAPHS if getattr(args, k, None) is not None]
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise CLIError(f"{flags} do not apply to graph data ({args.data}): GDSS fixes its VP schedules, "
                           "noise prediction and networks (--width, --depth size them)")
        data = args.data
        seed = args.data_seed if args.data_seed is not None else 0
        network = _network_config(args, data)
    else:
        data, seed, network = stored_run["data"], stored_run["data_seed"], stored_run["network"]
    info = graph_dataset_info(data)
    train, _ = load_graph_dataset(data, seed=seed)
    X, A, flags = graphs_to_tensors(train, info.max_nodes, info.max_feat_num)
    torch.manual_seed(config.seed)
    model = GDSSNetwork(X.shape[-1], **network)
    sde = GraphSDE.gdss(data)
    run = {"kind": "graph", "data": data, "data_seed": seed, "network": network, "max_nodes": info.max_nodes,
           "node_counts": flags.sum(1).long().tolist()}
    metadata = {"sdekit_version": __version__, "run": run, "model": model.config}
    trainer = Trainer(model, GraphScoreMatching(sde), (X, A, flags), config, out_dir=out, metadata=metadata,
                      context=ctx)
    doc = {"sdekit_version": __version__, "run": {k: v for k, v in run.items() if k != "node_counts"},
           "model": model.config, "train": config.to_dict(), "world_size": ctx.world_size}
    start_run(trainer, out, resume, ctx.is_main, doc)
    if ctx.is_main:
        n_params = sum(p.numel() for p in model.parameters())
        say(f"sdekit train: GDSS on {data} ({len(train)} graphs, N = {info.max_nodes}), {n_params:,} parameters, "
            f"on {ctx.device}; steps {trainer.step} -> {config.steps}")
    return fit_and_report(trainer, out, ctx.is_main)


def _save_graphs(path: Path, adj: torch.Tensor, flags: torch.Tensor, x: torch.Tensor, title: str) -> None:
    suffix = path.suffix.lower()
    if not path.parent.exists():
        raise CLIError(f"--out directory {str(path.parent)!r} does not exist")
    if suffix == ".pt":
        torch.save({"adj": adj, "flags": flags, "x": x}, path)
    elif suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({"adj": adj.contiguous(), "flags": flags.contiguous(), "x": x.contiguous()}, str(path))
    elif suffix == ".npy":
        import numpy as np

        np.save(path, adj.numpy())
    else:  # .png
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import networkx as nx

        from ..graphs import tensors_to_graphs

        graphs = tensors_to_graphs(adj[:16], flags[:16])
        cols = min(4, len(graphs))
        rows = (len(graphs) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.4 * rows), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        for ax, G in zip(axes.flat, graphs):
            nx.draw(G, nx.spring_layout(G, seed=0), ax=ax, node_size=15, width=0.6)
        fig.suptitle(title, fontsize=9)
        fig.savefig(path, dpi=90)
        plt.close(fig)


def sample_graph_run(args, ckpt, out: Path, ctx) -> int:
    """``sdekit sample`` of a graph checkpoint: ``--n`` graphs with ``--solver s4`` (default) or ``pc``,
    ``--steps`` (default 1000, the paper's), node counts drawn from the training graphs."""
    from ..graphs import (
        GDSSNetwork,
        GraphSDE,
        graph_mmds,
        load_graph_dataset,
        sample_graphs,
        sample_node_flags,
        score_function,
        tensors_to_graphs,
        validity,
    )

    run = ckpt.metadata["run"]
    solver = args.solver or "s4"
    if solver not in GRAPH_SOLVERS:
        raise CLIError(f"--solver {solver} does not apply to a graph model; use one of {', '.join(GRAPH_SOLVERS)}")
    if args.class_label is not None:
        raise CLIError("--class-label does not apply to a graph model")
    try:
        model = GDSSNetwork(**ckpt.metadata["model"])
        data, max_nodes, counts = run["data"], int(run["max_nodes"]), run["node_counts"]
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {args.checkpoint} holds an invalid graph run description: {e}") from None
    load_weights(model, Path(args.checkpoint), which=args.weights)
    model = model.to(ctx.device).eval()
    sde = GraphSDE.gdss(data)
    score = score_function(model, sde)
    steps = args.steps or 1000
    g = torch.Generator(device=ctx.device).manual_seed(args.seed)
    batch = min(args.batch_size, 256)
    parts, nfe, start = [], 0, time.perf_counter()
    with torch.no_grad():
        for i in range(0, args.n, batch):
            fl = sample_node_flags(counts, min(batch, args.n - i), max_nodes, g, device=ctx.device)
            res = sample_graphs(score, sde, fl, model.config["features"], sampler=solver, steps=steps, generator=g,
                                progress=args.progress)
            parts.append((res.adj.cpu(), res.flags.cpu(), res.x.cpu()))
            nfe += res.nfe
    seconds = time.perf_counter() - start
    adj, flags, x = (torch.cat(p) for p in zip(*parts))
    _save_graphs(out, adj.to(torch.uint8) if out.suffix.lower() != ".png" else adj, flags, x,
                 f"GDSS {data}: {solver}, {steps} steps")
    gen = tensors_to_graphs(adj, flags)
    _, test = load_graph_dataset(data, seed=int(run.get("data_seed", 0)))
    mmd = graph_mmds(test, gen)
    say(f"wrote {adj.shape[0]} graphs ({data}, N = {max_nodes}) to {out} (solver {solver}, {nfe} score calls, "
        f"{seconds:.1f} s); against the {len(test)} test graphs: degree MMD {mmd['degree']:.4f}, clustering "
        f"{mmd['clustering']:.4f}, orbit {mmd['orbit']:.4f}; connected {validity(gen)['connected']:.2f}")
    return 0
