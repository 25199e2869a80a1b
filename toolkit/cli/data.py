"""``toolkit demo-data``, ``toolkit separate`` and ``toolkit leaks``: make, prepare and
inspect a competition's clips without training."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

import typer

from toolkit.cli.options import SetOption
from toolkit.cli.support import friendly, out, status
from toolkit.errors import ToolkitError
from toolkit.wording import count


@friendly
def separate(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file.")],
    set_: SetOption = None,
) -> None:
    """Precompute the separated stems of every clip (stop and resume at will)."""
    from toolkit.recipe.loading import load_recipe, locations

    loaded = load_recipe(recipe, set_ or [])
    status(locations(loaded.recipe))
    from toolkit.training.pipeline import separate_all  # torch: only once the recipe is valid

    stats = separate_all(loaded.recipe, loaded.registry)
    out.print(
        f"stems: {stats.stems_computed} computed, {stats.stems_reused} already cached "
        f"in {loaded.recipe.cache.dir}"
    )


@friendly
def leaks(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file.")],
    set_: SetOption = None,
    probe: Annotated[
        bool,
        typer.Option(
            "--probe/--no-probe",
            help="Score a linear probe with and without groups (computes the features).",
        ),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Find the clips that share a song (or a group column's value) and show how much a
    split without groups leaks, without training."""
    from toolkit.recipe.loading import load_recipe, locations

    loaded = load_recipe(recipe, set_ or [])
    status(locations(loaded.recipe))
    from toolkit.validation.leaks import leak_report  # torch: only once the recipe is valid

    report = leak_report(loaded.recipe, loaded.registry, probe=probe)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
        return
    for line in report.lines():
        out.print(line)


_SONGS_HELP = (
    "Cut the clips from this many songs, shared singers singing them (0: every clip a song of "
    "its own); test clips share no song or singer with train clips. 50 gives 40 train songs."
)


@friendly
def demo_data(
    directory: Annotated[Path, typer.Argument(help="Folder to create.")],
    train: Annotated[int, typer.Option(help="Number of train clips.")] = 400,
    test: Annotated[int, typer.Option(help="Number of test clips.")] = 100,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    duration: Annotated[float, typer.Option(help="Seconds per clip.")] = 3.0,
    songs: Annotated[int, typer.Option(help=_SONGS_HELP)] = 0,
    singers: Annotated[int, typer.Option(help="With --songs: singers of each gender.")] = 15,
    test_share: Annotated[
        float, typer.Option(help="With --songs: share of the songs and singers only test uses.")
    ] = 0.2,
) -> None:
    """Synthesize the demo competition (4 classes of song snippets) into DIRECTORY; with
    --songs, the true sources too (train_sources.csv, test_sources.csv: id,song,singers)."""
    from toolkit.demo import make_demo_competition

    if directory.exists():
        raise ToolkitError(f"{directory} already exists; choose a new folder")
    knobs = dict(songs=songs, singers=singers, test_share=test_share, progress=True)
    try:
        comp = make_demo_competition(
            directory, n_train=train, n_test=test, seed=seed, duration=duration, **knobs
        )
    except ValueError as exc:  # a parameter out of range, named as the option
        names = r"\b(n_train|n_test|songs|singers|test_share|duration)\b"
        msg = re.sub(names, lambda m: "--" + m[1].removeprefix("n_").replace("_", "-"), str(exc))
        raise ToolkitError(f"demo-data: {msg}") from None
    clips = f"{comp.n_train} train, {count(comp.n_test, 'test clip')}"
    out.print(f"demo competition: {comp.root} ({clips})")
