"""The import structure: layers that only import downward, no circle of files, no `sys.path` edits.

Every `.py` file of the project outside `tests/` is parsed (not imported); every import counts,
also one inside a function or under `if TYPE_CHECKING:`. The layers, top to bottom:

    entry     submit_dance.py, main.py, hubconf.py, tools/        (parse flags, print, exit codes)
    runners   inference.py (tracking runs), engine.py (training)
    datasets  datasets/      readers, the dataset registry, training sets, synthetic data
    models    models/        network, tracker, memory, model-input preprocessing, structures
    util      util/          files, devices, a generic dataclass <-> flags helper

A file may import its own layer or any layer below it, never one above. `util/` imports nothing of
the project outside `util/`.
"""
import ast
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

REPO = Path(__file__).resolve().parents[1]
SKIP_DIRS = {"tests", ".venv", ".git", "outputs", "data", "results", "exps", "__pycache__", "weights", "docs"}
LAYERS = ("util", "models", "datasets", "runners", "entry")  # bottom to top
RUNNERS = {"inference.py", "engine.py"}


def project_files(root: Path = REPO) -> List[Path]:
    files = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in SKIP_DIRS or any(p.startswith(".") for p in rel.parts[:-1]):
            continue
        files.append(rel)
    return files


def layer_of(rel: Path) -> str:
    top = rel.parts[0]
    if top in ("util", "models", "datasets"):
        return top
    if len(rel.parts) == 1 and top in RUNNERS:
        return "runners"
    return "entry"


def _module_file(module: str, files: Set[Path]) -> Path:
    """The project file a dotted module name refers to, or None if it is not ours."""
    parts = module.split(".")
    candidates = [Path(*parts).with_suffix(".py"), Path(*parts, "__init__.py")]
    for c in candidates:
        if c in files:
            return c
    return None


def imports_of(rel: Path, files: Set[Path], root: Path = REPO) -> Iterator[Tuple[Path, int]]:
    """(imported project file, line) for every import statement in `rel`, wherever it stands."""
    tree = ast.parse((root / rel).read_text(encoding="utf-8"), filename=str(rel))
    package = list(rel.parts[:-1]) if rel.name != "__init__.py" else list(rel.parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _module_file(alias.name, files)
                if target is not None:
                    yield target, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found = False
            for alias in node.names:  # `from pkg import submodule` imports the submodule's file
                target = _module_file(f"{module}.{alias.name}" if module else alias.name, files)
                if target is not None:
                    found = True
                    yield target, node.lineno
            if not found or any(_module_file(f"{module}.{a.name}", files) is None for a in node.names):
                target = _module_file(module, files) if module else None
                if target is not None:
                    yield target, node.lineno


def import_graph(root: Path = REPO) -> Dict[Path, Dict[Path, int]]:
    files = project_files(root)
    fileset = set(files)
    graph: Dict[Path, Dict[Path, int]] = {}
    for rel in files:
        edges = graph.setdefault(rel, {})
        for target, line in imports_of(rel, fileset, root):
            if target != rel:
                edges.setdefault(target, line)
    return graph


def find_cycles(graph: Dict[Path, Dict[Path, int]]) -> List[List[Path]]:
    """Strongly connected components of more than one file (Tarjan)."""
    index: Dict[Path, int] = {}
    low: Dict[Path, int] = {}
    stack: List[Path] = []
    on_stack: Set[Path] = set()
    cycles: List[List[Path]] = []
    counter = [0]
    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))

    def visit(v: Path) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def layer_violations(graph: Dict[Path, Dict[Path, int]]) -> List[str]:
    bad = []
    for src, edges in sorted(graph.items()):
        src_layer = layer_of(src)
        for dst, line in sorted(edges.items()):
            dst_layer = layer_of(dst)
            if LAYERS.index(dst_layer) > LAYERS.index(src_layer):
                bad.append(f"{src}:{line}: {src_layer} imports {dst} ({dst_layer}, a layer above)")
    return bad


def sys_path_edits(root: Path = REPO) -> List[str]:
    """`sys.path` assignments and calls (insert, append, extend, ...) outside tests/."""
    found = []
    for rel in project_files(root):
        tree = ast.parse((root / rel).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            target = None
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                target = node.func.value
            elif isinstance(node, (ast.Assign, ast.AugAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                target = next((t for t in targets if isinstance(t, (ast.Attribute, ast.Subscript))), None)
                if isinstance(target, ast.Subscript):
                    target = target.value
            if (isinstance(target, ast.Attribute) and target.attr == "path"
                    and isinstance(target.value, ast.Name) and target.value.id == "sys"):
                found.append((str(rel), node.lineno))
    return [f"{rel}:{line}" for rel, line in sorted(found)]


# -- the checks on this repository -------------------------------------------------------------------------
def test_no_circle_of_files():
    cycles = find_cycles(import_graph())
    assert not cycles, "circles of imports: " + "; ".join(" <-> ".join(map(str, c)) for c in cycles)


def test_imports_only_run_downward():
    bad = layer_violations(import_graph())
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_no_sys_path_edits_outside_tests():
    edits = sys_path_edits()
    assert not edits, "sys.path edited outside tests/ (run tools as `python tools/X.py` from the venv, " \
                      "or `python -m tools.X`): " + ", ".join(edits)


# -- the checker itself: it must see what it is meant to catch --------------------------------------------
@pytest.fixture
def toy(tmp_path):
    def make(files: Dict[str, str]) -> Path:
        for name, text in files.items():
            path = tmp_path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return tmp_path
    return make


def test_checker_sees_a_circle_through_a_function_import(toy):
    root = toy({"models/__init__.py": "", "models/a.py": "from models.b import f\n",
                "models/b.py": "def f():\n    from . import a\n"})
    cycles = find_cycles(import_graph(root))
    assert cycles == [[Path("models/a.py"), Path("models/b.py")]]


def test_checker_sees_an_upward_import_under_type_checking(toy):
    root = toy({"models/__init__.py": "", "datasets/__init__.py": "", "datasets/d.py": "X = 1\n",
                "models/m.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from datasets.d import X\n",
                "util/u.py": "import inference\n", "inference.py": "import tools.t\n",
                "tools/t.py": "import models.m\n"})
    bad = layer_violations(import_graph(root))
    assert [b.split(":")[0] for b in bad] == ["inference.py", "models/m.py", "util/u.py"]


def test_checker_sees_sys_path_edits(toy):
    root = toy({"tools/t.py": "import sys\nsys.path.insert(0, 'x')\nsys.path = []\nsys.path[0:0] = ['y']\n",
                "tests/test_t.py": "import sys\nsys.path.append('ok in tests')\n"})
    assert sys_path_edits(root) == ["tools/t.py:2", "tools/t.py:3", "tools/t.py:4"]
