"""Griffe extension: sdekit's reStructuredText-flavoured docstrings to Markdown, at docs build time.

The docstrings are written for reading in an editor: Google-style sections (``Arguments:``,
``Returns:``, ``Raises:``) around reStructuredText inline markup. mkdocstrings renders Markdown, so
before any docstring is parsed this extension rewrites, in every docstring of the ``sdekit`` package:

* roles ``:class:`~a.B```, ``:func:``, ``:meth:``, ``:attr:``, ``:data:``, ``:mod:``, ``:exc:`` ->
  a cross-reference ``[`B`][canonical.path]`` when the name resolves (in the docstring's own scope,
  as Python would) to an object that the API reference renders (a name in the ``__all__`` of a
  documented package, or a documented member of one), else a code span; a name that does not
  resolve at all and does not name an outside object (``torch.Tensor``) is reported as a warning,
  which fails ``mkdocs build --strict``;
* ``:math:`x``` -> ``\\(x\\)`` and ``.. math::`` blocks -> ``$$ ... $$`` (pymdownx.arithmatex, generic);
* ````code```` -> ```code```;
* ``Text::`` + an indented literal block -> ``Text:`` + a fenced code block (Python when it parses);
* simple tables (``=====  =====`` borders, continuation rows) -> Markdown pipe tables.

Nothing in ``src/`` is changed: the conversion runs on griffe's in-memory copy of each docstring.
"""

from __future__ import annotations

import ast
import builtins
import logging
import re
import textwrap
from typing import Any

import griffe

logger = logging.getLogger("mkdocs.plugins.sdekit_docstrings")

PACKAGE = "sdekit"
# Packages whose ``__all__`` the API reference renders (docs/api/*.md); a role pointing at one of their
# public names becomes a link.
DOCUMENTED = (
    "sdekit", "sdekit.diffusion", "sdekit.nn", "sdekit.data", "sdekit.metrics", "sdekit.train",
)
# Roots of names that live outside sdekit: written as code, never reported.
EXTERNAL_ROOTS = (
    "torch", "numpy", "np", "scipy", "math", "typing", "collections", "dataclasses", "safetensors",
    "diffusers", "torchsde", "k_diffusion", "sklearn", "matplotlib", "ot", "tqdm", "os", "pathlib",
    "json", "builtins", "functools", "itertools", "contextlib", "abc", "enum", "logging", "warnings",
)
BUILTINS = set(dir(builtins))

_ROLE = re.compile(r":(class|func|meth|attr|data|mod|exc|obj|const|py:\w+):`(~?)([^`]+)`")
_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_DOUBLE_TICKS = re.compile(r"``(.+?)``")
_MATH_DIRECTIVE = re.compile(r"^(\s*)\.\. math::\s*(.*)$")
_TABLE_BORDER = re.compile(r"^\s*=+(\s+=+)+\s*$")


# ---------------------------------------------------------------------------------------------
# the extension


