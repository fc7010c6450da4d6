"""Every YAML file a user hands us (study files, YOLOv5 hyp files, data yamls) is read here.

``yaml.safe_load`` never runs code, but it happily reads a 50 MB file, and a one-kilobyte "billion
laughs" document of nested aliases expands to gigabytes once anything walks it (pydantic, JSON for
the storage, an error message's ``repr``). So the file size is bounded before parsing, and the
composed node graph is measured *with aliases expanded* before any Python object is built: both
refusals cost milliseconds and end in one :class:`~hpo.errors.HpoError` line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hpo.errors import HpoError

#: Largest YAML file read (bytes). Study files are a few KB; the largest real data yamls (LVIS, with
#: 1,203 class names) are tens of KB.
MAX_BYTES = 1 << 20
#: Most nodes (scalars, sequences, mappings) a document may hold once every alias is expanded.
MAX_NODES = 100_000

# libyaml's parser when PyYAML has it (fast, and it refuses nesting deeper than 1000 levels instead
# of exhausting Python's recursion limit); the same safe constructors either way.
_LOADER: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _check_expanded_size(root: yaml.Node, limit: int) -> None:
    """Refuse a document of more than ``limit`` nodes with every alias expanded, counted without
    expanding anything.

    Aliases make the composed document a graph whose nodes are shared; the expanded tree's size is
    the sum over children, memoised per node, so a bomb is measured in time linear in its *file*.
    The first (innermost) node past ``limit`` is named; so is a node containing itself (``&a [*a]``).
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    # Iterative post-order walk: (node, children already pushed?).
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        key = id(node)
        if expanded:
            on_path.discard(key)
            children = _children(node)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[key] > limit:
                raise _Refused(f"aliases expand to more than {limit:,} nodes (an alias bomb?); "
                               "write the values out instead", node)
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise _Refused("an alias refers to a node that contains it (a recursive structure)", node)
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                raise _Refused("an alias refers to a node that contains it (a recursive structure)", child)
            if id(child) not in sizes:
                stack.append((child, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


class _Refused(Exception):
    def __init__(self, message: str, node: yaml.Node | None = None):
        super().__init__(message)
        self.line = node.start_mark.line + 1 if node is not None and node.start_mark else None


def read_text(path: Path, *, max_bytes: int = MAX_BYTES) -> str:
    """The file's text, refused (without reading it) when larger than ``max_bytes``."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise HpoError(f"file is {_human(size)}, more than the {_human(max_bytes)} a YAML input may have",
                           path=path)
        with open(path, "rb") as f:
            raw = f.read(max_bytes + 1)  # the file may have grown since stat()
    except OSError as exc:
        raise HpoError(f"cannot read: {exc.strerror or exc}", path=path) from None
    if len(raw) > max_bytes:
        raise HpoError(f"file is more than the {_human(max_bytes)} a YAML input may have", path=path)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HpoError(f"not UTF-8 text (byte {exc.start})", path=path) from None


def load(path: str | Path, *, max_bytes: int = MAX_BYTES, max_nodes: int = MAX_NODES) -> Any:
    """Read one user YAML file safely: size and alias expansion bounded, no code ever run.

    Every problem is one :class:`HpoError` line naming the file (and the line, where YAML knows it).
    """
    path = Path(path)
    return loads(read_text(path, max_bytes=max_bytes), source=path, max_nodes=max_nodes)


def loads(text: str, *, source: str | Path = "<yaml>", max_nodes: int = MAX_NODES) -> Any:
    """:func:`load` for text already in memory (its size is the caller's business)."""
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expanded_size(node, max_nodes)
        return loader.construct_document(node)
    except _Refused as exc:
        raise HpoError(str(exc), path=source, field=f"line {exc.line}" if exc.line else None) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or (str(exc).splitlines() or ["invalid"])[0]
        raise HpoError(f"not valid YAML: {problem}", path=source,
                       field=f"line {mark.line + 1}" if mark is not None else None) from None
    except RecursionError:
        raise HpoError("not valid YAML: nested too deeply", path=source) from None
    finally:
        loader.dispose()


def _human(size: int) -> str:
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"
