"""criproxy's modules import only downward through the layers of docs/architecture.md, and no import
circle exists among them.

Every ``import`` in every module counts, wherever it stands (module level, inside a function for a
lazy load, under ``if TYPE_CHECKING``): a lazy or type-only import up a layer is still a dependency on
the higher layer, and an import circle made lazy is still a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "criproxy"

# Lowest first. A module belongs to the layer of its longest matching prefix; a module may import its
# own layer and the ones below.
LAYERS: list[tuple[str, ...]] = [
    ("criproxy._gen", "criproxy.protos", "criproxy.errors", "criproxy.config", "criproxy.labels", "criproxy.trace",
     "criproxy.lru", "criproxy.inflight", "criproxy.logsetup", "criproxy"),  # vocabulary: no criproxy logic
    ("criproxy.translate", "criproxy.oci", "criproxy.state"),          # pure conversions and records
    ("criproxy.containerd", "criproxy.observability", "criproxy.events",
     "criproxy.nri"),                                                 # containerd client, its events; metrics; NRI
    ("criproxy.app",),                                                # the parts a call reaches
    ("criproxy.images", "criproxy.network", "criproxy.io", "criproxy.parity"),  # helpers over containerd
    ("criproxy.streaming",),                                          # exec/attach/port-forward sessions
    ("criproxy.podsandbox", "criproxy.container",
     "criproxy.nrihooks"),                                            # a sandbox's and a container's parts; NRI events
    ("criproxy.cri",),                                                # CRI semantics, one module per RPC
    ("criproxy.grpcapi",),                                            # the gRPC edge
    ("criproxy.server", "criproxy.cli", "criproxy.__main__",
     "criproxy.compare", "criproxy.ui"),                              # composition root, entry points, client tools
]


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in ROOT.rglob("*.py") if "_gen" not in p.parts}
KNOWN = set(MODULES) | {_module_name(p) for p in ROOT.rglob("*.py")}


def layer_of(module: str) -> int:
    best, found = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), i
    return found


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def imports_of(module: str) -> set[str]:
    """criproxy modules ``module`` imports: ``from pkg import sub`` counts as ``pkg.sub`` when that is a
    module, else as ``pkg``."""
    tree = ast.parse(MODULES[module].read_text(), str(MODULES[module]))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "criproxy")
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node)
            if base.split(".")[0] != "criproxy":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in KNOWN else base)
    out.discard(module)
    return out


GRAPH = {m: imports_of(m) for m in MODULES}


def test_every_module_has_a_layer() -> None:
    assert [m for m in MODULES if layer_of(m) < 0] == []


def test_no_import_from_a_lower_layer_up() -> None:
    upward = sorted(f"{m} (layer {layer_of(m)}) imports {d} (layer {layer_of(d)})"
                    for m, deps in GRAPH.items() for d in deps if layer_of(d) > layer_of(m))
    assert upward == []


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle as a path that returns to its start, or [] (iterative DFS, three colours)."""
    state: dict[str, int] = {}   # 1: on the current path, 2: done
    for start in sorted(graph):
        if start in state:
            continue
        path, stack = [start], [iter(sorted(graph.get(start, ())))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            elif nxt not in state and nxt in graph:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return []


def test_no_import_circle() -> None:
    assert find_cycle(GRAPH) == []


@pytest.mark.parametrize(("graph", "circle"), [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, False),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True),
    ({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}, False),   # a diamond is no circle
    ({"a": {"a2"}, "a2": {"b"}, "b": {"a2"}}, True),
])
def test_find_cycle_itself(graph: dict[str, set[str]], circle: bool) -> None:
    assert bool(find_cycle(graph)) is circle


def test_the_walk_sees_lazy_and_type_only_imports() -> None:
    """The checks would be blind without these edges (both kinds exist in criproxy today)."""
    assert "criproxy.app" in GRAPH["criproxy.streaming.server"]       # under TYPE_CHECKING
    assert "criproxy.streaming.handlers" in GRAPH["criproxy.streaming"]   # inside a function
