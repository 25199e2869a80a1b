"""What the cached stages take from a plugin's registration: rates, channels, versions."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from toolkit.data.audio import fix_length, load_clip, resample
from toolkit.data.preprocess import Preprocessor
from toolkit.demo import synthesize_clip
from toolkit.recipe.validation import validate_recipe
from toolkit.registry.loader import load_plugins
from toolkit.registry.table import Registry

LEFT_SEPARATOR = '''
from toolkit import Separator, hookimpl

SEEN = []
"""The shape of every batch the separator was given."""


class Left(Separator):
    """Keeps the left channel."""

    def separate(self, waves):
        SEEN.append(waves.shape)
        return waves[:, :1]


@hookimpl
def register_separators(register):
    register("left", Left, input_sample_rate=8000, input_channels=2, version="3")
'''


def make_recipe(registry: Registry, tmp_path: Path, separator: dict[str, Any], **data: Any) -> Any:
    """A validated recipe over ``tmp_path`` with ``separator`` and default mel features."""
    raw = {
        "name": "stages",
        "data": {"root": str(tmp_path / "data"), "sample_rate": 16000, "duration": 1.0, **data},
        "separator": separator,
        "features": {"name": "mel"},
        "cache": {"dir": str(tmp_path / "cache")},
    }
    return validate_recipe(raw, registry)


def test_separator_is_fed_the_rate_and_channels_it_registered(tmp_path: Path) -> None:
    plugin = tmp_path / "left.py"
    plugin.write_text(LEFT_SEPARATOR)
    registry = load_plugins([plugin])
    entry = registry.get_info("separators", "left")
    assert (entry.input_sample_rate, entry.input_channels, entry.version) == (8000, 2, "3")
    rng = np.random.default_rng(5)
    files = []
    for i in range(2):
        mixture, _ = synthesize_clip(i + 1, rng, sample_rate=22050, duration=1.2, channels=2)
        files.append(tmp_path / f"clip{i}.wav")
        sf.write(str(files[-1]), mixture.T, 22050, subtype="FLOAT")
    pre = Preprocessor(make_recipe(registry, tmp_path, {"name": "left"}), registry)
    keys = pre.separate(files)
    assert sys.modules[entry.factory.__module__].SEEN == [(2, 2, 8000)]
    for file, key in zip(files, keys, strict=True):
        left = load_clip(file, 8000, 2, 1.0)[:1]
        expected = fix_length(resample(left, 8000, 16000), 16000)[0].astype(np.float16)
        np.testing.assert_array_equal(pre.stems.get(key), expected)


BUILTIN_KEYS = {
    "none": "74dd55783a8d1e39ae0a3532e312313b",
    "spleeter": "249b90167a4f4ce8b7502d906311216e",
    "mel": "2e2eaf16c624eb5aa0a3228d686fac4a",
}
"""Settings keys of the built-ins at 22.05 kHz, 4 s, defaults, as computed before the
separators' rate, channels and version moved into their registrations."""


def test_builtin_cache_keys_are_unchanged(tmp_path: Path) -> None:
    registry = load_plugins()
    for separator, rate, channels in (("none", 22050, 1), ("spleeter", 44100, 2)):
        recipe = make_recipe(
            registry, tmp_path, {"name": separator}, sample_rate=22050, duration=4.0
        )
        pre = Preprocessor(recipe, registry)
        assert (pre.decode_rate, pre.separator_channels) == (rate, channels)
        assert pre.stem_settings == BUILTIN_KEYS[separator]
        assert pre.feature_settings == BUILTIN_KEYS["mel"]


def test_center_crop_keeps_the_middle_of_a_long_clip(tmp_path: Path) -> None:
    """``data.crop: center``: a clip longer than ``data.duration`` is cut from its middle, when
    decoded and in the stored stem; at the data's rate exactly, resampled to within a sample."""
    registry = load_plugins()
    rng = np.random.default_rng(11)
    length = 16000  # data.duration 1.0 s at 16 kHz
    for rate in (16000, 22050):
        mixture, _ = synthesize_clip(2, rng, sample_rate=rate, duration=3.3, channels=1)
        path = tmp_path / f"long{rate}.wav"
        sf.write(str(path), mixture.T, rate, subtype="FLOAT")
        audio, _ = sf.read(str(path), dtype="float32", always_2d=True)
        whole = resample(np.ascontiguousarray(audio.T), rate, 16000)[0]
        middle_start = (len(whole) - length) // 2
        middle = whole[middle_start : middle_start + length]

        center = load_clip(path, 16000, 1, 1.0, crop="center")[0]
        start = load_clip(path, 16000, 1, 1.0, crop="start")[0]
        assert center.shape == start.shape == (length,)
        if rate == 16000:
            np.testing.assert_array_equal(center, middle)
            np.testing.assert_array_equal(start, whole[:length])
        else:  # cut before resampling: the same window, to within one output sample
            assert _offset(whole, center) in range(middle_start - 1, middle_start + 2)
            assert _offset(whole, start) in (0, 1)

        pre = Preprocessor(
            make_recipe(registry, tmp_path, {"name": "none"}, crop="center"), registry
        )
        (key,) = pre.separate([path])
        stem = pre.stems.get(key)
        np.testing.assert_array_equal(stem, center.astype(np.float16))
        starts = Preprocessor(make_recipe(registry, tmp_path, {"name": "none"}), registry)
        (start_key,) = starts.separate([path])
        assert start_key != key  # the crop is part of the stem's key
        np.testing.assert_array_equal(starts.stems.get(start_key), start.astype(np.float16))


def _offset(whole: np.ndarray, part: np.ndarray) -> int:
    """Where ``part`` best lines up inside ``whole`` (least squared difference)."""
    from scipy.signal import correlate

    squares = np.concatenate([[0.0], np.cumsum(whole.astype(np.float64) ** 2)])
    energy = squares[len(part) :] - squares[: -len(part)]
    cross = correlate(whole.astype(np.float64), part.astype(np.float64), "valid", method="fft")
    return int(np.argmin(energy - 2 * cross))
