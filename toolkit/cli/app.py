"""The ``toolkit`` command: argument parsing only; the work is in the library."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperCommand

from toolkit.cli.support import (
    ClosedPipe,
    Command,
    Group,
    click_classes,
    err,
    friendly,
    guard_pipes,
    out,
    pipe_closed,
    silence_closed_pipe,
    status,
    stop_on_sigterm,
    write_traceback,
)
from toolkit.errors import USAGE_ERROR, ToolkitError
from toolkit.wording import count

app = typer.Typer(
    cls=Group,
    help="AutoML for audio-classification competitions: run, search, ensemble, submit.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set", "-s", metavar="KEY=VALUE", help="Override a recipe key: KEY=VALUE (repeatable)."
    ),
]


def print_version(value: bool) -> None:
    """Print ``toolkit VERSION`` and exit, when ``--version`` is given."""
    if value:
        from toolkit import __version__

        out.print(f"toolkit {__version__}")
        raise typer.Exit()


@app.callback()
def options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=print_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Options that come before the command."""


StorageOption = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="Optuna RDB URL of the study (default: search.storage, else RUN_DIR/study.db).",
        show_default=False,
    ),
]
OutputOption = Annotated[
    Path | None,
    typer.Option(
        "--output", "-o", help="Run directory (default: runs/NAME in the recipe's project folder)."
    ),
]


@app.command()
@friendly
def run(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file.")],
    set_: SetOption = None,
    output: OutputOption = None,
    storage: StorageOption = None,
    no_report: Annotated[
        bool, typer.Option("--no-report", help="Do not write RUN_DIR/report.html at the end.")
    ] = False,
) -> None:
    """Run a recipe end to end and write the submission and the report.

    With a search: or ensemble: section, run (or continue) its study, then
    select the ensemble of its trials.
    """
    from toolkit.recipe.loading import load_recipe, locations
    from toolkit.study.settings import has_study

    loaded = load_recipe(recipe, set_ or [], output)
    status(locations(loaded.recipe))
    stop_on_sigterm()
    from toolkit.workflow import run as run_recipe  # torch: only once the recipe is valid

    if has_study(loaded.recipe):
        run_dir = _run_study(loaded, storage)
        if not no_report:
            _run_report(run_dir, storage)
        return
    if storage is not None:
        raise ToolkitError(f"--storage: {recipe} has no search: section to keep a study of")
    result = run_recipe(loaded)
    out.print(f"submission: {result.submission}")
    out.print(
        f"best validation accuracy: {result.val_accuracy:.4f} "
        f"(epoch {result.best_epoch}, log loss {result.val_loss:.4f})"
    )
    out.print(f"leaderboard: {result.leaderboard_id} ({result.seconds:.0f} s)")
    if not no_report:
        _run_report(result.run_dir, None)


def _run_report(run_dir: Path, storage: str | None) -> None:
    """The report at the end of a run; if it fails, a warning: the run's work stands."""
    from toolkit.report import write_report

    try:
        page = write_report(run_dir, storage)
    except Exception as exc:  # noqa: BLE001 - the submission is written whatever the report does
        log = write_traceback(exc)
        message = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        err.print(f"warning: no report ({message}; traceback in {log})", highlight=False)
        return
    out.print(f"report: {page}")


def _run_study(loaded: Any, storage: str | None) -> Path:
    from toolkit.workflow import run_study

    result = run_study(loaded, storage)
    counts = result.worker.counts
    ens = result.ensemble
    out.print(
        f"study {result.study_name}: {count(counts['complete'] + counts['pruned'], 'trial')} "
        f"({counts['complete']} complete, {counts['pruned']} pruned, {counts['failed']} failed) "
        f"in {result.storage}",
        highlight=False,
        soft_wrap=True,
    )
    _say_timeout(loaded, result.worker)
    out.print(f"best trial: {ens.best_trial} ({ens.metric} {ens.best_trial_metric:.4f})")
    members = ", ".join(f"{k} ×{w:.3g}" for k, w in ens.members.items())
    out.print(
        f"ensemble: {ens.id} of {count(ens.candidates, 'candidate')}, validation {ens.metric} "
        f"{ens.val_metric:.4f}: {members}",
        highlight=False,
        soft_wrap=True,
    )
    if ens.estimate is not None:
        out.print(f"estimate: {ens.estimate.describe()}", highlight=False, soft_wrap=True)
    _say_method(ens)
    if ens.pseudo_labels is not None:
        out.print(ens.pseudo_labels.describe(), highlight=False, soft_wrap=True)
    out.print(f"submission: {result.submission}", highlight=False, soft_wrap=True)
    out.print(f"dashboard: optuna-dashboard {result.storage}", highlight=False, soft_wrap=True)
    return result.run_dir


