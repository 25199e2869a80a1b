"""New files and folders follow the umask, as any tool's do: a run, its report, a prediction
and an export, made by real subprocesses under umask 022 and 027, are 0644/0755 and
0640/0750 (never 0600/0700 because they were written as temporary files, then renamed)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.conftest import run_cli, write_recipe
from toolkit.demo import DemoCompetition

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["022", "027"])
def test_every_file_and_folder_a_command_makes_has_the_umasks_mode(
    umask: int, tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    recipe = write_recipe(tmp_path, tiny_competition.root)
    before = set(tmp_path.rglob("*"))
    run_dir = tmp_path / "run"
    commands = [
        ("run", recipe, "--output", run_dir),
        ("report", run_dir),
        ("predict", run_dir, tiny_competition.root / "test", "-o", tmp_path / "new" / "s.csv"),
        ("export", run_dir, tmp_path / "export", "--no-wheels"),
    ]
    for args in commands:
        done = run_cli(*args, cwd=tmp_path, umask=umask)
        assert done.returncode == 0, (args, done.stderr)
    made = sorted(set(tmp_path.rglob("*")) - before)
    wanted = {
        run_dir / "submission.csv",
        run_dir / "best.pt",
        run_dir / "report.html",
        tmp_path / "leaderboard.db",
        tmp_path / "new" / "s.csv",
        tmp_path / "export",
        tmp_path / "export" / "export.json",
        tmp_path / "export" / "best.pt",
    }
    assert wanted <= set(made)
    wrong = {}
    for path in made:
        mode = stat.S_IMODE(path.lstat().st_mode)
        expected = (0o777 if path.is_dir() else 0o666) & ~umask
        if mode != expected:
            wrong[str(path.relative_to(tmp_path))] = f"{mode:o} (expected {expected:o})"
    assert not wrong, wrong
