"""The package's structure: the import graph (read from the source with ast) has no cycles, points down the
layers and imports no private name across packages; ``import sdekit`` and ``import sdekit.core`` stay light;
the base install (no extras) runs the core and the diffusion layer, and a missing extra is named."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src" / "sdekit"

# Layers, bottom to top (DESIGN.md): a package imports only packages of a lower layer (and itself);
# apps may import anything. Root-level modules count as the package of their own name.
LAYERS = {
    "extras": -1,                                                   # optional-dependency helper
    "nn": 0, "data": 0, "metrics": 0, "train": 0,   # support
    "core": 1,
    "diffusion": 2,
    "torchsde": 3, "editing": 3, "domains": 3, "graphs": 3, "flows": 3, "timeseries": 3, "montecarlo": 3,
    "cli": 4, "__main__": 4, "sdekit": 4,                              # apps (and the lazy root)
}


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        out[".".join(parts)] = (path, is_pkg)
    return out


MODULES = _modules()


def _imports(module: str) -> list[tuple[str, str | None, int]]:
    """``(target module, imported name or None, line)`` for every sdekit import anywhere in ``module``
    (function-level imports included: they close cycles too)."""
    path, is_pkg = MODULES[module]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names if a.name.split(".")[0] == "sdekit"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "sdekit":
                target = node.module
            else:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.append((sub, None, node.lineno) if sub in MODULES else (target, alias.name, node.lineno))
    return out


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_the_import_graph_is_read():
    """The reader sees the edges it must (a guard against a vacuous graph)."""
    targets = {t for t, _, _ in _imports("sdekit.diffusion.adjoint")}
    assert "sdekit.core.adjoint" in targets and "sdekit.diffusion.samplers.base" in targets
    assert len(MODULES) > 50


def test_no_import_cycles():
    graph = {m: {t for t, _, _ in _imports(m) if t in MODULES and t != m} for m in MODULES}
    state, stack, cycles = {}, [], []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_imports_point_down_the_layers():
    bad = []
    for m in MODULES:
        src = _package(m)
        if LAYERS.get(src) is None:
            bad.append(f"{m}: package {src!r} has no layer in tests/test_structure.py LAYERS")
            continue
        for target, _, line in _imports(m):
            dst = _package(target)
            if dst == src or LAYERS[src] == 4:
                continue
            if LAYERS.get(dst, 99) >= LAYERS[src]:
                bad.append(f"{m}:{line} imports {target} (layer {LAYERS.get(dst)} >= {LAYERS[src]})")
    assert not bad, "\n".join(bad)


def test_no_private_name_across_packages():
    bad = []
    for m in MODULES:
        for target, name, line in _imports(m):
            if _package(target) == _package(m):
                continue
            private = [p for p in target.split(".")[1:] if p.startswith("_") and p != "__init__"]
            if private or (name is not None and name.startswith("_") and not name.startswith("__")):
                bad.append(f"{m}:{line} imports {target}{'.' + name if name else ''}")
    assert not bad, "private names imported across packages:\n" + "\n".join(bad)


def _run(*parts: str) -> str:
    code = "".join(textwrap.dedent(p) for p in parts)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_import_sdekit_and_core_stay_light():
    out = _run("""
        import sys
        import sdekit
        print(sorted(m for m in sys.modules if m.startswith('sdekit')))
        import sdekit.core
        heavy = [m for m in sys.modules if m.split('.')[0] == 'scipy'
                 or m.startswith(('sdekit.diffusion', 'sdekit.train', 'sdekit.cli', 'sdekit.nn', 'sdekit.data',
                                  'sdekit.metrics'))]
        print(heavy)
        assert sdekit.sdeint is sdekit.core.sdeint and sdekit.diffusion.VP is not None
        print('ok')
    """).splitlines()
    assert out[0] == "['sdekit']", out[0]           # nothing but the lazy root
    assert out[1] == "[]", out[1]                   # no diffusion, train, cli, nn, data, metrics, scipy
    assert out[2] == "ok"


# Blocks the packages of the extras, as a fresh `pip install sdekit` without extras would lack them.
_NO_EXTRAS = """
    import importlib.abc, sys
    BLOCKED = ('sklearn', 'matplotlib', 'torchsde', 'diffusers', 'ot', 'mkdocs')
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split('.')[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    sys.meta_path.insert(0, Block())
"""


def test_the_base_install_runs_without_extras():
    """An SDE solve, an adjoint gradient and a diffusion sample from a GaussianMixture oracle run without the
    extras' packages; sdekit.data.digits() and the figures name the extra to install."""
    out = _run(_NO_EXTRAS, """
        import torch, sdekit
        from sdekit import diffusion as dm

        class OU:
            noise_type, sde_type = 'diagonal', 'ito'
            def __init__(self): self.theta = torch.tensor(1.0, requires_grad=True)
            def f(self, t, y): return -self.theta * y
            def g(self, t, y): return 0.5 * torch.ones_like(y)

        sde = OU()
        y0 = torch.ones(4096, 2)
        ys = sdekit.sdeint(sde, y0, [0.0, 1.0], dt=0.01, bm=sdekit.BrownianPath(0.0, 1.0, (4096, 2), seed=0),
                           adjoint=sdekit.ContinuousAdjoint(params=(sde.theta,)))
        ys[-1].sum().backward()
        print(f'{ys[-1].mean().item():.5f} {sde.theta.grad.item() / y0.numel():.5f}')
        mix = dm.GaussianMixture([0.5, 0.5], [[-2.0, 0.0], [2.0, 0.0]], [[0.1, 0.1], [0.1, 0.1]])
        schedule = dm.VP()
        x = dm.sample(mix.as_denoiser(schedule), schedule, schedule.prior_sample((2000, 2)), steps=20)
        print(f'{x[:, 0].abs().mean().item():.2f}')
        for call in (lambda: sdekit.data.digits(), lambda: __import__('sdekit.cli._plots').cli._plots._figure(1, 1)):
            try:
                call()
            except ImportError as err:
                print(err)
    """).splitlines()
    mean, grad = map(float, out[0].split())
    # y(1) = e^{-1} + 0.5 int e^{-(1-s)} dW: mean e^{-1}, sd 0.33, so the standard error over 8192 values is
    # 0.0036; Euler's bias at dt = 0.01 is 0.0018. The gradient per value, d/dtheta y(1) at theta = 1, is
    # -e^{-1} - 0.5 int (1-s) e^{-(1-s)} dW: sd 0.142, standard error 0.0016.
    assert abs(mean - torch_exp(-1.0)) < 4 * 0.0036 + 0.002, mean
    assert abs(grad + torch_exp(-1.0)) < 4 * 0.0016 + 0.004, grad
    assert abs(float(out[1]) - 2.0) < 0.1            # samples at the two modes +-2
    assert "pip install 'sdekit[data]'" in out[2] and "sdekit.data.digits()" in out[2]
    assert "pip install 'sdekit[plots]'" in out[3]


def torch_exp(v: float) -> float:
    import math

    return math.exp(v)


def test_require_names_the_extra():
    from sdekit.extras import require

    with pytest.raises(ImportError, match=r"pip install 'sdekit\[bench\]'"):
        require("sdekit_no_such_module", "bench", "a benchmark")
    with pytest.raises(ValueError, match="extra must be one of"):
        require("math", "gpu", "x")
    assert require("math", "data", "x").sqrt(4.0) == 2.0


def test_layers_table_is_complete():
    missing = defaultdict(list)
    for m in MODULES:
        if _package(m) not in LAYERS:
            missing[_package(m)].append(m)
    assert not missing, dict(missing)
