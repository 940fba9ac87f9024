"""The package's shape, checked on its source with ``ast`` (ARCHITECTURE.md says why each rule exists).

* Imports point down the data flow: a package never imports a later one (``LAYERS``), and no two
  modules import each other, directly or through others (imports inside functions count too).
* No private name (``_name``) of one module is used by another.
* Functions stay short (<= 60 lines) and take <= 8 parameters (a dataclass beyond that).
* A module that imports detectron2 first imports ``fetalheart._compat`` (the shims), and no other does.
* The statistics modules start without torch or detectron2.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "fetalheart"

#: The data flow, earliest first: a module may import its own layer and the layers before it, never a later one.
LAYERS = (
    "fetalheart",  # the package's face: __version__ only
    "fetalheart._compat",  # detectron2 shims
    "fetalheart._startup",  # tools' switch into .venv; the .pth hook that applies the shims before detectron2
    "fetalheart.utils",
    "fetalheart.classes",
    "fetalheart.collect_env",  # provenance: versions, env.json
    "fetalheart.video",
    "fetalheart.annotations",
    "fetalheart.phantom",  # writes videos (video) with LabelMe ground truth (annotations)
    "fetalheart.enhance",  # uses the ultrasound sector of video.sector
    "fetalheart.data",
    "fetalheart.config",
    "fetalheart.modeling",
    "fetalheart.evaluation",  # below engine: the trainer evaluates while it trains
    "fetalheart.engine",
    "fetalheart.inference",
    "fetalheart.pipeline",
    "fetalheart.cli",
)

MAX_FUNCTION_LINES = 60
MAX_PARAMETERS = 8
#: Functions allowed to be longer than MAX_FUNCTION_LINES, with the reason. (None today.)
LONG_FUNCTIONS: dict[str, str] = {}
#: Functions allowed more than MAX_PARAMETERS parameters, with the reason. (None today.)
MANY_PARAMETERS: dict[str, str] = {}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, tuple[Path, ast.Module]]:
    return {_module_name(p): (p, ast.parse(p.read_text(encoding="utf-8"), str(p)))
            for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def _imports(tree: ast.Module) -> list[tuple[ast.AST, str, list[str]]]:
    """Every fetalheart import in a module, wherever it is: (node, module, names imported from it)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node, a.name, []) for a in node.names if a.name.split(".")[0] == "fetalheart"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "fetalheart":
            found.append((node, node.module, [a.name for a in node.names]))
    return found


def _targets(module: str, names: list[str]) -> list[str]:
    """The modules an import statement loads: ``from pkg import sub`` loads ``pkg.sub``."""
    subs = [f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES]
    return subs + ([module] if len(subs) < len(names) or not names else [])


def _graph() -> dict[str, set[str]]:
    graph = {}
    for name, (_, tree) in MODULES.items():
        graph[name] = {t for _, mod, names in _imports(tree) for t in _targets(mod, names) if t != name}
    return graph


def _layer(module: str) -> int:
    return max(i for i, prefix in enumerate(LAYERS) if module == prefix or module.startswith(prefix + "."))


def test_every_folder_is_a_regular_package():
    # setup.cfg's ``packages = find:`` ships only folders with an __init__.py (an editable install hides this).
    missing = [str(d.relative_to(ROOT)) for d in PACKAGE.rglob("*") if d.is_dir() and any(d.glob("*.py"))
               and not (d / "__init__.py").is_file()]
    assert not missing, f"add __init__.py to: {missing}"


def test_layers_cover_every_module():
    unplaced = [m for m in MODULES if m != "fetalheart" and _layer(m) == 0]
    assert not unplaced, f"add these to LAYERS (and ARCHITECTURE.md): {unplaced}"


def test_no_import_of_a_later_layer():
    bad = [f"{m} imports {t}" for m, targets in _graph().items() for t in sorted(targets) if _layer(t) > _layer(m)]
    assert not bad, "an earlier stage imports a later one:\n" + "\n".join(bad)


