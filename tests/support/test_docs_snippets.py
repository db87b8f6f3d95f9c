"""The Python code blocks of the documentation pages run, so the pages cannot rot.

Each page's ```python blocks run in order in one namespace (a later block may use an earlier one's
names), in a temporary directory. A block preceded by the line ``<!-- snippet: skip -->`` is not run
(code that needs a GPU, a download or minutes); a block that imports an optional package that is not
importable (k-diffusion is not a test dependency) is skipped, and so are the blocks after it on that
page.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import textwrap
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = ["getting-started.md", "guides", "coming-from"]
SKIP = "<!-- snippet: skip -->"
_BLOCK = re.compile(r"^([ \t]*)```python[^\n]*\n(.*?)^\1```[ \t]*$", re.MULTILINE | re.DOTALL)
_IMPORT = re.compile(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)", re.MULTILINE)


def _pages() -> list[Path]:
    found: list[Path] = []
    for entry in PAGES:
        path = DOCS / entry
        found.extend(sorted(path.glob("*.md")) if path.is_dir() else [path])
    return found


def _importable(module: str) -> bool:
    """Whether ``import module`` works (k-diffusion may be installed without its dependencies)."""
    if importlib.util.find_spec(module) is None:
        return False
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def blocks(page: Path) -> list[tuple[int, str]]:
    """``(line, code)`` of each runnable ```python block of ``page``."""
    text = page.read_text(encoding="utf-8")
    out = []
    for match in _BLOCK.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        if before != SKIP:
            out.append((text.count("\n", 0, match.start()) + 2, textwrap.dedent(match.group(2))))
    return out


def test_pages_exist_and_have_code():
    pages = _pages()
    assert len(pages) >= 9, [p.name for p in pages]
    assert all(blocks(p) for p in pages if p.parent.name == "guides" or p.name == "getting-started.md")


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_page_snippets_run(page: Path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"docs_snippet_{page.stem}"}
    ran = 0
    for line, code in blocks(page):
        missing = [m for m in _IMPORT.findall(code) if not _importable(m)]
        if missing:
            if ran == 0:
                pytest.skip(f"{page.name}:{line} needs {missing[0]}, not installed")
            return  # the rest of the page may depend on this block
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile(code, f"{page.relative_to(DOCS)}:{line}", "exec"), namespace)  # noqa: S102
        except Exception as err:  # noqa: BLE001 - report the page and line of the failing block
            raise AssertionError(f"the code block at {page.relative_to(DOCS)}:{line} fails: {err!r}") from err
        ran += 1
