"""The shape of the code: rules about how its modules depend on each other."""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PACKAGES = {
    "toolkit": "toolkit",
    "plugins": "toolkit.plugins",
    "leaderboard": "toolkit.leaderboard",
}
"""Source folder -> the import name it ships under (see pyproject.toml's package-dir)."""


def module_files() -> dict[str, Path]:
    """Every module of the project and the plugins by its import name."""
    modules: dict[str, Path] = {}
    for folder, name in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join([name, *parts])] = path
    return modules


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The names a statement imports, as dotted candidates (a module or a name in one)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: from the module's package, up level - 1 more
        package = module.split(".") if is_package else module.split(".")[:-1]
        anchor = package[: len(package) - (node.level - 1)]
        base = ".".join([*anchor, base]) if base else ".".join(anchor)
    return [f"{base}.{alias.name}" for alias in node.names] + [base]


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its file (at the top, inside
    functions, under ``TYPE_CHECKING``): ``from a.b import c`` names ``a.b.c`` when that
    is a module, else ``a.b``."""
    modules = module_files()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            names = _imported(node, module, is_package)
            if isinstance(node, ast.ImportFrom):
                base = names.pop()
                targets = [n if n in modules else base for n in names]
            else:
                targets = names
            for target in targets:
                while target and target not in modules:  # import a.b.c of a name: its module
                    target = target.rpartition(".")[0]
                if target and target != module:
                    graph[module].add(target)
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every module's shortest import circle back to itself, each circle once."""
    cycles: dict[frozenset[str], list[str]] = {}
    for start in sorted(graph):
        back: dict[str, str] = {}
        queue = deque([start])
        while queue:
            node = queue.popleft()
            if start in graph[node]:
                path = [node]
                while path[-1] != start:
                    path.append(back[path[-1]])
                cycle = [*reversed(path), start]
                cycles.setdefault(frozenset(cycle), cycle)
                break
            for nxt in sorted(graph[node]):
                if nxt not in back and nxt != start:
                    back[nxt] = node
                    queue.append(nxt)
    return sorted(cycles.values())


def test_the_graph_sees_every_kind_of_import() -> None:
    """The graph knows the project's modules and finds top-level, function-level,
    ``TYPE_CHECKING`` and relative imports (a graph that misses them proves nothing)."""
    graph = import_graph()
    # top level: the CLI's study command imports the workflow
    assert "toolkit.workflow" in graph["toolkit.cli.app"] or any(
        "toolkit.workflow" in graph[m] for m in graph if m.startswith("toolkit.cli")
    )
    # inside a function and under TYPE_CHECKING: the finetune plugin's network
    assert "toolkit.plugins.backbones.finetune_net" in graph["toolkit.plugins.backbones.finetune"]
    # relative: the leaderboard package's own modules
    assert "toolkit.leaderboard.store" in graph["toolkit.leaderboard"]
    # a made-up circle is found
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_import_circle() -> None:
    """No module of toolkit, its plugins or its leaderboard imports itself through others."""
    cycles = import_cycles(import_graph())
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _tree(module: str) -> ast.Module:
    path = module_files()[module]
    return ast.parse(path.read_text(), str(path))


def test_only_the_facade_s_users_know_the_study() -> None:
    """The worker, the objective and the ensemble are given the study's parts they need;
    only the study package's export and the workflow import :class:`StudyRun`."""
    users = set()
    for module in module_files():
        for node in ast.walk(_tree(module)):
            if isinstance(node, ast.ImportFrom) and (
                node.module == "toolkit.study.run" or any(a.name == "StudyRun" for a in node.names)
            ):
                users.add(module)
    assert users == {"toolkit.study", "toolkit.workflow"}




def _names_a_run_dir(annotation: ast.expr | None) -> bool:
    return annotation is not None and "RunDir" in ast.unparse(annotation)