def test_no_import_cycle():
    graph = _graph()
    cycles, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(path[path.index(nxt):] + [nxt]) if nxt in path else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def _private_uses(name: str, tree: ast.Module) -> list[str]:
    """Private names of other fetalheart modules used here: imported, or reached as ``module._name``."""
    uses, aliases = [], {}
    for node, mod, _ in _imports(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if f"{mod}.{alias.name}" in MODULES:  # a submodule: a module object, not a name
                    aliases[alias.asname or alias.name] = f"{mod}.{alias.name}"
                elif alias.name.startswith("_") and not alias.name.startswith("__") and mod != name:
                    uses.append(f"from {mod} import {alias.name}")
        else:
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")
                and f"{aliases[node.value.id]}.{node.attr}" not in MODULES):
            uses.append(f"{node.value.id}.{node.attr}")
    return uses


def test_no_private_name_used_outside_its_module():
    # A private *module* (fetalheart._compat) is the package's own: importing it is allowed.
    bad = [f"{m}: {u}" for m, (_, tree) in MODULES.items() for u in _private_uses(m, tree)]
    assert not bad, "private names used across modules:\n" + "\n".join(bad)


def _functions() -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    found = []
    for name, (_, tree) in MODULES.items():
        stack = [(tree, name)]
        while stack:
            node, prefix = stack.pop()
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    qual = f"{prefix}.{child.name}"
                    if not isinstance(child, ast.ClassDef):
                        found.append((qual, child))
                    stack.append((child, qual))
                else:
                    stack.append((child, prefix))
    return found


def test_functions_are_short():
    long = {q: f.end_lineno - f.lineno + 1 for q, f in _functions() if f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES}
    unexplained = {q: n for q, n in long.items() if q not in LONG_FUNCTIONS}
    assert not unexplained, f"functions over {MAX_FUNCTION_LINES} lines (split by job): {unexplained}"
    assert not set(LONG_FUNCTIONS) - set(long), "LONG_FUNCTIONS lists functions that are short now"


def _parameters(f: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = f.args
    names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs) if x.arg not in ("self", "cls")]
    return len(names) + (a.vararg is not None) + (a.kwarg is not None)


def test_functions_take_few_parameters():
    many = {q: _parameters(f) for q, f in _functions() if _parameters(f) > MAX_PARAMETERS}
    unexplained = {q: n for q, n in many.items() if q not in MANY_PARAMETERS}
    assert not unexplained, f"functions with more than {MAX_PARAMETERS} parameters (use a dataclass): {unexplained}"


def _imports_detectron2(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "detectron2" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "detectron2":
            return True
    return False


def _imports_compat_first(tree: ast.Module) -> bool:
    """``import fetalheart._compat`` (or ``from fetalheart import _compat``) at module level, before any
    module-level detectron2 import."""
    for node in tree.body:
        if isinstance(node, ast.Import) and any(a.name == "fetalheart._compat" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.module == "fetalheart" and any(
                a.name == "_compat" for a in node.names):
            return True
        if isinstance(node, (ast.Import, ast.ImportFrom)) and _imports_detectron2(ast.Module([node], [])):
            return False
    return False


def test_detectron2_importers_apply_the_shims_first():
    missing = [m for m, (_, tree) in MODULES.items() if _imports_detectron2(tree) and not _imports_compat_first(tree)]
    assert not missing, "import fetalheart._compat before detectron2 in: " + ", ".join(missing)
    # ... and only they do: importing fetalheart patches no other library.
    needless = [m for m, (_, tree) in MODULES.items() if _imports_compat_first(tree) and not _imports_detectron2(tree)
                and m not in ("fetalheart.collect_env",)]  # collect_env lists the shims
    assert not needless, "these modules apply the shims without importing detectron2: " + ", ".join(needless)


@pytest.mark.parametrize("modules", ["fetalheart.evaluation.metrics, fetalheart.evaluation.compare",
                                     "fetalheart.evaluation.pooling, fetalheart.evaluation.report"])
def test_statistics_modules_import_neither_torch_nor_detectron2(modules):
    code = (f"import {modules}, sys; bad = [m for m in ('torch', 'detectron2') if m in sys.modules]; "
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_compare_runs_tool_starts_without_torch():
    code = ("import runpy, sys; sys.argv = ['compare_runs.py', '--help']\n"
            "try:\n    runpy.run_path('tools/compare_runs.py', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "bad = [m for m in ('torch', 'detectron2') if m in sys.modules]\nassert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
