"""
The package's layering: every module has one home, and dependencies point one way.

    planning/, envs/        pure torch + gymnasium (no stable_baselines3)        layer 0
    dynamics/               the learned model, trainer, model env (no SB3)        layer 1
    common/                 SB3 glue shared by the algorithms                     layer 2
    pets/ mbpo/ reinforce/ imitation_learning/   the algorithms                    layer 3
    loop/                   algorithms built on one of layer 3 (LOOP on MBPO,     layer 4
                            as SB3's DDPG on TD3)
    zoo/                    the rl-zoo tooling and the sb3-mbrl command           layer 5

A module may import its own layer and the layers below; an algorithm package never imports
another one; no import cycle between modules (nor between sub-packages); the model layers do
not import SB3 or rl-zoo. Imports are read with ``ast`` (top-level and inside functions, relative
ones resolved), so lazy imports count as dependencies too.
"""
import ast
import importlib.util
import os
import pkgutil
from collections import defaultdict
from typing import Dict, List, Optional, Set, Tuple

import pytest

import sb3_mbrl

ROOT = "sb3_mbrl"
LAYERS: Dict[str, int] = {
    "planning": 0,
    "envs": 0,
    "dynamics": 1,
    "common": 2,
    "pets": 3,
    "mbpo": 3,
    "reinforce": 3,
    "imitation_learning": 3,
    "loop": 4,
    "zoo": 5,
}
ALGORITHM_LAYER = 3
# Third-party packages the model layers (planning, envs, dynamics) must not import.
NO_SB3_LAYER_MAX = 1
SB3_PACKAGES = ("stable_baselines3", "sb3_contrib", "rl_zoo3")

# Modules outside the layering. Only the package entry points belong here for good.
OUTSIDE_LAYERS = {"sb3_mbrl", "sb3_mbrl.__main__"}
# Temporary exceptions: flat modules directly under sb3_mbrl/ that have no layer yet. The rl-zoo
# tooling (cli.py, zoo.py, zoo_progress.py, optimize.py, hyperparams_opt.py, plotting.py) was
# listed here until it moved into sb3_mbrl/zoo/ (issue 12). The list only shrinks: a listed
# module that no longer exists fails the test, so that only OUTSIDE_LAYERS remains.
NOT_YET_LAYERED: Set[str] = set()


# ------------------------------------------------------------------------------ reading the package
def _module_files() -> Dict[str, Tuple[str, bool]]:
    """Every module of the package: ``name -> (source file, is_package)``."""
    modules = {ROOT: (sb3_mbrl.__file__, True)}

    def onerror(name: str) -> None:
        raise ImportError(f"cannot import package {name} to list its modules")

    for info in pkgutil.walk_packages(sb3_mbrl.__path__, prefix=f"{ROOT}.", onerror=onerror):
        last = info.name.rsplit(".", 1)[1]
        folder = info.module_finder.path  # type: ignore[union-attr]
        path = os.path.join(folder, last, "__init__.py") if info.ispkg else os.path.join(folder, f"{last}.py")
        if not os.path.isfile(path):  # an extension module or a namespace package: no source to read
            spec = importlib.util.find_spec(info.name)
            path = spec.origin if spec is not None and spec.origin else path
        modules[info.name] = (path, info.ispkg)
    return modules


def _imports(name: str, path: str, is_package: bool) -> List[Tuple[str, Optional[str], int]]:
    """``(imported module, imported name or None, line)`` for every import in the file, relative ones resolved."""
    with open(path, encoding="utf-8") as file:
        tree = ast.parse(file.read(), filename=path)
    package = name if is_package else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):  # ast.walk: imports inside functions and `if TYPE_CHECKING:` too
        if isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found += [(module, alias.name, node.lineno) for alias in node.names]
    return found


def _layer(module: str) -> Optional[int]:
    """The layer of a module of the package, ``None`` outside the layering."""
    if module in OUTSIDE_LAYERS or module in NOT_YET_LAYERED:
        return None
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def _top_package(module: str) -> str:
    """``sb3_mbrl.dynamics.trainer -> dynamics``; flat modules stand for themselves."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


class Graph:
    """The package's import graph: internal edges with their line, and third-party imports."""

    def __init__(self) -> None:
        self.modules = _module_files()
        self.edges: Dict[str, Dict[str, int]] = defaultdict(dict)  # importer -> {imported: line}
        self.external: Dict[str, Dict[str, int]] = defaultdict(dict)  # importer -> {top-level package: line}
        for name, (path, is_package) in self.modules.items():
            for module, imported_name, line in _imports(name, path, is_package):
                if module != ROOT and not module.startswith(f"{ROOT}."):
                    self.external[name].setdefault(module.split(".")[0], line)
                    continue
                # `from pkg import sub` depends on the sub-module; `from pkg import name` on pkg itself.
                # Parent packages, which Python imports on the way, are not counted: a package's
                # __init__ re-exporting its modules would make every sibling import a cycle.
                target = f"{module}.{imported_name}" if imported_name else module
                if target not in self.modules:
                    target = module
                if target != name:
                    self.edges[name].setdefault(target, line)

    def file(self, module: str) -> str:
        return os.path.relpath(self.modules[module][0], os.path.dirname(os.path.dirname(sb3_mbrl.__file__)))

    def where(self, importer: str, imported: str) -> str:
        return f"{importer} imports {imported} ({self.file(importer)}:{self.edges[importer][imported]})"


