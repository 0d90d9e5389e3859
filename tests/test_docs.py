"""The user guide stays true to the code: the CLI reference is generated from the app, every
built-in recipe is explained, every user-facing error message and exit code is in the
troubleshooting page, and relative links between docs resolve. Pure text and AST work: fast."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from ambientmri.clidoc import render_cli_reference

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ambientmri"
DOCS = ROOT / "docs"

# Exceptions meant for users (errors.py's AmbientError family and the file/numeric errors the
# commands raise on purpose): documented wherever they are raised.
USER_ERRORS = {
    "InputError", "RecipeError", "OutputError", "ModelConfigError", "FileNotFoundError", "FileExistsError",
    "IsADirectoryError", "FloatingPointError", "TrainingInterrupted",
}
# Modules that drive the commands: their ValueErrors are user-facing too. ValueErrors elsewhere are
# argument checks of library functions, covered as a group ("Other ValueErrors").
DRIVER_MODULES = {
    "cli/common.py", "cli/data.py", "cli/models.py", "cli/scoring.py", "cli/sharing.py",
    "demo.py", "training/run.py", "training/trainer.py", "training/data.py",
    "training/distributed.py", "sampling/reconstruct.py", "audit/run.py", "audit/calibration.py", "api.py",
}


def test_cli_reference_in_sync() -> None:
    expected = render_cli_reference()
    actual = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert actual == expected, (
        "docs/cli.md is out of date with the typer app in ambientmri/cli/; regenerate it with\n"
        "    python -m ambientmri.clidoc > docs/cli.md"
    )


def test_cli_reference_lists_every_command() -> None:
    import typer

    from ambientmri.cli import app

    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    for name in typer.main.get_command(app).commands:  # type: ignore[attr-defined]
        assert f"## `ambientmri {name}`" in text


def test_every_builtin_recipe_is_documented() -> None:
    text = (DOCS / "recipes.md").read_text(encoding="utf-8")
    names = sorted(p.stem for p in (PACKAGE / "builtin_recipes").glob("*.yaml"))
    assert names
    missing = [n for n in names if f"### `{n}`" not in text]
    assert not missing, f"docs/recipes.md has no '### `NAME`' section for the built-in recipe(s) {missing}"
    resources = (DOCS / "resources.md").read_text(encoding="utf-8")
    missing = [n for n in names if f"`{n}`" not in resources]
    assert not missing, f"docs/resources.md gives no numbers for the built-in recipe(s) {missing}"


# -- troubleshooting ---------------------------------------------------------------------------
def _literal(node: ast.AST | None) -> str:
    """A message expression as text, with every formatted or computed part replaced by '…'."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "…" for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _literal(node.left) + _literal(node.right)
    return "…"


def _message(call: ast.Call) -> str:
    name = getattr(call.func, "id", getattr(call.func, "attr", ""))
    args = call.args
    if name in ("InputError", "RecipeError", "OutputError") and len(args) == 2:
        return f"{_literal(args[0])}: {_literal(args[1])}"
    return _literal(args[0]) if args else ""


def _error_sites() -> list[tuple[str, int, str]]:
    """(module, line, message template) of every user-facing error the package raises."""
    sites = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            call = None
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                name = getattr(node.exc.func, "id", getattr(node.exc.func, "attr", ""))
                if name in USER_ERRORS or (name == "ValueError" and module in DRIVER_MODULES):
                    call = node.exc
            elif isinstance(node, ast.ClassDef) and node.name in USER_ERRORS:
                for sub in ast.walk(node):  # the message an exception class builds itself
                    if (isinstance(sub, ast.Call) and getattr(sub.func, "attr", "") == "__init__"
                            and isinstance(getattr(sub.func, "value", None), ast.Call)):
                        text = _message(sub)
                        if re.search("[A-Za-z]", text):
                            sites.append((module, sub.lineno, text))
            if call is not None:
                text = _message(call)
                if re.search("[A-Za-z]", text):  # a re-raised message (str(exc)) has no text of its own
                    sites.append((module, node.lineno, text))
    return sites


def _fragments() -> list[str]:
    """Backticked text in the first cell of the troubleshooting tables, outside parentheses
    (parenthesised backticks are examples of the full message, not keys)."""
    fragments = []
    for line in (DOCS / "troubleshooting.md").read_text(encoding="utf-8").splitlines():
        if not line.startswith("| `"):
            continue
        cell = line[2:].split(" | ")[0]
        depth = 0
        for i, part in enumerate(cell.split("`")):
            if i % 2:
                if depth == 0:
                    fragments.append(part)
            else:
                depth += part.count("(") - part.count(")")
    return fragments


def test_every_user_error_is_documented() -> None:
    sites = _error_sites()
    fragments = _fragments()
    assert len(sites) > 100 and len(fragments) > 50  # the scan itself works
    undocumented = [f"{m}:{n}: {t}" for m, n, t in sites if not any(f in t for f in fragments)]
    assert not undocumented, (
        "error messages without an entry in docs/troubleshooting.md (add a row whose first cell holds a "
        "stable `fragment` of the message):\n  " + "\n  ".join(undocumented)
    )


def test_every_troubleshooting_entry_matches_a_message() -> None:
    """No stale entries: each fragment still occurs in some message the package can raise or print."""
    texts = [t for _, _, t in _error_sites()]
    for path in sorted(PACKAGE.rglob("*.py")):  # also argument checks, printed lines, built messages
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant | ast.JoinedStr) or (
                isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add)
            ):
                texts.append(_literal(node))
    stale = [f for f in _fragments() if f.startswith("Exit") or not any(f in t for t in texts)]
    assert not stale, f"docs/troubleshooting.md keys that match no message in the code: {stale}"


def test_every_exit_code_is_documented() -> None:
    tree = ast.parse("\n".join(p.read_text(encoding="utf-8") for p in sorted((PACKAGE / "cli").glob("*.py"))))
    constants = {
        t.id: n.value.value
        for n in tree.body
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
        for t in n.targets
        if isinstance(t, ast.Name)
    }
    codes = {0, 2}  # success; the option parser's usage errors
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "Exit":
            arg = node.args[0] if node.args else ast.Constant(0)
            codes.add(arg.value if isinstance(arg, ast.Constant) else constants[arg.id])
    table = (DOCS / "troubleshooting.md").read_text(encoding="utf-8").split("## Exit codes", 1)[1].split("\n## ")[0]
    documented = {int(m) for m in re.findall(r"^\| (\d+) \|", table, flags=re.M)}
    assert codes <= documented, f"exit codes used by ambientmri/cli/ but not documented: {codes - documented}"
    assert {1, 3, 130} <= codes


def test_relative_links_between_docs_resolve() -> None:
    broken = []
    for doc in sorted(DOCS.glob("*.md")):
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text(encoding="utf-8")):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.name}: {target}")
    assert not broken, f"broken relative links: {broken}"