class RSTToMarkdown(griffe.Extension):
    """Rewrite every docstring of the loaded ``sdekit`` package once it is fully loaded."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if pkg.name != PACKAGE:
            return
        collection = loader.modules_collection
        linkable = _documented_paths(collection)
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = convert(obj.docstring.value, obj, collection, linkable)
                _check_parameters(obj)


def _check_parameters(obj) -> None:
    """Every name in an ``Arguments:`` section is a parameter of the signature (griffe's own check,
    ``warn_unknown_params``, is off because sdekit documents related parameters together:
    ``rtol, atol: ...``)."""
    if not (obj.is_function or obj.is_class) or obj.name.startswith("_") and obj.name != "__init__":
        return
    try:
        known = {p.name for p in obj.parameters}
    except Exception:  # noqa: BLE001 - a class without __init__
        return
    sections = griffe.parse_google(obj.docstring, warnings=False)
    for section in sections:
        if section.kind is not griffe.DocstringSectionKind.parameters:
            continue
        for item in section.value:
            for name in item.name.split(","):
                name = name.strip().lstrip("*")
                if name and name not in known:
                    logger.warning("%s (%s): the docstring documents '%s', which is not a parameter of "
                                   "the signature %s", obj.path, obj.relative_filepath, name, sorted(known))


def _walk(obj: griffe.Object):
    yield obj
    for member in obj.members.values():
        if member.is_alias:
            continue
        yield from _walk(member)


def _final(collection, path: str):
    """The object at ``path`` with aliases followed, or ``None``."""
    try:
        obj = collection.get_member(path)
    except Exception:  # noqa: BLE001 - griffe raises KeyError or AliasResolutionError
        return None
    seen = 0
    while obj is not None and obj.is_alias and seen < 20:
        try:
            obj = collection.get_member(obj.target_path)
        except Exception:  # noqa: BLE001
            return None
        seen += 1
    return obj


def _documented_paths(collection) -> set[str]:
    """Canonical paths of what the API reference renders: the public names of the documented
    packages and their public, documented members (mkdocstrings registers each object's canonical
    path as an anchor, so a link to it resolves to the public page)."""
    paths: set[str] = set()
    for pkg_path in DOCUMENTED:
        pkg = _final(collection, pkg_path)
        if pkg is None or pkg.exports is None:
            continue
        for name in _export_names(pkg):
            obj = _final(collection, f"{pkg_path}.{name}")
            if obj is None:
                continue
            paths.add(obj.path)
            if obj.is_class:
                for member_name, member in obj.all_members.items():
                    if member_name.startswith("_"):
                        continue
                    target = _final(collection, member.path) if member.is_alias else member
                    if target is not None and target.docstring is not None:
                        paths.add(target.path)
    return paths


def _export_names(pkg) -> list[str]:
    """``pkg.exports`` with ``*NAME`` entries (a module-level tuple of names) expanded."""
    names: list[str] = []
    for item in pkg.exports:
        if isinstance(item, str):
            names.append(item)
            continue
        member = pkg.members.get(getattr(item, "name", ""))
        try:
            names.extend(ast.literal_eval(str(member.value)))
        except (AttributeError, ValueError, SyntaxError):
            logger.warning("%s: cannot read the names of %s in __all__", pkg.path, item)
    return names


# ---------------------------------------------------------------------------------------------
# the conversion


def convert(text: str, obj=None, collection=None, linkable: set[str] | frozenset = frozenset()) -> str:
    """One docstring from sdekit's RST flavour to Markdown (see the module docstring)."""
    lines = text.splitlines()
    lines = _math_blocks(lines)
    lines = _literal_blocks(lines)
    lines = _tables(lines, obj, collection, linkable)
    lines = _prose_raises(lines)
    lines = _grouped_attribute_names(lines)
    lines = _definition_lists(lines)
    return "\n".join(_inline(line, obj, collection, linkable) for line in lines)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _block(lines: list[str], start: int, base: int) -> int:
    """Index past the indented block that starts at ``start`` (lines indented more than ``base``;
    blank lines inside it included)."""
    end = start
    i = start
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        if _indent(lines[i]) <= base:
            break
        i += 1
        end = i
    return end


def _blank_before(out: list[str]) -> None:
    if out and out[-1].strip():
        out.append("")