def _say_method(ens: Any) -> None:
    """One line on how the ensemble combines its models, when a stack was fitted."""
    combination = ens.combination
    if combination is None or len(combination.estimates) < 2:
        return
    both = ", ".join(f"{m} {e.value:.4f}" for m, e in combination.estimates.items())
    out.print(f"method: {combination.method} kept (estimates: {both})", highlight=False)


def _say_timeout(loaded: Any, report: Any) -> None:
    """One line when the worker stopped starting trials at ``search.timeout``."""
    search = loaded.recipe.search
    if report.stopped_by == "timeout" and search is not None and search.timeout is not None:
        out.print(
            f"stopped at search.timeout ({search.timeout:g} s): no trial started after it; "
            "run again to continue the study",
            highlight=False,
            soft_wrap=True,
        )


@app.command()
@friendly
def worker(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file with a search: section.")],
    set_: SetOption = None,
    output: OutputOption = None,
    storage: StorageOption = None,
) -> None:
    """Join a recipe's study as one more worker (process or machine) and run its trials.

    Workers share the study through --storage; they stop when the study has
    search.n_trials finished trials. `toolkit run` builds the ensemble.
    """
    from toolkit.recipe.loading import load_recipe, locations

    loaded = load_recipe(recipe, set_ or [], output)
    status(locations(loaded.recipe))
    stop_on_sigterm()
    from toolkit.workflow import run_worker  # torch: only once the recipe is valid

    report = run_worker(loaded, storage)
    counts = report.counts
    mine = report.numbers()
    out.print(
        f"worker ran {len(mine)} trial(s): {', '.join(map(str, mine)) or 'none'}",
        highlight=False,
    )
    out.print(
        f"study {report.study_name}: {counts['complete'] + counts['pruned']} finished "
        f"({counts['complete']} complete, {counts['pruned']} pruned), {counts['running']} running, "
        f"{counts['failed']} failed in {report.storage}",
        highlight=False,
        soft_wrap=True,
    )
    _say_timeout(loaded, report)


@app.command()
@friendly
def reproduce(
    run_id: Annotated[str, typer.Argument(help="Leaderboard id of a run, trial or seed copy.")],
    db: Annotated[
        Path | None,
        typer.Option(
            "--db",
            envvar="TOOLKIT_LEADERBOARD",
            help="Leaderboard database (default: runs/leaderboard.db).",
            show_default=False,
            dir_okay=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="New folder (default: RUN_DIR/reproduce/ID)."),
    ] = None,
) -> None:
    """Train one leaderboard row again from the recipe it stored; say whether it matches.

    Exits 0 when the metrics and probabilities are identical, 1 when they differ.
    """
    from toolkit.leaderboard.location import default_db_path
    from toolkit.leaderboard.store import Leaderboard
    from toolkit.runs.reproduce import reproduce as reproduce_row

    outcome = reproduce_row(Leaderboard(db or default_db_path()), run_id, output)
    result = outcome.result
    out.print(f"reproduced {run_id} as {result.leaderboard_id} in {result.run_dir}")
    for change in outcome.version_changes:
        out.print(f"version changed since: {change}")
    out.print(f"compared: {', '.join(outcome.compared)}")
    if outcome.matches:
        out.print("match: the metrics and probabilities are identical")
        return
    for difference in outcome.differences:
        out.print(f"differs: {difference}")
    out.print("match: no")
    raise typer.Exit(1)


