"""Progress output: plain lines when stderr is not a terminal, rich bars when it is."""

from __future__ import annotations

import re
from io import StringIO
from pathlib import Path

import pytest
from rich.cells import cell_len
from rich.console import Console

from tests.conftest import run_cli, write_recipe
from tests.test_search import SEARCH
from toolkit.demo import DemoCompetition
from toolkit.progress import PlainProgress, bar_line, progress_bar

COUNT_LINE = r"\d+/\d+ \(\d+%\) \d+:\d\d:\d\d"
"""``done/total (pct%) h:mm:ss`` at the start of every plain progress line."""
EPOCH_LINE = re.compile(
    rf"^(?P<bar>[^:]+): {COUNT_LINE} epoch (?P<epoch>\d+)/\d+ loss \d+\.\d+ "
    r"acc \d+\.\d+ val_loss \d+\.\d+ val_acc \d+\.\d+$"
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
    # the count lines due at 20 and 40 coincide with the epochs' lines: one line each
    assert counts == [4, 8, 12, 16, 20, 24, 28, 32, 36, 40]
    assert lines[0] == "training: 4/40 (10%) 0:00:00 epoch 1/2 loss 1.000"
    assert lines[4] == "training: 20/40 (50%) 0:00:00 epoch 1/2 val_acc 0.500"
    assert lines[5] == "training: 24/40 (60%) 0:00:00 epoch 2/2 loss 1.000"
    assert lines[-1] == "training: 40/40 (100%) 0:00:00 epoch 2/2 val_acc 0.500"


def test_plain_count_line_due_before_a_milestone_is_printed_at_the_next_step() -> None:
    out, buffer = plain_console()
    progress = PlainProgress("training", 20, out, interval=0.0)
    for _ in range(2):
        progress.advance(1, epoch="1/2")
    assert buffer.getvalue() == ""  # due at 2/20, held until the next step is counted
    progress.advance(1, epoch="1/2")
    assert buffer.getvalue().splitlines() == ["training: 2/20 (10%) 0:00:00 epoch 1/2"]
    for _ in range(7):
        progress.advance(1, epoch="1/2")
    # a last batch dropped from the epoch is counted with the epoch's line
    progress.advance(1, milestone=True, epoch="1/2", val_acc="0.500")
    progress.close()
    lines = buffer.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["2/20", "4/20", "6/20", "8/20", "11/20"]
    assert lines[-1].endswith("epoch 1/2 val_acc 0.500")


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


def terminal(width: int) -> Console:
    """A console that is a terminal ``width`` columns wide, writing to a buffer."""
    return Console(file=StringIO(), force_terminal=True, width=width)


def screen(raw: str) -> list[str]:
    """The lines a terminal shows once it has received ``raw``: the carriage returns,
    cursor-up and erase-line codes rich redraws with applied, colours dropped."""
    rows, y, x = [""], 0, 0
    for token in re.findall(r"\x1b\[[0-9;?]*[A-Za-z]|\r|\n|[^\x1b\r\n]+", raw):
        if token == "\n":
            y, x = y + 1, 0
            rows.extend([""] * (y + 1 - len(rows)))
        elif token == "\r":
            x = 0
        elif token.startswith("\x1b["):
            if token[-1] == "A":
                y -= int(token[2:-1] or 1)
            elif token[-1] == "K":
                rows[y] = "" if token[2:-1] == "2" else rows[y][:x]
        else:
            rows[y] = rows[y][:x].ljust(x) + token + rows[y][x + len(token) :]
            x += len(token)
    return [row.rstrip() for row in rows if row.strip()]


@pytest.mark.parametrize("width", [80, 100, 140])
def test_a_terminal_keeps_one_line_per_epoch_above_a_bar_that_fits(width: int) -> None:
    out = terminal(width)
    epochs, steps = 12, 100
    with progress_bar("trial 12 fold 2/5", epochs * steps, out=out) as advance:
        for epoch in range(1, epochs + 1):
            for _ in range(steps):
                advance(1, epoch=f"{epoch}/{epochs}", loss="1.234")
            metrics = {"loss": "1.198", "acc": "0.512", "val_loss": "1.301", "val_acc": "0.475"}
            advance(0, milestone=True, epoch=f"{epoch}/{epochs}", **metrics)
            if epoch == 3:  # the screen mid-run: the history above the running bar
                mid = screen(out.file.getvalue())  # type: ignore[attr-defined]
    raw = out.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b[" in raw and "━" in raw  # redrawn with colours: a live bar
    lines = screen(raw)
    assert all(cell_len(line) <= width for line in lines)
    # every epoch's line stays on the screen, in order, above the finished bar
    assert lines[:-1] == [
        f"trial 12 fold 2/5 epoch {e}/{epochs} loss 1.198 acc 0.512 val_loss 1.301 val_acc 0.475"
        for e in range(1, epochs + 1)
    ]
    assert re.fullmatch(
        r"trial 12 fold 2/5 ━{10,40} 1200/1200 \d:\d\d:\d\d \d:\d\d:\d\d epoch 12/12 loss 1\.234",
        lines[-1],
    )
    assert len(mid) == 4 and mid[2].startswith("trial 12 fold 2/5 epoch 3/12 ")
    assert " 300/1200 " in mid[3] and mid[3].endswith(" epoch 3/12 loss 1.234")


@pytest.mark.parametrize(
    ("width", "expected"),
    [
        (140, "trial 3 ━{40} 120/1200 0:01:05 0:09:45 epoch 2/12 loss 1.234"),
        (80, "trial 3 ━{25} 120/1200 0:01:05 0:09:45 epoch 2/12 loss 1.234"),
        # the bar at its narrowest, then the fields cut
        (60, "trial 3 ━{10} 120/1200 0:01:05 0:09:45 epoch 2/12 loss…"),
        # no room for the time remaining: the fields take the cells left
        (48, "trial 3 ━{10} 120/1200 epoch 2/12 loss 1.2…"),
        # no room for the bar: the times go too, and the fields are cut
        (35, "trial 3 120/1200 epoch 2/12 loss 1…"),
        (20, "trial 3 120/1200 ep…"),
        (12, "tr… 120/1200"),  # the description is cut, the count stays
    ],
)
def test_bar_line_drops_and_shortens_parts_as_the_width_shrinks(width: int, expected: str) -> None:
    line = bar_line("trial 3", 120, 1200, 65.2, 585.0, "epoch 2/12 loss 1.234", width)
    assert re.fullmatch(expected, line.plain), line.plain
    assert cell_len(line.plain) <= width


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
