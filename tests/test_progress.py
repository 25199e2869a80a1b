"""Progress output: plain lines when stderr is not a terminal, rich bars when it is."""

from __future__ import annotations

import re
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from tests.conftest import run_cli, write_recipe
from tests.test_search import SEARCH
from toolkit.demo import DemoCompetition
from toolkit.progress import PlainProgress, progress_bar

COUNT_LINE = r"\d+/\d+ \(\d+%\) \d+:\d\d:\d\d"
"""``done/total (pct%) h:mm:ss`` at the start of every plain progress line."""
EPOCH_LINE = re.compile(
    rf"^(?P<bar>[^:]+): {COUNT_LINE} epoch (?P<epoch>\d+)/\d+ train_loss \d+\.\d+ "
    r"train_acc \d+\.\d+ val_loss \d+\.\d+ val_acc \d+\.\d+$"
)


@pytest.fixture(autouse=True)
def progress_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests look at progress: on, whatever the calling shell set."""
    monkeypatch.delenv("TOOLKIT_NO_PROGRESS", raising=False)


def plain_console() -> tuple[Console, StringIO]:
    """A console writing to a buffer, which is not a terminal."""
    buffer = StringIO()
    return Console(file=buffer, force_terminal=False, width=200), buffer


def assert_clean_log(stderr: str) -> list[str]:
    """The lines of ``stderr``, checked to hold no blank line, redraw or escape code."""
    assert "\r" not in stderr and "\x1b" not in stderr, stderr[:500]
    lines = stderr.splitlines()
    assert all(line.strip() for line in lines), stderr
    return lines


def test_plain_lines_every_tenth_and_the_milestones() -> None:
    out, buffer = plain_console()
    progress = PlainProgress("training", 40, out, interval=0.0)
    for epoch in (1, 2):
        for _ in range(20):
            progress.advance(1, epoch=f"{epoch}/2", loss="1.000")
        progress.advance(0, milestone=True, epoch=f"{epoch}/2", val_acc="0.500")
    progress.close()
    lines = buffer.getvalue().splitlines()
    counts = [int(line.split()[1].split("/")[0]) for line in lines]
    assert counts == [4, 8, 12, 16, 20, 20, 24, 28, 32, 36, 40, 40]
    assert lines[0] == "training: 4/40 (10%) 0:00:00 epoch 1/2 loss 1.000"
    assert lines[5] == "training: 20/40 (50%) 0:00:00 epoch 1/2 val_acc 0.500"
    assert lines[-1] == "training: 40/40 (100%) 0:00:00 epoch 2/2 val_acc 0.500"


def test_plain_progress_bar_ends_with_a_final_line() -> None:
    out, buffer = plain_console()
    with progress_bar("features", 1000, out=out) as advance:
        for _ in range(1000):
            advance(1, clip="x")
    lines = buffer.getvalue().splitlines()
    assert 1 <= len(lines) <= 10
    assert lines[-1].startswith("features: 1000/1000 (100%) ")
    assert lines[-1].endswith(" clip x")


def test_transient_and_silenced_bars_print_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    out, buffer = plain_console()
    with progress_bar("inner", 5, transient=True, out=out) as advance:
        for _ in range(5):
            advance(1)
    monkeypatch.setenv("TOOLKIT_NO_PROGRESS", "1")
    with progress_bar("silenced", 5, out=out) as advance:
        advance(5, milestone=True, epoch="1/1")
    assert buffer.getvalue() == ""


def test_a_terminal_keeps_the_rich_bar() -> None:
    buffer = StringIO()
    out = Console(file=buffer, force_terminal=True, width=120)
    with progress_bar("training", 4, out=out) as advance:
        for _ in range(4):
            advance(1, milestone=True, epoch="1/1")
    text = buffer.getvalue()
    assert "\x1b[" in text and "━" in text
    assert "training: " not in text


@pytest.mark.slow
def test_demo_data_to_a_log_prints_plain_lines(tmp_path: Path) -> None:
    result = run_cli(
        "demo-data", tmp_path / "demo", "--train", 8, "--test", 4, cwd=tmp_path, progress=True
    )
    assert result.returncode == 0, result.stderr
    lines = assert_clean_log(result.stderr)
    assert 1 <= len(lines) <= 11
    assert re.fullmatch(r"synthesising demo clips: 12/12 \(100%\) \d+:\d\d:\d\d", lines[-1])


@pytest.mark.slow
def test_study_to_a_log_prints_epochs_and_trials_without_redrawing(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    search = SEARCH.format(n_trials=2, sampler="random", pruner="{name: none}")
    recipe = write_recipe(tmp_path, tiny_competition.root, extra=search)
    result = run_cli("run", recipe, "--output", tmp_path / "run", cwd=tmp_path, progress=True)
    assert result.returncode == 0, result.stderr
    lines = assert_clean_log(result.stderr)
    epochs = [m.group("bar", "epoch") for m in map(EPOCH_LINE.match, lines) if m]
    assert {("trial 0", "1"), ("trial 0", "2"), ("trial 1", "1"), ("trial 1", "2")} <= set(epochs)
    assert any(line.startswith("trial 0 complete: ") for line in lines)
    assert any(line.startswith("trial 1 complete: ") for line in lines)
    assert len(lines) <= 80, result.stderr