@app.command()
@friendly
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by toolkit run.")],
    storage: StorageOption = None,
    db: Annotated[
        Path | None,
        typer.Option(
            "--db",
            envvar="TOOLKIT_LEADERBOARD",
            help="Leaderboard database (default: the run recipe's output.leaderboard).",
            show_default=False,
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Write RUN_DIR/report.html, one self-contained page of the run's figures; print its path.

    The figures are also written to RUN_DIR/figures/*.png. A study still
    running is reported as far as it got.
    """
    from toolkit.report import write_report

    out.print(str(write_report(run_dir, storage, db)), highlight=False, soft_wrap=True)


@app.command()
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


@app.command()
@friendly
def predict(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory, or an export.")],
    clips: Annotated[
        Path, typer.Argument(help="A folder of audio files, or a CSV of ids (the sample's shape).")
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Where to write the submission CSV (default: RUN_DIR/predictions/CLIPS.csv, "
            "CLIPS the folder's or the CSV's name).",
            show_default=False,
        ),
    ] = None,
    probabilities: Annotated[
        bool,
        typer.Option("--probabilities", help="Write each class's probability instead."),
    ] = False,
    audio: Annotated[
        Path | None,
        typer.Option(
            "--audio",
            help="With a CSV of ids: the folder of their clips (default: test/ beside the CSV, "
            "else the CSV's folder).",
            show_default=False,
        ),
    ] = None,
    cache: Annotated[
        Path | None,
        typer.Option(
            "--cache",
            help="Cache stems and features here (default: the recipes' cache.dir; an export's "
            "cache/).",
            show_default=False,
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu, cuda, ...")] = "auto",
) -> None:
    """Predict new clips with a finished run's submission (its ensemble, or its model).

    The clips go through the run's own separation and features (cached), each
    model predicts as in training, and the ensemble combines them as the run did
    (its weights, or its stack); the submission has the sample's columns and the
    competition's ids. It goes to --output, else RUN_DIR/predictions/.
    """
    from toolkit.deploy.prediction import default_output
    from toolkit.deploy.prediction import predict as predict_clips

    output = output or default_output(run_dir, clips, probabilities)
    result = predict_clips(
        run_dir,
        clips,
        audio=audio,
        output=output,
        probabilities=probabilities,
        cache=cache,
        device=device,
    )
    what = "probabilities" if probabilities else "submission"
    clips, models = count(len(result.ids), "clip"), count(len(result.models), "model")
    out.print(f"{what}: {output} ({clips}, {models})")


@app.command()
@friendly
def export(
    run_dir: Annotated[Path, typer.Argument(help="A finished run directory.")],
    directory: Annotated[Path, typer.Argument(help="New folder to write the export to.")],
    target: Annotated[
        str, typer.Option(help="cpu (a CPU build of torch where one is found) or cuda.")
    ] = "cpu",
    python: Annotated[
        str | None,
        typer.Option(
            help="Python version of the machine (default: this one's).", show_default=False
        ),
    ] = None,
    platform: Annotated[
        str, typer.Option(help="Platform tag of the machine's wheels.")
    ] = "manylinux_2_28_x86_64",
    torch_wheel: Annotated[
        Path | None,
        typer.Option(
            help="A CPU build of the run's torch (torch-VERSION+cpu-...whl) to ship.",
            show_default=False,
        ),
    ] = None,
    no_wheels: Annotated[
        bool, typer.Option("--no-wheels", help="Only the models (the toolkit is installed).")
    ] = False,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Then install it into a fresh environment with no network and predict the "
            "run's test clips with it: they must be the run's test_probs bit for bit.",
        ),
    ] = False,
) -> None:
    """Write a folder that installs and predicts with no network: the chosen models, their
    recipes, the toolkit's wheel and every wheel predict needs, and a README.

    Needs the package indexes (the wheels are downloaded for --target, --python and
    --platform); the export itself needs none.
    """
    from toolkit.deploy.export import export_run

    summary = export_run(
        run_dir,
        directory,
        target=target,
        python=python,
        platform=platform,
        wheels=not no_wheels,
        torch_wheel=torch_wheel,
    )
    mib = 2**20
    out.print(
        f"export: {summary.folder} ({count(len(summary.models), 'model')}, "
        f"{summary.model_bytes / mib:.1f} MiB; {count(len(summary.wheels), 'wheel')}, "
        f"{summary.wheel_bytes / mib:.0f} MiB) in {summary.seconds:.0f} s"
    )
    if summary.torch:
        out.print(f"torch: {summary.torch}")
    out.print(f"install and predict: see {summary.folder / 'README.md'}")
    if check:
        from toolkit.deploy.export_check import check_export

        checked = check_export(summary.folder)
        out.print(f"check: {checked.describe()}")
        if not checked.identical:
            raise ToolkitError("check: the export does not predict what the run predicted")


@app.command()
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


@app.command()
@friendly
def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    recipe: Annotated[
        Path | None, typer.Option("--recipe", "-r", help="Also load this recipe's plugin files.")
    ] = None,
) -> None:
    """List every registered plugin by kind, with where it came from."""
    from toolkit.recipe.loading import plugin_files, read_recipe_file
    from toolkit.registry.kinds import KINDS
    from toolkit.registry.listing import plugin_listing
    from toolkit.registry.loader import load_plugins

    files = plugin_files(read_recipe_file(recipe), recipe) if recipe else []
    registry = load_plugins(files)
    if as_json:
        listing = {
            kind: {name: _plugin_json(registry.entries[kind][name]) for name in names}
            for kind, names in ((k, registry.list_names(k)) for k in KINDS)
        }
        typer.echo(json.dumps(listing, indent=2))
        return
    out.print(plugin_listing(registry, out.width))


def _plugin_json(entry: Any) -> dict[str, str]:
    """One registered plugin as ``toolkit plugins --json`` lists it."""
    return {
        "version": entry.version,
        "source": entry.source,
        "source_version": entry.source_version,
        "description": entry.description,
    }


_SONGS_HELP = (
    "Cut the clips from this many songs, shared singers singing them (0: every clip a song of "
    "its own); test clips share no song or singer with train clips. 50 gives 40 train songs."
)


@app.command("demo-data")
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


@app.command()
@friendly
def new(
    kind: Annotated[str, typer.Argument(help="backbone, feature, augmenter or separator.")],
    name: Annotated[str, typer.Argument(help="Plugin name (a Python identifier).")],
    directory: Annotated[Path, typer.Option("--dir", help="Where to write the file.")] = Path("."),
) -> None:
    """Scaffold a plugin file to fill in; name it under `plugins:` in a recipe."""
    from toolkit.registry.scaffold import new_plugin

    path = new_plugin(kind, name, directory)
    out.print(f"wrote {path}; add it to a recipe: plugins: [{path}]")


def _register_leaderboard() -> None:
    from toolkit.leaderboard.cli import register

    register(app)


_register_leaderboard()
for _info in app.registered_commands:  # every command's help, the leaderboard's included
    if _info.cls in (None, TyperCommand):
        _info.cls = Command


def main() -> None:
    """Entry point of the ``toolkit`` console script."""
    guard_pipes()
    try:
        code = app(standalone_mode=False)
    except ClosedPipe:
        sys.exit(silence_closed_pipe())
    except ToolkitError as exc:  # errors raised while typer builds the command
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except Exception as exc:
        kinds = click_classes(exc)
        if "NoArgsIsHelpError" in kinds:
            exc.show()  # type: ignore[attr-defined]  # `toolkit` alone: the help text
            sys.exit(USAGE_ERROR)
        if "ClickException" not in kinds:
            raise
        # a missing argument, an unknown option or command, a value of the wrong type
        ctx = getattr(exc, "ctx", None)
        command = ctx.command_path if ctx is not None else "toolkit"
        message = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
        err.print(
            f"[bold red]error:[/] {escape(command)}: {escape(message)} "
            f"(see '{escape(command)} --help')",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(getattr(exc, "exit_code", USAGE_ERROR))
    except typer.Abort:
        err.print("interrupted")
        sys.exit(130)
    if pipe_closed():  # e.g. the help text into `| head -1` (typer made it exit 130)
        sys.exit(silence_closed_pipe())
    sys.exit(code if isinstance(code, int) else 0)
