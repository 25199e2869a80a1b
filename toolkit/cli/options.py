"""Options that several ``toolkit`` commands take, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set", "-s", metavar="KEY=VALUE", help="Override a recipe key: KEY=VALUE (repeatable)."
    ),
]
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
