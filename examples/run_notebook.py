"""Execute a Jupyter notebook with a real kernel, printing each cell's seconds; fail on any error.

    python examples/run_notebook.py examples/quickstart.ipynb [--cwd DIR] [--timeout S]
        [--output executed.ipynb]

The kernel is this Python's (``python3``: ipykernel from the dev extras), started in ``--cwd``
(default: the notebook's folder) with this process's environment, so variables such as the
notebook's ``TOOLKIT_EXAMPLES_DIR`` reach it. Exit 0 when every cell ran, 1 at the first cell
that raised (its error named on stderr), 2 for a missing notebook.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbformat import NotebookNode


class TimedClient(NotebookClient):
    """A notebook client that times each cell and counts the kernel's messages by type."""

    def __init__(self, nb: NotebookNode, **kwargs: Any) -> None:
        """As :class:`NotebookClient`; ``on_cell_start``/``on_cell_executed`` are taken."""
        super().__init__(nb, **kwargs)
        self.seconds: dict[int, float] = {}
        """Cell index -> seconds its execution took."""
        self.messages: Counter[str] = Counter()
        """Message type (``stream``, ``display_data``, ``update_display_data``...) -> count."""
        self._started = 0.0
        self.on_cell_start = self._start
        self.on_cell_executed = self._executed

    def _start(self, cell: NotebookNode, cell_index: int) -> None:
        self._started = time.perf_counter()

    def _executed(self, cell: NotebookNode, cell_index: int, execute_reply: Any) -> None:
        self.seconds[cell_index] = time.perf_counter() - self._started
        first = next(iter(cell.source.splitlines()), "")
        print(f"cell {cell_index}: {self.seconds[cell_index]:.1f} s  {first[:70]}", flush=True)

    def process_message(
        self, msg: dict[str, Any], cell: NotebookNode, cell_index: int
    ) -> NotebookNode | None:
        """Count the message, then handle it as nbclient does."""
        self.messages[msg["msg_type"]] += 1
        return super().process_message(msg, cell, cell_index)


def execute(notebook: Path, cwd: Path | None = None, timeout: int = 1800) -> TimedClient:
    """Run every cell of ``notebook`` in a fresh kernel started in ``cwd``; the client holds the
    executed notebook (``.nb``), each cell's seconds and the message counts.

    Raises :class:`nbclient.exceptions.CellExecutionError` at the first cell that raised.
    """
    nb = nbformat.read(notebook, as_version=4)
    client = TimedClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd or notebook.parent)}},
    )
    client.execute()
    return client


def main(argv: list[str] | None = None) -> int:
    """The command line: execute the notebook, print the cells' seconds and the total."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--cwd", type=Path, default=None, help="the kernel's working folder")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds a cell may take")
    parser.add_argument("--output", type=Path, default=None, help="write the executed notebook")
    args = parser.parse_args(argv)
    if not args.notebook.is_file():
        print(f"error: {args.notebook}: no such notebook", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        client = execute(args.notebook, args.cwd, args.timeout)
    except CellExecutionError as exc:
        print(exc, file=sys.stderr)  # the cell and its traceback, for the CI log
        name = getattr(exc, "ename", "error")
        print(f"error: {args.notebook}: a cell raised {name}: {exc.evalue}", file=sys.stderr)
        return 1
    if args.output is not None:
        nbformat.write(client.nb, args.output)
    cells = len(client.seconds)
    total = time.perf_counter() - started
    print(f"{args.notebook}: {cells} cells ran in {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
