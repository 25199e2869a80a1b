"""The size rules of the code (issue 28): no module over 500 lines; no function over 80 lines
in the study, the ensemble, the trainer, the leaderboard and the CLI; the CLI a package of
one module per group of commands."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MODULE_LINES = 500
FUNCTION_LINES = 80

PACKAGES = ("toolkit", "plugins", "leaderboard")
"""Where no module may be longer than :data:`MODULE_LINES`."""

SHORT_FUNCTIONS = (
    "toolkit/study",
    "toolkit/ensemble",
    "toolkit/training/trainer.py",
    "leaderboard",
    "toolkit/cli",
)
"""Where no function may be longer than :data:`FUNCTION_LINES` (its signature, docstring and
body; decorators not counted)."""


def modules(*places: str) -> list[Path]:
    """The Python files under each place (a folder or one file), relative to the project."""
    found: list[Path] = []
    for place in places:
        path = ROOT / place
        found.extend([path] if path.is_file() else sorted(path.rglob("*.py")))
    assert found, places
    return found


def long_functions(path: Path, root: Path = ROOT) -> list[str]:
    """``file:line name (N lines)`` for each function of ``path`` over the limit."""
    tree = ast.parse(path.read_text(), str(path))
    return [
        f"{path.relative_to(root)}:{node.lineno} {node.name} ({length} lines)"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (length := (node.end_lineno or node.lineno) - node.lineno + 1) > FUNCTION_LINES
    ]


def test_sizes() -> None:
    too_long = [
        f"{path.relative_to(ROOT)} ({n} lines)"
        for path in modules(*PACKAGES)
        if (n := len(path.read_text().splitlines())) > MODULE_LINES
    ]
    assert not too_long, f"modules over {MODULE_LINES} lines: {too_long}"
    functions = [entry for path in modules(*SHORT_FUNCTIONS) for entry in long_functions(path)]
    assert not functions, f"functions over {FUNCTION_LINES} lines: {functions}"


def test_the_cli_is_a_package_of_thin_command_modules() -> None:
    cli = ROOT / "toolkit" / "cli"
    groups = {"run.py", "runs.py", "deploy.py", "data.py", "plugins.py"}
    assert groups <= {p.name for p in cli.glob("*.py")}
    for path in modules("toolkit/cli"):
        assert len(path.read_text().splitlines()) <= 200, path


def test_the_size_check_finds_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"        x{i} = {i}" for i in range(FUNCTION_LINES))
    path = tmp_path / "probe.py"
    short = "    def short(self):\n        pass\n"
    path.write_text(f"class A:\n    def long(self):\n{body}\n\n{short}")
    assert long_functions(path, tmp_path) == [f"probe.py:2 long ({FUNCTION_LINES + 1} lines)"]
