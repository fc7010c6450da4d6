"""The package's shape: no import cycles, and the stages depend on each other one way only.

Data flows spec -> study -> search (worker, trial runner) -> storage -> final (export, retrain,
report); the CLI sits on top and nothing imports it. Imports inside ``if TYPE_CHECKING:`` are for type
checkers only and are not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hpo"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path, known: set[str]) -> set[str]:
    """hpo modules ``path`` imports when it runs (module level or inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only.update(id(n) for child in node.body for n in ast.walk(child))
    found: set[str] = set()
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name in known:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(files)
    graph = {name: _runtime_imports(path, known) - {name} for name, path in files.items()}
    # Importing a module runs its package's __init__ first; those edges are implied, not cycles.
    return {name: {d for d in deps if not name.startswith(d + ".")} for name, deps in graph.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycles() -> None:
    assert find_cycle(import_graph()) is None


@pytest.mark.parametrize("lower, upper", [
    ("hpo.spec", "hpo.study"), ("hpo.spec", "hpo.storage"), ("hpo.spec", "hpo.final"), ("hpo.spec", "hpo.cli"),
    ("hpo.study", "hpo.final"), ("hpo.search", "hpo.final"), ("hpo.storage", "hpo.final"), ("hpo.storage", "hpo.search"),
    ("hpo.data", "hpo.search"), ("hpo.data", "hpo.final"),
    ("hpo.search", "hpo.cli"), ("hpo.final", "hpo.cli"), ("hpo.data", "hpo.cli"), ("hpo.api", "hpo.cli"),
])
def test_stages_depend_one_way(lower: str, upper: str) -> None:
    """A module of an earlier stage never imports a later one (``upper``)."""
    offending = sorted(f"{module} -> {dep}" for module, deps in import_graph().items()
                       if module == lower or module.startswith(lower + ".")
                       for dep in deps if dep == upper or dep.startswith(upper + "."))
    assert not offending, offending


def test_private_optuna_names_only_in_the_compat_module() -> None:
    """Optuna's private modules are imported in hpo/optuna_compat.py and nowhere else."""
    users = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                   if p.name != "optuna_compat.py"
                   and any(s in p.read_text(encoding="utf-8") for s in ("optuna.storages._", "._storage", "._study_id",
                                                                        "._trial_id", "._contains(")))
    assert users == []