@pytest.fixture(scope="module")
def graph() -> Graph:
    return Graph()


def _find_cycle(nodes: List[str], edges: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One cycle of the directed graph, as ``[a, b, ..., a]``, or ``None``."""
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(node: str) -> Optional[List[str]]:
        state[node] = 1
        path.append(node)
        for succ in sorted(edges.get(node, ())):
            if state.get(succ) == 1:
                return path[path.index(succ) :] + [succ]
            if succ not in state:
                cycle = visit(succ)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(nodes):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


# ------------------------------------------------------------------------------ the rules
def test_every_module_has_a_layer(graph: Graph) -> None:
    unplaced = [name for name in graph.modules if _layer(name) is None and name not in OUTSIDE_LAYERS | NOT_YET_LAYERED]
    assert not unplaced, f"modules outside every layer (put them in a layer package): {unplaced}"
    # The exception lists only shrink: a file that moved must leave them.
    gone = sorted((OUTSIDE_LAYERS | NOT_YET_LAYERED) - set(graph.modules))
    assert not gone, f"listed as not yet layered but no longer exist, remove them from the list: {gone}"
    if "sb3_mbrl.zoo" in graph.modules and graph.modules["sb3_mbrl.zoo"][1]:
        assert "sb3_mbrl.zoo" not in NOT_YET_LAYERED, "sb3_mbrl/zoo/ is a package now: drop it from NOT_YET_LAYERED"


def test_no_import_of_a_higher_layer(graph: Graph) -> None:
    wrong = []
    for importer, targets in graph.edges.items():
        low = _layer(importer)
        if low is None:
            continue
        for imported in targets:
            high = _layer(imported)
            if imported == ROOT and low < max(LAYERS.values()):
                # `from sb3_mbrl import PETS` hides an import of an algorithm (layer 3)
                wrong.append(f"layer {low}: {graph.where(importer, imported)} (the package root re-exports the algorithms)")
            elif high is not None and high > low:
                wrong.append(f"layer {low} -> {high}: {graph.where(importer, imported)}")
    assert not wrong, "imports of a higher layer:\n" + "\n".join(sorted(wrong))


def test_algorithms_do_not_import_each_other(graph: Graph) -> None:
    wrong = [
        graph.where(importer, imported)
        for importer, targets in graph.edges.items()
        for imported in targets
        if _layer(importer) == ALGORITHM_LAYER == _layer(imported) and _top_package(importer) != _top_package(imported)
    ]
    assert not wrong, "imports between two algorithm packages:\n" + "\n".join(sorted(wrong))


def test_no_import_cycle_between_modules(graph: Graph) -> None:
    # Not-yet-layered modules are skipped (the flat rl-zoo files had lazy imports both ways,
    # zoo.py <-> optimize.py); in sb3_mbrl/zoo/ they are checked like every other module.
    nodes = [name for name in graph.modules if name not in NOT_YET_LAYERED]
    edges = {
        importer: {imported for imported in targets if imported not in NOT_YET_LAYERED}
        for importer, targets in graph.edges.items()
        if importer not in NOT_YET_LAYERED
    }
    cycle = _find_cycle(nodes, edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_import_cycle_between_packages(graph: Graph) -> None:
    edges: Dict[str, Set[str]] = defaultdict(set)
    for importer, targets in graph.edges.items():
        if _layer(importer) is None:
            continue
        for imported in targets:
            if _layer(imported) is not None and _top_package(importer) != _top_package(imported):
                edges[_top_package(importer)].add(_top_package(imported))
    cycle = _find_cycle(sorted(LAYERS), edges)
    if cycle:
        pairs = zip(cycle, cycle[1:])
        witnesses = []
        for a, b in pairs:
            importer, imported = next(
                (i, t) for i, ts in sorted(graph.edges.items()) for t in sorted(ts)
                if _layer(i) is not None and _top_package(i) == a and _top_package(t) == b
            )
            witnesses.append(graph.where(importer, imported))
        pytest.fail("import cycle between packages " + " -> ".join(cycle) + ":\n" + "\n".join(witnesses))


def test_model_layers_do_not_import_sb3(graph: Graph) -> None:
    wrong = [
        f"{name} imports {package} ({graph.file(name)}:{line})"
        for name, packages in graph.external.items()
        if (_layer(name) is not None and _layer(name) <= NO_SB3_LAYER_MAX)
        for package, line in packages.items()
        if package in SB3_PACKAGES
    ]
    assert not wrong, "planning/, envs/ and dynamics/ are pure torch + gymnasium:\n" + "\n".join(sorted(wrong))


def test_the_graph_sees_lazy_and_relative_imports(tmp_path) -> None:
    source = tmp_path / "mod.py"
    source.write_text("from . import sibling\nfrom ..common import x\ndef f():\n    import sb3_mbrl.zoo\n")
    found = _imports("sb3_mbrl.pets.mod", str(source), is_package=False)
    assert found == [("sb3_mbrl.pets", "sibling", 1), ("sb3_mbrl.common", "x", 2), ("sb3_mbrl.zoo", None, 4)]
    assert _find_cycle(["a", "b", "c"], {"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle(["a", "b"], {"a": {"b"}}) is None
