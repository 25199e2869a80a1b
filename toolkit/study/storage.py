"""The study's Optuna storage: any RDB URL, with heartbeats, created on first use."""

from __future__ import annotations

import os
import random
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial

from toolkit.errors import SearchError, error_line

HEARTBEAT_INTERVAL = 30
"""Seconds between a running trial's heartbeats in the storage."""

GRACE_PERIOD = 120
"""Seconds without a heartbeat after which another worker fails a running trial."""

GRACE_ENV = "TOOLKIT_HEARTBEAT_GRACE"
"""Environment variable that sets the grace period in seconds (every worker of a study should
have the same); the heartbeat interval is then a quarter of it, at most
:data:`HEARTBEAT_INTERVAL`."""

MIN_GRACE = 4
"""The shortest grace period :data:`GRACE_ENV` may set (a heartbeat each second)."""


def heartbeat_timing() -> tuple[int, int]:
    """The heartbeat interval and the grace period, in seconds (see :data:`GRACE_ENV`)."""
    text = os.environ.get(GRACE_ENV, "").strip()
    if not text:
        return HEARTBEAT_INTERVAL, GRACE_PERIOD
    if not text.isdigit() or int(text) < MIN_GRACE:
        raise SearchError(
            f"{GRACE_ENV}={text!r}: the heartbeat grace period must be whole seconds, "
            f"at least {MIN_GRACE}; unset it for the default {GRACE_PERIOD}"
        )
    grace = int(text)
    return min(HEARTBEAT_INTERVAL, grace // 4), grace


def open_storage(
    url: str, on_stale: Callable[[optuna.Study, FrozenTrial], None] | None = None
) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage with heartbeats; SQLite files and folders are created."""
    interval, grace = heartbeat_timing()
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # pysqlite's own BEGIN is turned off: every transaction begins IMMEDIATE (below)
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60, "isolation_level": None}}
    last: Exception | None = None
    for attempt in range(4):  # workers starting together may race to create the tables
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(
                    url,
                    heartbeat_interval=interval,
                    grace_period=grace,
                    heartbeat_stale_trial_callback=on_stale,
                    **kwargs,
                )
            if url.startswith("sqlite:"):
                sqlalchemy.event.listen(storage.engine, "begin", _begin_immediate)
            return storage
        except (ImportError, ModuleNotFoundError) as exc:
            raise SearchError(f"storage {url}: missing database driver: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - sqlalchemy raises many kinds
            last = exc
            time.sleep(0.5 + random.random() * (attempt + 1))
    message = error_line(last) if last else "unknown error"
    raise SearchError(f"cannot open study storage {url}: {message}")


def _begin_immediate(connection: sqlalchemy.engine.Connection) -> None:
    """Begin a SQLite transaction holding the write lock from its first read.

    Optuna reads a queued trial's state, then marks it running: in SQLite's
    default (deferred) transactions two workers can both read "waiting" and
    both run the trial. Taking the lock first makes the second one see
    "running" and take another trial.
    """
    connection.exec_driver_sql("BEGIN IMMEDIATE")
