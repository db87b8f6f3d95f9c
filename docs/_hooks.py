"""mkdocs hooks for the sdekit site (mkdocs.yml: ``hooks: [docs/_hooks.py]``).

* ``<!-- include: benchmarks/results/x.md -->`` on a line of its own is replaced by that file, its
  headings moved one level down, so the benchmark results are shown as the scripts wrote them
  (never copied by hand). A missing file is a warning, so ``--strict`` fails.
* ``benchmarks/results/*.png`` are served under ``benchmarks/`` (``![...](../benchmarks/x.png)``).
* Optional pages (``OPTIONAL_PAGES``) are dropped from the nav when their file does not exist.
* Every name in the ``__all__`` of a documented package must be rendered by a ``::: package.name``
  line on some page, and every such line must name a public name (``sdekit.diffusion.sample``, not
  ``sdekit.diffusion.samplers._driver.sample``): internal moves cannot break the site, and a public
  name cannot go undocumented. A mismatch is a warning, so ``--strict`` fails.
"""

from __future__ import annotations

import ast
import logging
import re
from pathlib import Path

from mkdocs.structure.files import File

logger = logging.getLogger("mkdocs.plugins.sdekit_hooks")

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
OPTIONAL_PAGES = ("migration-torchsde.md",)
DOCUMENTED = {  # package -> its __init__.py (read with ast, never imported)
    "sdekit": "src/sdekit/__init__.py",
    "sdekit.diffusion": "src/sdekit/diffusion/__init__.py",
    "sdekit.nn": "src/sdekit/nn/__init__.py",
    "sdekit.data": "src/sdekit/data/__init__.py",
    "sdekit.metrics": "src/sdekit/metrics/__init__.py",
    "sdekit.train": "src/sdekit/train/__init__.py",
    "sdekit.editing": "src/sdekit/editing/__init__.py",
    "sdekit.domains": "src/sdekit/domains/__init__.py",
    "sdekit.montecarlo": "src/sdekit/montecarlo/__init__.py",
    "sdekit.timeseries": "src/sdekit/timeseries/__init__.py",
    "sdekit.graphs": "src/sdekit/graphs/__init__.py",
    "sdekit.flows": "src/sdekit/flows/__init__.py",
}

_INCLUDE = re.compile(r"^<!--\s*include:\s*(\S+)\s*-->\s*$", re.MULTILINE)
_IDENTIFIER = re.compile(r"^:::\s+(\S+)", re.MULTILINE)
_rendered: dict[str, str] = {}  # identifier -> page


def on_config(config, **kwargs):
    docs = Path(config["docs_dir"])
    config["nav"] = _prune(config.get("nav"), docs)
    _rendered.clear()
    return config


def _prune(nav, docs: Path):
    if isinstance(nav, list):
        return [item for item in (_prune(entry, docs) for entry in nav) if item is not None]
    if isinstance(nav, dict):
        pruned = {key: _prune(value, docs) for key, value in nav.items()}
        return {k: v for k, v in pruned.items() if v not in (None, [])} or None
    if isinstance(nav, str) and nav in OPTIONAL_PAGES and not (docs / nav).exists():
        return None
    return nav


def on_files(files, config, **kwargs):
    for png in sorted(RESULTS.glob("*.png")):
        files.append(File.generated(config, f"benchmarks/{png.name}", abs_src_path=str(png)))
    return files


def on_page_markdown(markdown, page, config, files, **kwargs):
    def include(match: re.Match) -> str:
        path = ROOT / match.group(1)
        if not path.is_file():
            logger.warning("%s: included file %s does not exist", page.file.src_path, match.group(1))
            return ""
        text = path.read_text(encoding="utf-8")
        return re.sub(r"^(#+) ", r"#\1 ", text, flags=re.MULTILINE)

    markdown = _INCLUDE.sub(include, markdown)
    for identifier in _IDENTIFIER.findall(markdown):
        _rendered[identifier] = page.file.src_path
    return markdown


def _exports(init: Path) -> list[str]:
    """The names in a module's ``__all__``, read statically: literals, ``*NAME`` of a module-level
    literal, ``+`` and ``+=`` (as ``sdekit/__init__.py`` writes ``[*_CORE_NAMES, "__version__"]``)."""
    env: dict[str, object] = {}

    def value(node: ast.AST):
        if isinstance(node, (ast.List, ast.Tuple)):
            items: list = []
            for elt in node.elts:
                items.extend(value(elt.value) if isinstance(elt, ast.Starred) else [value(elt)])
            return items
        if isinstance(node, ast.Name):
            return list(env[node.id])  # type: ignore[call-overload]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return value(node.left) + value(node.right)
        return ast.literal_eval(node)

    for node in ast.parse(init.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                env[node.targets[0].id] = value(node.value)
            except (ValueError, KeyError, TypeError):
                continue
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            env[node.target.id] = value(node.value)  # __all__: list[str] = [...]
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name) and node.target.id in env:
            env[node.target.id] = list(env[node.target.id]) + value(node.value)  # type: ignore[call-overload]
    return [name for name in env.get("__all__", []) if not name.startswith("__")]  # type: ignore[union-attr]


def on_post_build(config, **kwargs):
    public = {f"{pkg}.{name}" for pkg, init in DOCUMENTED.items() for name in _exports(ROOT / init)}
    for identifier in sorted(public - set(_rendered)):
        logger.warning("public name %s is in __all__ but no page of the API reference renders it "
                       "(add '::: %s' to a page under docs/api/)", identifier, identifier)
    for identifier, page in sorted(_rendered.items()):
        if identifier not in public and identifier not in DOCUMENTED:
            logger.warning("%s renders '::: %s', which is not a public name (use the path users import "
                           "it from, a name in the __all__ of %s)", page, identifier, ", ".join(DOCUMENTED))
