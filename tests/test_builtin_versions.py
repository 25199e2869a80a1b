"""Each built-in separator and feature extractor changes its version when its output changes.

Their versions enter the cache keys of what they compute. The outputs pinned in
``tests/reference/builtins.npz`` (see ``tests/reference/builtin_outputs.py``) are
compared with today's: a changed output under an unchanged version fails here,
so a fix to the mel or musicnn code cannot silently reuse cached features.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.reference import builtin_outputs as pins
from toolkit.registry.loader import load_plugins
from toolkit.registry.table import Registry

REMAKE = "python -m tests.reference.builtin_outputs"


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_plugins()


def test_every_builtin_separator_and_extractor_is_pinned(registry: Registry) -> None:
    pinned = {block["name"] for _, block, *_ in pins.CASES.values()}
    for kind in ("separators", "feature_extractors"):
        assert set(registry.list_names(kind)) <= pinned, kind


@pytest.mark.parametrize("case", list(pins.CASES))
def test_output_is_the_pinned_one_while_the_version_stays(case: str, registry: Registry) -> None:
    stored, made_by = pins.pinned()
    version = pins.versions(registry)[case]
    assert made_by[case] == version, (
        f"{case}: version {version} now, builtins.npz made by version {made_by[case]}: "
        f"remake it ({REMAKE})"
    )
    ours = pins.compute(case, registry)
    assert ours.shape == stored[case].shape
    close = np.allclose(ours, stored[case], rtol=1e-4, atol=1e-4)
    assert close, (
        f"{case}: the output changed (largest difference "
        f"{np.abs(ours - stored[case]).max():.3g}) but the version did not: bump the "
        f"plugin's register(..., version=...) so cached outputs are computed again, then {REMAKE}"
    )


def test_the_pins_tell_a_changed_computation(registry: Registry) -> None:
    """A mel spectrogram computed another way (a lower floor) is told apart from the pin."""
    stored, _ = pins.pinned()
    block = {**pins.CASES["mel"][1], "top_db": 60.0}
    changed = pins.compute("mel", registry, block)
    assert changed.shape == stored["mel"].shape
    assert not np.allclose(changed, stored["mel"], rtol=1e-4, atol=1e-4)
