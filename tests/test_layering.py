"""The package's layering rules (DESIGN.md's layers, issue 12 step 3), checked with ``ast``.

- No module imports a private name (``_x``, not dunder) of another module.
- The core layers import only downwards: nothing in ``operators``, ``models``, ``data`` or
  ``evaluation`` imports ``training``, ``sampling`` or ``audit``; ``training`` and ``sampling`` are
  siblings and import neither each other nor ``audit``; no core module imports a front end
  (``cli``, ``demo``, ``clidoc``, ``api``, ``export``); only the front ends import ``workflows``,
  the layer above the core.
- ``data/store.py`` imports ``Recipe`` only for typing (under ``if TYPE_CHECKING:``); it reads a
  store's recorded corruption with the schema's ``CorruptionConfig`` at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ambientmri"

FRONT_ENDS = {"cli", "demo", "demo_page", "clidoc", "api", "export", "__main__"}
CORE = ("operators", "models", "data", "evaluation", "training", "sampling", "audit", "workflows")
#: layer -> the layers it may not import.
FORBIDDEN: dict[str, set[str]] = {
    "operators": {"models", "data", "training", "sampling", "evaluation", "audit", "workflows"},
    "models": {"data", "training", "sampling", "evaluation", "audit", "workflows"},
    "data": {"training", "sampling", "evaluation", "audit", "workflows"},
    "evaluation": {"training", "sampling", "audit", "workflows"},
    "training": {"sampling", "audit", "workflows"},
    "sampling": {"training", "audit", "workflows"},
    "audit": {"workflows"},
    "workflows": set(),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside ``if TYPE_CHECKING:`` blocks."""
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                ids |= {id(n) for n in ast.walk(child)}
    return ids


def imports(source: str, module: str) -> list[tuple[int, str, list[str], bool]]:
    """``(line, imported module, names, typing_only)`` of every ``ambientmri`` import in ``source``."""
    tree = ast.parse(source)
    typing_only = _type_checking_nodes(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # the package uses absolute imports only; flag a relative one
                found.append((node.lineno, f"relative import {'.' * node.level}{node.module or ''}", [], False))
                continue
            target = node.module or ""
            if target == "ambientmri" or target.startswith("ambientmri."):
                found.append((node.lineno, target, [a.name for a in node.names], id(node) in typing_only))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("ambientmri"):
                    found.append((node.lineno, alias.name, [], id(node) in typing_only))
    return found


def violations(source: str, module: str) -> list[str]:
    """Every broken layering rule in ``source`` (the code of ``module``), one line each."""
    out = []
    layer = _layer(module)
    for line, target, names, typing_only in imports(source, module):
        if target.startswith("relative import"):
            out.append(f"{module}:{line}: a {target} (use absolute imports)")
            continue
        for name in names:
            if name.startswith("_") and not name.startswith("__") and target != module:
                out.append(f"{module}:{line} imports the private {target}.{name}")
        target_layer = _layer(target)
        if layer in FORBIDDEN and target_layer in FORBIDDEN[layer] and not typing_only:
            out.append(f"{module}:{line} ({layer}) imports {target} ({target_layer}): an upward import")
        if layer in CORE and target_layer in FRONT_ENDS:
            out.append(f"{module}:{line} ({layer}) imports the front end {target}")
        if module == "ambientmri.data.store" and "Recipe" in names and not typing_only:
            out.append(f"{module}:{line} imports Recipe at run time (typing only)")
    return out


def _sources() -> list[tuple[str, str]]:
    return [(_module_name(p), p.read_text(encoding="utf-8")) for p in sorted(PACKAGE.rglob("*.py"))]


def test_the_package_keeps_its_layers() -> None:
    sources = _sources()
    assert len(sources) > 50  # the whole package was read
    problems = [v for module, source in sources for v in violations(source, module)]
    assert problems == []


def test_store_imports_the_recipe_only_for_typing() -> None:
    source = (PACKAGE / "data" / "store.py").read_text(encoding="utf-8")
    recipe_imports = [i for i in imports(source, "ambientmri.data.store") if "Recipe" in i[2]]
    assert recipe_imports and all(typing_only for *_, typing_only in recipe_imports)


@pytest.mark.parametrize(("module", "source", "expected"), [
    ("ambientmri.sampling.x", "from ambientmri.training.losses import denoise\n", "upward import"),
    ("ambientmri.models.x", "def f():\n    from ambientmri.sampling.runs import load_run\n", "upward import"),
    ("ambientmri.training.x", "import ambientmri.sampling.generate\n", "upward import"),
    ("ambientmri.recipes", "from ambientmri.operators.corruptions import _KSpaceFurther\n", "private"),
    ("ambientmri.data.store", "from ambientmri.recipes import Recipe\n", "typing only"),
    ("ambientmri.audit.x", "from ambientmri.cli import app\n", "front end"),
])
def test_the_checker_catches_each_rule(module: str, source: str, expected: str) -> None:
    found = violations(source, module)
    assert len(found) == 1 and expected in found[0]


def test_the_checker_allows_typing_only_and_downward_imports() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from ambientmri.models.boundary import denoise\n"
        "if TYPE_CHECKING:\n    from ambientmri.recipes import Recipe\n"
    )
    assert violations(source, "ambientmri.data.store") == []
    assert violations("from ambientmri.sampling.denoisers import Denoiser\n", "ambientmri.audit.x") == []
