"""The package's layering: no module imports one that imports it back, not even in a function;
and its size: modules read in one sitting, functions seen on one screen."""

import ast
import io
import tokenize
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


# ----------------------------------------------------------------------------- sizes
#: code lines (docstrings, comments and blank lines aside) of a module and of a function,
#: at the most
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

_NOT_CODE = {
    tokenize.COMMENT,
    tokenize.NL,
    tokenize.NEWLINE,
    tokenize.INDENT,
    tokenize.DEDENT,
    tokenize.ENCODING,
    tokenize.ENDMARKER,
}
_DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _code_lines(source: str, tree: ast.Module) -> set[int]:
    """Numbers of the lines that hold code: not blank, not a comment only, not a docstring."""
    lines = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in _NOT_CODE:
            lines.update(range(token.start[0], token.end[0] + 1))
    for node in ast.walk(tree):
        if isinstance(node, _DOCUMENTED) and ast.get_docstring(node, clean=False) is not None:
            lines.difference_update(range(node.body[0].lineno, node.body[0].end_lineno + 1))
    return lines


def _is_estimator(node: ast.AST) -> bool:
    bases = [ast.unparse(base).rsplit(".", 1)[-1] for base in getattr(node, "bases", [])]
    return isinstance(node, ast.ClassDef) and "BaseEstimator" in bases


def _functions(node: ast.AST, prefix: str = ""):
    """(qualified name, node) of every function under ``node``, but estimators' ``__init__``.

    scikit-learn's contract has an estimator's ``__init__`` store every parameter
    explicitly, one line each, so its length follows the number of parameters.
    """
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if not (child.name == "__init__" and _is_estimator(node)):
                yield prefix + child.name, child
            yield from _functions(child, f"{prefix}{child.name}.")
        elif isinstance(child, ast.ClassDef):
            yield from _functions(child, f"{prefix}{child.name}.")
        else:
            yield from _functions(child, prefix)


def test_code_lines_leave_docstrings_comments_and_blank_lines_aside():
    source = '''def f(
    a,  # a comment
):
    """A docstring
    on two lines."""

    # a comment
    text = """a string
    on two lines"""
    return a, text
'''
    tree = ast.parse(source)
    assert sorted(_code_lines(source, tree)) == [1, 2, 3, 8, 9, 10]
    assert [name for name, _ in _functions(tree)] == ["f"]


def test_modules_and_functions_stay_small():
    oversized = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text()
        tree = ast.parse(source)
        code = _code_lines(source, tree)
        where = path.relative_to(PACKAGE.parent).as_posix()
        if len(code) > MAX_MODULE_LINES:
            oversized.append(f"{where}: {len(code)} lines")
        for name, function in _functions(tree):
            # from the def line (decorators aside) to the end, the signature included
            n_lines = len(code & set(range(function.lineno, function.end_lineno + 1)))
            if n_lines > MAX_FUNCTION_LINES:
                oversized.append(f"{where}::{name}: {n_lines} lines")
    assert oversized == []
