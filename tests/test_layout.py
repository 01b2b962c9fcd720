"""The package's layering (docs/architecture.md): imports run only downward, and no module imports itself back."""

import ast
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\|\s*(\d+)\s*\|\s*`(\w+)`\s*\|")


def layers(doc: Path) -> dict[str, int]:
    """package -> layer, from the table in docs/architecture.md."""
    return {m.group(2): int(m.group(1)) for m in map(ROW.match, doc.read_text().splitlines()) if m}


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(root: Path) -> dict[str, set[str]]:
    """Each module of the package under `root` -> the package's modules it imports, inside functions too."""
    paths = {module_name(root, path): path for path in root.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
                source = ".".join(base + ([node.module] if node.module else []))
                submodules = {f"{source}.{alias.name}" for alias in node.names} & paths.keys()
                targets.update(submodules or {source})
        graph[name] = {target for target in targets if target in paths and target != name}
    return graph


def upward_imports(root: Path, layer_of: dict[str, int]) -> list[str]:
    """'a.b -> c.d' for each import of a package on the same layer or above."""
    def package(module: str) -> str:
        parts = module.split(".")
        return parts[1] if len(parts) > 1 else ""

    found = []
    for module, targets in imported_modules(root).items():
        if package(module) not in layer_of:  # the public API's lazy exports stand above every layer
            continue
        found += [f"{module} -> {target}" for target in sorted(targets)
                  if package(target) != package(module) and layer_of[package(target)] >= layer_of[package(module)]]
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each import cycle, as the modules around it (depth-first search: a back edge closes a cycle)."""
    state, stack, found = {}, [], []

    def visit(module: str) -> None:
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                found.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return found


def top_level(root: Path) -> set[str]:
    return {path.stem if path.is_file() else path.name for path in root.iterdir()
            if (path.suffix == ".py" and path.stem != "__init__") or (path / "__init__.py").exists()}


def test_the_table_names_every_top_level_package_and_module_of_visreward():
    assert top_level(REPO / "visreward") == set(layers(REPO / "docs" / "architecture.md"))


def test_no_import_runs_up_or_sideways_and_no_module_imports_itself_back():
    root = REPO / "visreward"
    assert upward_imports(root, layers(REPO / "docs" / "architecture.md")) == []
    assert cycles(imported_modules(root)) == []


def test_the_checks_find_an_upward_import_and_a_cycle_in_a_package_that_has_them(tmp_path):
    root = tmp_path / "pkg"
    for folder in ("low", "high"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "low" / "a.py").write_text("def f():\n    from ..high.b import g\n")  # lazy, and up a layer
    (root / "high" / "b.py").write_text("from ..low import a\n")
    (root / "high" / "c.py").write_text("import pkg.high.b\n")
    assert upward_imports(root, {"low": 0, "high": 1}) == ["pkg.low.a -> pkg.high.b"]
    assert cycles(imported_modules(root)) == [["pkg.high.b", "pkg.low.a", "pkg.high.b"]]
    assert imported_modules(root)["pkg.high.c"] == {"pkg.high.b"}


def test_each_layer_imports_with_only_the_layers_below_it_loaded():
    """Import every module bottom-up in a fresh interpreter; after each layer, nothing above it may be loaded."""
    by_layer = {}
    for package, layer in layers(REPO / "docs" / "architecture.md").items():
        by_layer.setdefault(layer, []).append(package)
    probe = f"""
import importlib, pkgutil, sys
import visreward
order = {sorted(by_layer.items())!r}
for layer, packages in order:
    for package in packages:
        module = importlib.import_module("visreward." + package)
        for info in pkgutil.walk_packages(getattr(module, "__path__", []), module.__name__ + "."):
            importlib.import_module(info.name)
    above = {{p for l, ps in order if l > layer for p in ps}}
    loaded = sorted(m for m in sys.modules if m.split(".")[0] == "visreward" and len(m.split(".")) > 1
                    and m.split(".")[1] in above)
    assert not loaded, f"after layer {{layer}}: {{loaded}}"
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.stdout.strip() == "ok", result.stderr[-2000:]
