"""The package's layering: no module imports one that imports it back, not even in a function."""

import ast
from pathlib import Path

import sklearn_mln

PACKAGE = Path(sklearn_mln.__file__).parent


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is a package) for every module of sklearn_mln."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def _import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its file.

    ``from . import pretrained`` imports the subpackage; ``from . import MLNEvolver`` (or
    ``from sklearn_mln import ...``) imports the package root, which imports everything.
    """
    modules = _modules()
    graph = {}
    for name, (path, is_package) in modules.items():
        here = name.split(".") if is_package else name.split(".")[:-1]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = here[: len(here) - node.level + 1] if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                submodules = {f"{module}.{alias.name}" for alias in node.names} & set(modules)
                targets |= submodules
                if len(submodules) < len(node.names):
                    targets.add(module)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                cycles.append(path[path.index(dep) :] + [dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_no_import_cycle():
    graph = _import_graph()
    # the graph sees relative imports, of a subpackage and out of one
    assert "sklearn_mln.pretrained" in graph["sklearn_mln._losses._resolve"]
    assert "sklearn_mln._losses._meta_loss" in graph["sklearn_mln.pretrained"]
    assert "sklearn_mln._evolution._evolver" in graph["sklearn_mln"]
    assert _cycles(graph) == []


def test_the_graph_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


#: the wings, lowest first (docs/architecture.rst): a module imports only its own wing and
#: wings of a lower rank
WING_RANK = {
    "_version": 0,
    "_utils": 0,
    "_losses": 1,
    "pretrained": 1,
    "datasets": 1,
    "_classifier": 2,
    "_evolution": 3,
    "benchmark": 4,
    "_model_selection": 4,
    "plotting": 4,
    "toolkit": 5,
    "_cli": 5,
    "__main__": 6,
    "": 7,  # the package root
}


def _wing(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_wings_import_downwards_only():
    graph = _import_graph()
    assert {_wing(m) for m in graph} == set(WING_RANK), "a new wing needs its rank here"
    upwards = [
        (module, dep)
        for module, deps in graph.items()
        for dep in deps
        if WING_RANK[_wing(dep)] > WING_RANK[_wing(module)]
    ]
    assert upwards == []


def test_nothing_outside_the_package_imports_a_private_module():
    root = PACKAGE.parent
    offenders = []
    for folder in ("benchmarks", "examples", "docs"):
        for path in (root / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                for name in names:
                    parts = name.split(".")
                    if parts[0] == "sklearn_mln" and any(
                        p.startswith("_") and not p.startswith("__") for p in parts[1:]
                    ):
                        offenders.append(f"{path.relative_to(root)}: {name}")
    assert offenders == []
