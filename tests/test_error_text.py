"""One helper for the one-line text of an exception, one for prefixing it with the file or
key it is about (issue 28), used wherever the toolkit says what an exception was."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from toolkit.errors import RecipeError, error_at, error_line
from toolkit.training.model_run import ending

ROOT = Path(__file__).resolve().parent.parent

SEPARATE_INTERPRETER = {"toolkit/spleeter/tf_worker.py"}
"""Run by another virtualenv's Python, which cannot import the toolkit."""


@pytest.mark.parametrize(
    ("exc", "typed", "text"),
    [
        (ValueError("bad value\nmore detail"), False, "bad value"),
        (ValueError("bad value\nmore detail"), True, "ValueError: bad value"),
        (RuntimeError("\n\n  the real reason  \nrest"), True, "RuntimeError: the real reason"),
        (KeyError(), False, "KeyError"),
        (OSError("   \n  "), True, "OSError"),
    ],
)
def test_the_one_line_text_of_an_exception(exc: BaseException, typed: bool, text: str) -> None:
    assert error_line(exc, typed=typed) == text


def test_the_text_after_the_file_or_key_it_is_about() -> None:
    assert error_at("recipe.yaml", RecipeError("train.lr: must be > 0")) == (
        "recipe.yaml: train.lr: must be > 0"
    )
    too_few = ValueError("too few\nclips")
    assert error_at("split", too_few, typed=True) == "split: ValueError: too few"
    assert error_at(None, "already a line") == "already a line"


def test_a_failed_model_row_shows_the_first_line_that_says_something() -> None:
    # a message starting with a line break used to leave the row's error "ValueError: "
    assert ending(ValueError("\nthe clip has no samples\n(detail)"), ()) == (
        "failed",
        "ValueError: the clip has no samples",
    )


def test_no_module_composes_the_text_of_an_exception_itself() -> None:
    idioms = re.compile(
        r"str\((exc|error|err|e|last)\)(\.strip\(\))?\.splitlines\(\)\[0\]"
        r"|type\((exc|error|err|e)\)\.__name__\}: \{"
    )
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for folder in ("toolkit", "plugins", "leaderboard")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if str(path.relative_to(ROOT)) not in SEPARATE_INTERPRETER | {"toolkit/errors.py"}
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if idioms.search(line)
    ]
    assert not found, found
