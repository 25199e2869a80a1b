"""``toolkit predict`` and ``toolkit export``: use a finished run on new clips, or ship it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from toolkit.cli.support import friendly, out
from toolkit.errors import ToolkitError
from toolkit.wording import count


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