def test_layout_means_only_the_streams_layout() -> None:
    """A run directory (:class:`~toolkit.runs.run_dir.RunDir`) is never called ``layout``:
    that word is the feature streams' :class:`~toolkit.training.fusion.Layout`."""
    found = []
    for module in sorted(module_files()):
        for node in ast.walk(_tree(module)):
            if isinstance(node, ast.FunctionDef):
                named = [a for a in [*node.args.args, *node.args.kwonlyargs] if a.arg == "layout"]
                if any(_names_a_run_dir(a.annotation) for a in named) or (
                    node.name == "layout" and _names_a_run_dir(node.returns)
                ):
                    found.append(f"{module}:{node.lineno} {node.name}")
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                value = ast.unparse(node.value) if node.value is not None else ""
                annotated = isinstance(node, ast.AnnAssign) and _names_a_run_dir(node.annotation)
                if any(ast.unparse(t).endswith("layout") for t in targets) and (
                    value.startswith("RunDir(") or annotated
                ):
                    found.append(f"{module}:{node.lineno}")
    assert not found, "a RunDir called layout: " + ", ".join(found)


def private_imports(source: str) -> list[str]:
    """The private names (``_name``, not dunders) a module's code imports from the toolkit."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("toolkit"):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{node.module}.{alias.name}")
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "toolkit"
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"toolkit.{node.attr}")
    return found


def test_no_test_imports_a_private_name_of_the_toolkit() -> None:
    offenders = {
        path.name: names
        for path in sorted((ROOT / "tests").rglob("*.py"))
        if (names := private_imports(path.read_text()))
    }
    assert not offenders, offenders


def test_the_private_import_check_finds_one() -> None:
    text = (
        "import toolkit\nfrom toolkit.runs.run_dir import RunDir, _remove\n"
        "from toolkit import __version__\nprint(toolkit.__version__, toolkit._secret)\n"
    )
    assert private_imports(text) == ["toolkit.runs.run_dir._remove", "toolkit._secret"]


COMMANDS = ("toolkit.cli", "toolkit.__main__", "toolkit.leaderboard.cli")
"""The command line: the only code that may end the process (with an exit code)."""

EXITS = {"sys.exit", "exit", "quit", "os._exit"}
TRACEBACK_PRINTERS = {"print_exc", "print_exception", "print_tb", "print_stack", "print_last"}
ENDING_EXCEPTIONS = ("SystemExit", "typer.Exit", "typer.Abort", "click.exceptions.Exit")


def _is_script_entry(node: ast.AST) -> bool:
    """``if __name__ == "__main__":``, where a file run as a script of its own may exit."""
    return isinstance(node, ast.If) and ast.unparse(node.test) in (
        "__name__ == '__main__'",
        "'__main__' == __name__",
    )


def exits_and_tracebacks(source: str) -> list[str]:
    """``line: code`` of each call that ends the interpreter or prints a traceback, and each
    ``raise`` of an exit, in ``source`` (a script's ``__main__`` block aside)."""
    found: list[str] = []
    queue: deque[ast.AST] = deque([ast.parse(source)])
    while queue:
        node = queue.popleft()
        if _is_script_entry(node):
            continue
        queue.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            if name in EXITS or name.rpartition(".")[2] in TRACEBACK_PRINTERS:
                found.append(f"{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Raise) and node.exc is not None:
            raised = ast.unparse(node.exc)
            if raised.startswith(ENDING_EXCEPTIONS):
                found.append(f"{node.lineno}: raise {raised}")
    return sorted(found, key=lambda entry: int(entry.split(":")[0]))


def test_nothing_in_the_library_exits_or_prints_a_traceback() -> None:
    """Only the command line ends the process: the library (``toolkit.run`` included) raises
    one-line exceptions, and keeps a traceback in a file (:func:`toolkit.errors.write_traceback`)
    rather than printing it, so that a notebook's kernel never exits."""
    offenders = {
        module: found
        for module, path in module_files().items()
        if not module.startswith(COMMANDS) and (found := exits_and_tracebacks(path.read_text()))
    }
    assert not offenders, offenders


def test_the_exit_check_finds_each_kind() -> None:
    text = (
        "import sys, traceback, typer\n"
        "def f():\n"
        "    sys.exit(2)\n"
        "    traceback.print_exc()\n"
        "    raise typer.Exit(1)\n"
        "    console.print_exception()\n"
        "    raise SystemExit\n"
        "if __name__ == '__main__':\n"
        "    sys.exit(f())\n"
    )
    assert exits_and_tracebacks(text) == [
        "3: sys.exit(2)",
        "4: traceback.print_exc()",
        "5: raise typer.Exit(1)",
        "6: console.print_exception()",
        "7: raise SystemExit",
    ]