def _math_blocks(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        m = _MATH_DIRECTIVE.match(lines[i])
        if not m:
            out.append(lines[i])
            i += 1
            continue
        pad, first = m.group(1), m.group(2)
        base = len(pad)
        end = _block(lines, i + 1, base)
        rest = textwrap.dedent("\n".join(lines[i + 1:end])).splitlines()
        body = ([first.strip()] if first.strip() else []) + [r.strip() for r in rest if r.strip()]
        _blank_before(out)
        out.append(f"{pad}$$")
        out.extend(f"{pad}{b}" for b in body)
        out.append(f"{pad}$$")
        out.append("")
        i = end
    return out


def _literal_blocks(lines: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith("::") and not line.strip().startswith(".."):
            base = _indent(line)
            end = _block(lines, i + 1, base)
            if end > i + 1:
                code = textwrap.dedent("\n".join(lines[i + 1:end])).strip("\n")
                head = line.rstrip()[:-2].rstrip()
                if head.strip():
                    out.append(head + ":")
                pad = " " * base
                try:
                    ast.parse(code)
                    lang = "python"
                except SyntaxError:
                    lang = "text"
                out.append("")
                out.append(f"{pad}```{lang}")
                out.extend(f"{pad}{c}" if c.strip() else "" for c in code.splitlines())
                out.append(f"{pad}```")
                out.append("")
                i = end
                continue
        out.append(line)
        i += 1
    return out


_RAISES = re.compile(r"^(\s*)Raises:\s*$")
_RAISES_ITEM = re.compile(r"^[A-Za-z_][\w.]*(\s*(/|,|or)\s*[A-Za-z_][\w.]*)*:(\s|$)")


def _prose_raises(lines: list[str]) -> list[str]:
    """A ``Raises:`` section written as prose (``TypeError / ValueError for ...``), not as
    ``Exception: description`` items, becomes a paragraph that starts with **Raises:**."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        m = _RAISES.match(lines[i])
        if not m:
            out.append(lines[i])
            i += 1
            continue
        end = _block(lines, i + 1, len(m.group(1)))
        body = [line for line in lines[i + 1:end]]
        items = [line for line in body if line.strip()]
        step = min((_indent(line) for line in items), default=0)
        if items and all(_RAISES_ITEM.match(line.strip()) for line in items if _indent(line) == step):
            out.extend(lines[i:end])
        else:
            text = textwrap.dedent("\n".join(body)).strip().splitlines()
            _blank_before(out)
            out.append(f"{m.group(1)}**Raises:** {text[0] if text else ''}")
            out.extend(f"{m.group(1)}{t}" for t in text[1:])
            out.append("")
        i = end
    return out


_SECTION = re.compile(
    r"^(Args|Arguments|Parameters|Params|Other Parameters|Keyword Args|Keyword Arguments|Returns?|Yields|"
    r"Receives|Raises|Exceptions|Warns|Attributes|Functions|Methods|Classes|Modules|Examples?|Notes?|"
    r"Warnings?|References?|See Also|Todo|Call)\s*:\s*$", re.IGNORECASE)


def _definition_lists(lines: list[str]) -> list[str]:
    """A top-level line ending with ``:`` directly followed by an indented block that is not a Google
    section (``Methods (x: ...):`` then one indented ``name: text`` per line) becomes the line and a
    bullet list, one item per line of the block's indentation (deeper lines continue an item)."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if (line.strip() and _indent(line) == 0 and line.rstrip().endswith(":")
                and not line.rstrip().endswith("::") and not _SECTION.match(line.strip())
                and nxt.strip() and _indent(nxt) > 0):
            end = _block(lines, i + 1, 0)
            step = _indent(nxt)
            out.extend([line, ""])
            for item in lines[i + 1:end]:
                if not item.strip():
                    continue
                if _indent(item) <= step:
                    out.append("- " + item.strip())
                else:
                    out.append("  " + item.strip())
            out.append("")
            i = end
            continue
        out.append(line)
        i += 1
    return out


_ATTRIBUTES = re.compile(r"^(\s*)Attributes:\s*$")


def _grouped_attribute_names(lines: list[str]) -> list[str]:
    """``a, b: text`` in an ``Attributes:`` section: griffe reads a space in the name as the start of
    a type, so the names are joined by a comma and a no-break space."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        m = _ATTRIBUTES.match(lines[i])
        out.append(lines[i])
        i += 1
        if not m:
            continue
        end = _block(lines, i, len(m.group(1)))
        items = [line for line in lines[i:end] if line.strip()]
        step = min((_indent(line) for line in items), default=0)
        for line in lines[i:end]:
            head, sep, rest = line.partition(":")
            if sep and _indent(line) == step and re.fullmatch(r"\s*\w+(, \w+)+", head):
                line = head.replace(", ", ",\u00a0") + sep + rest
            out.append(line)
        i = end
    return out


def _tables(lines: list[str], obj, collection, linkable) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        if not _TABLE_BORDER.match(lines[i]):
            out.append(lines[i])
            i += 1
            continue
        border = lines[i]
        pad = " " * _indent(border)
        cols = [(m.start(), m.end()) for m in re.finditer(r"=+", border)]
        # the borders: top, under the header, bottom
        j = i + 1
        sections: list[list[str]] = [[]]
        while j < len(lines) and len(sections) <= 2:
            if _TABLE_BORDER.match(lines[j]):
                sections.append([])
                if len(sections) == 3:
                    break
            else:
                sections[-1].append(lines[j])
            j += 1
        if len(sections) < 3:  # not a table after all
            out.append(lines[i])
            i += 1
            continue
        header, body = _rows(sections[0], cols), _rows(sections[1], cols)
        _blank_before(out)
        out.append(pad + "| " + " | ".join(header[0] if header else [""] * len(cols)) + " |")
        out.append(pad + "|" + "|".join("---" for _ in cols) + "|")
        out.extend(pad + "| " + " | ".join(row) + " |" for row in body)
        out.append("")
        i = j + 1
    return out


def _rows(lines: list[str], cols: list[tuple[int, int]]) -> list[list[str]]:
    rows: list[list[str]] = []
    for line in lines:
        if not line.strip():
            continue
        cells = []
        for k, (start, _end) in enumerate(cols):
            stop = cols[k + 1][0] if k + 1 < len(cols) else len(line)
            cells.append(line[start:stop].strip())
        if rows and not cells[0]:  # a continuation line: join with the row above
            rows[-1] = [f"{a} {b}".strip() for a, b in zip(rows[-1], cells)]
        else:
            rows.append(cells)
    return [[c.replace("|", r"\|") for c in row] for row in rows]


def _inline(line: str, obj, collection, linkable) -> str:
    # math first (its body may hold backticks of other roles' syntax), then roles, then ``code``
    line = _MATH_ROLE.sub(lambda m: rf"\({m.group(1)}\)", line)
    line = _ROLE.sub(lambda m: _reference(m.group(1), m.group(2) == "~", m.group(3), obj, collection,
                                          linkable), line)
    return _DOUBLE_TICKS.sub(lambda m: f"`{m.group(1)}`", line)


def _reference(role: str, short: bool, target: str, obj, collection, linkable) -> str:
    target = target.strip()
    if target.endswith("()"):
        target = target[:-2]
    label = target.rsplit(".", 1)[-1] if short else target
    if role in ("func", "meth"):
        label += "()"
    if obj is None or collection is None:
        return f"`{label}`"
    path = _resolve(target, obj, collection)
    if path is None:
        root = target.split(".", 1)[0]
        if root not in EXTERNAL_ROOTS and root not in BUILTINS:
            logger.warning("%s: docstring reference :%s:`%s` does not resolve (%s)",
                           obj.path, role, target, obj.relative_filepath)
        return f"`{label}`"
    if path in linkable:
        return f"[`{label}`][{path}]"
    return f"`{label}`"


def _resolve(target: str, obj, collection) -> str | None:
    """Canonical path of ``target`` seen from ``obj``'s scope (itself, its parents, their imports),
    or ``None``."""
    if target.startswith(PACKAGE + ".") or target == PACKAGE:
        found = _final(collection, target)
        return found.path if found is not None else None
    head, _, tail = target.partition(".")
    scope = obj
    while scope is not None:
        try:
            resolved = scope.resolve(head)
        except Exception:  # noqa: BLE001 - griffe.NameResolutionError and alias errors
            resolved = None
        if resolved is not None:
            if not resolved.startswith(PACKAGE):
                return None
            found = _final(collection, f"{resolved}.{tail}" if tail else resolved)
            if found is None and tail:  # an inherited member: look through the class's MRO
                base = _final(collection, resolved)
                if base is not None and base.is_class and tail in base.all_members:
                    member = base.all_members[tail]
                    found = _final(collection, member.path) if member.is_alias else member
            return found.path if found is not None else None
        scope = scope.parent
    return None
