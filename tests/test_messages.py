"""Messages that say what happened and what to do: clips, counts, tables, pipes (issue 27)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import write_recipe
from toolkit.data.audio import decode, load_clip
from toolkit.data.dataset import load_competition
from toolkit.demo import DemoCompetition
from toolkit.errors import DataError
from toolkit.recipe.loading import load_recipe
from toolkit.recipe.schema import Data
from toolkit.registry.kinds import KINDS
from toolkit.registry.loader import load_plugins
from toolkit.report.collect import RunContents
from toolkit.report.stages import stage_times
from toolkit.training.pipeline import prepare
from toolkit.wording import count

ROOT = Path(__file__).resolve().parent.parent

RATE = 16000


def _own_folder(root: Path, ids: list[str], test_ids: list[str]) -> Path:
    """A competition folder of the user's own: ids that are file names, text labels."""
    rng = np.random.default_rng(0)
    for folder, names in (("train", ids), ("test", test_ids)):
        (root / folder).mkdir(parents=True)
        for name in names:
            wave = (0.1 * rng.standard_normal(RATE)).astype(np.float32)
            sf.write(root / folder / name, wave, RATE, subtype="PCM_16")
    labels = ["male", "female"] * (len(ids) // 2)
    lines = ["file,label", *(f"{i},{lab}" for i, lab in zip(ids, labels, strict=True))]
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    (root / "sample_submission.csv").write_text(
        "file,label\n" + "".join(f"{i},male\n" for i in test_ids)
    )
    return root


def _data(root: Path) -> Data:
    return Data(root=root, id_column="file", label_column="label", sample_rate=RATE, duration=1.0)


@pytest.fixture
def own(tmp_path: Path) -> Path:
    return _own_folder(
        tmp_path / "comp", [f"clip_{i:03d}.wav" for i in range(4)], ["test_005.wav"]
    )


@pytest.mark.parametrize("damage", ["garbage", "empty"])
def test_an_unusable_train_clip_says_to_remove_its_row_as_well(own: Path, damage: str) -> None:
    victim = own / "train" / "clip_002.wav"
    victim.write_bytes(b"" if damage == "empty" else b"not audio at all" * 8)
    with pytest.raises(DataError) as caught:
        competition = load_competition(_data(own))
        decode(competition.train_files[2])
    message = str(caught.value)
    assert message.startswith(str(victim)), message
    assert message.endswith("replace the file, or remove it and its row from train.csv"), message


def test_an_unusable_test_clip_names_the_sample_submission(own: Path) -> None:
    victim = own / "test" / "test_005.wav"
    victim.write_bytes(b"RIFF junk" * 10)
    competition = load_competition(_data(own))
    with pytest.raises(DataError, match="remove it and its row from sample_submission.csv$"):
        decode(competition.test_files[0])


def test_a_clip_of_no_listing_may_simply_be_removed(tmp_path: Path) -> None:
    loose = tmp_path / "loose.wav"
    loose.write_bytes(b"nothing")
    with pytest.raises(DataError, match="replace or remove the file$"):
        decode(loose)


def test_a_file_name_id_is_found_and_named_as_itself_when_missing(own: Path) -> None:
    competition = load_competition(_data(own))
    assert competition.test_files == [own / "test" / "test_005.wav"]
    (own / "test" / "test_005.wav").unlink()
    with pytest.raises(DataError) as caught:
        load_competition(_data(own))
    message = str(caught.value)
    assert message.endswith("(expected test_005.wav)"), message
    assert "test_005.wav.<" not in message


def test_a_plain_id_still_lists_the_extensions_it_may_take(own: Path) -> None:
    (own / "sample_submission.csv").write_text("file,label\ntest_009,male\n")
    with pytest.raises(DataError, match=r"\(expected test_009\.<wav\|flac\|"):
        load_competition(_data(own))


def _cut(path: Path, keep: float) -> None:
    """Cut a PCM WAV's data to ``keep`` of its length, its header left as it was."""
    raw = path.read_bytes()
    path.write_bytes(raw[: 44 + int((len(raw) - 44) * keep) // 2 * 2])


def test_a_cut_wav_is_decoded_with_a_warning_naming_what_is_missing(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cut.wav"
    sf.write(path, np.full(RATE, 0.25, np.float32), RATE, subtype="PCM_16")
    _cut(path, 0.1)
    wave = load_clip(path, RATE, 1, 1.0)
    assert wave.shape == (1, RATE)
    assert np.allclose(wave[0, : RATE // 10], 0.25, atol=1e-3)
    assert not wave[0, RATE // 10 + 1 :].any()  # the rest padded
    lines = capfd.readouterr().err.strip().splitlines()
    assert lines == [
        f"warning: {path}: audio ends early: its header promises 1.00 s (16000 frames), "
        "the file holds 0.10 s (1600 frames); the rest is taken as silence"
    ]


def test_a_whole_wav_decodes_without_a_word(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "whole.wav"
    sf.write(path, np.full((RATE, 2), 0.25, np.float32), RATE, subtype="FLOAT")
    sf.write(tmp_path / "whole.flac", np.full(RATE, 0.25, np.float32), RATE)
    assert decode(path)[0].shape == (2, RATE)
    assert decode(tmp_path / "whole.flac")[0].shape == (1, RATE)
    assert capfd.readouterr().err == ""


def test_counts_agree_with_their_noun() -> None:
    assert [count(n, "model") for n in (0, 1, 2)] == ["0 models", "1 model", "2 models"]
    assert count(1, "seed copy", "seed copies") == "1 seed copy"
    assert count(3, "seed copy", "seed copies") == "3 seed copies"


def test_no_message_prints_a_count_with_a_fixed_plural() -> None:
    """Every count printed as ``{n} models`` (a noun made plural in the text) goes through
    :func:`toolkit.wording.count`, so one model is never "1 models"."""
    nouns = "models|trials|clips|candidates|rows|groups|epochs|members|picks|layers|wheels|pairs"
    fixed = re.compile(r"f[\"'][^\"']*\{[^{}!]*\} (" + nouns + r")\b")  # not {id!r} rows
    found = [
        f"{path}:{number}: {line.strip()}"
        for folder in (ROOT / "toolkit", ROOT / "leaderboard")
        for path in sorted(folder.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if fixed.search(line)
    ]
    assert found == []


def test_a_fully_cached_run_says_stems_were_not_needed(
    tmp_path: Path, tiny_competition: DemoCompetition
) -> None:
    recipe = write_recipe(tmp_path, tiny_competition.root)
    loaded = load_recipe(recipe)
    first = prepare(loaded.recipe, loaded.registry).stats.as_dict()
    again = prepare(loaded.recipe, loaded.registry).stats.as_dict()
    assert first["stems_computed"] > 0 and again["stems_computed"] == again["stems_reused"] == 0

    def separation(stats: dict[str, float]) -> str:
        contents = RunContents(tmp_path, loaded.recipe, False, "accuracy", 1, stats=stats)
        return next(s.detail for s in stage_times(contents) if s.name == "separation")

    clips = tiny_competition.n_train + tiny_competition.n_test
    assert separation(first) == f"stems: {clips} computed, 0 reused from the cache"
    assert separation(again) == "stems: not needed, every clip's features were cached"


README_KINDS = {
    "separators": "separators",
    "features": "feature_extractors",
    "augmenters": "augmenters",
    "backbones": "backbones",
}
"""How the README's list of built-ins names each kind."""


def test_the_readme_lists_every_built_in_plugin_under_its_kind() -> None:
    text = (ROOT / "README.md").read_text()
    paragraph = text[text.index("Built-ins: ") :].split("\n\n")[0].removeprefix("Built-ins: ")
    heads = "|".join(README_KINDS)
    parts = re.split(rf"(?:^|; )({heads}) ", " ".join(paragraph.split()))
    pairs = zip(parts[1::2], parts[2::2], strict=True)
    listed = {README_KINDS[head]: set(re.findall(r"`(\w+)`", names)) for head, names in pairs}
    registry = load_plugins([])
    for kind in KINDS:
        missing = set(registry.list_names(kind)) - listed.get(kind, set())
        assert not missing, f"README's built-ins omit {kind} {sorted(missing)}"


def test_plugins_fit_80_columns_a_section_per_kind_and_two_lines_a_row() -> None:
    env = {**os.environ, "COLUMNS": "80", "TOOLKIT_LOAD_PLUGINS": ""}
    listing = subprocess.run(
        [sys.executable, "-m", "toolkit", "plugins"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert max(len(line) for line in listing) <= 80
    assert [line for line in listing if line.strip() in KINDS] == list(KINDS)
    rows: dict[tuple[str, str], int] = {}  # (kind, name) -> lines the row takes
    kind = row = ""
    for line in filter(str.strip, listing):
        if line.strip() in KINDS:
            kind = line.strip()
        elif line.startswith(" "):  # a description's next line
            rows[kind, row] += 1
        elif not line.startswith("name "):  # the header
            row = line.split()[0]
            rows[kind, row] = 1
    registry = load_plugins([])
    assert set(rows) == {(k, name) for k in KINDS for name in registry.list_names(k)}
    assert max(rows.values()) <= 2, rows


@pytest.mark.parametrize("both", [False, True], ids=["stdout", "stdout-and-stderr"])
def test_a_closed_pipe_ends_the_command_quietly_as_unix_tools_do(both: bool) -> None:
    """``toolkit plugins | head -1`` (or ``2>&1 | head``): the reader is gone before the
    listing is written; the command ends with no word and status 141, as ``ls`` would."""
    env = {**os.environ, "TOOLKIT_LOAD_PLUGINS": ""}
    proc = subprocess.Popen(
        [sys.executable, "-m", "toolkit", "plugins"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if both else subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.close()  # the reader goes away (head has its lines) before toolkit writes
    stderr = "" if both else proc.stderr.read()  # type: ignore[union-attr]
    assert proc.wait(timeout=120) == 141
    assert stderr == ""
