"""Two ``toolkit worker`` processes finish one study together, on SQLite and on PostgreSQL.

The PostgreSQL case starts a throwaway server (Debian's ``postgresql``
package, which ``.ci/run`` installs) in a temporary data directory on a free
loopback port, as the ``postgres`` user when the tests run as root (initdb and
pg_ctl refuse root), and stops it afterwards.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from tests.conftest import kill_when_paused, run_cli, start_paused, with_pause, write_recipe
from toolkit.demo import DemoCompetition

pytestmark = pytest.mark.slow  # studies with workers train

WORKER_SEARCH = """
search:
  n_trials: 4
  sampler: {name: random, seed: 0}
  pruner: {name: none}
  space:
    train.optimizer.lr: {low: 0.001, high: 0.01, log: true}
    model.backbone.width: {choices: [4, 8]}
"""


# ------------------------------------------------------------------ postgres
def _server_bin() -> Path | None:
    """The newest PostgreSQL server's bin folder (Debian layout), or one on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


def _version(path: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", path))


def _free_port() -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port != 5432:
            return port


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A database URL on a throwaway PostgreSQL server, stopped after the module."""
    bindir = _server_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql")
    pytest.importorskip("psycopg2", reason="the psycopg2 driver is not installed (dev extras)")
    as_user: list[str] = []
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:  # initdb and pg_ctl refuse to run as root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server")
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("running as root and runuser is missing")
        as_user = [runuser, "-u", "postgres", "--"]
    home = Path(tempfile.mkdtemp(prefix="toolkit-pg-"))
    data, log = home / "data", home / "server.log"
    if owner is not None:
        os.chown(home, owner.pw_uid, owner.pw_gid)
    port = _free_port()

    def server(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*as_user, *args], capture_output=True, text=True, timeout=120, check=check
        )

    started = False
    try:
        server(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-N")
        options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off"
        pg_ctl = str(bindir / "pg_ctl")
        server(pg_ctl, "-D", str(data), "-o", options, "-l", str(log), "-w", "-t", "60", "start")
        started = True
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute("CREATE DATABASE toolkit_study")
        conn.close()
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/toolkit_study"
    except subprocess.CalledProcessError as exc:
        details = (exc.stderr or "") + (log.read_text() if log.is_file() else "")
        pytest.fail(f"PostgreSQL did not start: {exc.cmd}: {details.strip()[-2000:]}")
    finally:
        if started:
            server(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop", check=False)
        shutil.rmtree(home, ignore_errors=True)


# ------------------------------------------------------------------- workers
def _ran(stdout: str) -> list[int]:
    """The trial numbers a worker says it ran."""
    match = re.search(r"worker ran \d+ trial\(s\): ([\d, ]+|none)", stdout)
    assert match, stdout
    return [] if match.group(1) == "none" else [int(n) for n in match.group(1).split(",")]


def two_workers_finish_one_study(competition: DemoCompetition, work: Path, storage: str) -> None:
    """Start two workers on ``storage``, check the study, then ensemble it with ``run``."""
    recipe = write_recipe(work, competition.root, extra=WORKER_SEARCH)
    recipe.write_text(recipe.read_text().replace("epochs: 2", "epochs: 1"))
    env = {
        **os.environ,
        "TOOLKIT_NO_PROGRESS": "1",
        "TOOLKIT_LOAD_PLUGINS": "",
        "OMP_NUM_THREADS": "1",  # two processes on two cores
    }
    command = [sys.executable, "-m", "toolkit", "worker", str(recipe), "--storage", storage]
    command += ["--output", str(work / "run")]
    workers = [
        subprocess.Popen(
            command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=600) for w in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
    ran = [_ran(out) for out, _ in outputs]
    assert not set(ran[0]) & set(ran[1]), ran  # no trial number run by both

    study = optuna.load_study(study_name="tiny", storage=storage)
    states = {t.number: t.state for t in study.trials}
    done = sorted(n for n, s in states.items() if s == optuna.trial.TrialState.COMPLETE)
    assert len(done) == 4
    assert sorted(ran[0] + ran[1]) == done
    assert len({t.number for t in study.trials}) == len(study.trials)
    assert not [n for n, s in states.items() if s == optuna.trial.TrialState.RUNNING]
    for n in done:
        assert (work / "run" / "trials" / f"t{n:04d}" / "test_probs.npy").is_file()

    result = run_cli("run", recipe, "--storage", storage, "--output", work / "run", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "4 trials (4 complete" in result.stdout
    assert len(optuna.load_study(study_name="tiny", storage=storage).trials) == len(states)
    assert (work / "run" / "submission.csv").is_file()


def test_two_workers_share_a_sqlite_study(
    tiny_competition: DemoCompetition, tmp_path: Path
) -> None:
    storage = f"sqlite:///{tmp_path / 'shared' / 'study.db'}"
    two_workers_finish_one_study(tiny_competition, tmp_path, storage)


def test_two_workers_share_a_postgresql_study(
    tiny_competition: DemoCompetition, tmp_path: Path, postgres_url: str
) -> None:
    two_workers_finish_one_study(tiny_competition, tmp_path, postgres_url)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_a_queued_trial_is_taken_by_one_worker_only(tmp_path: Path) -> None:
    """SQLite's deferred transactions let two workers both take a queued trial (the baseline);
    the study's storage begins every transaction with the write lock, so one does."""
    import threading

    from toolkit.study.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    for attempt in range(15):
        url = f"sqlite:///{tmp_path / f's{attempt}.db'}"
        first = optuna.create_study(storage=open_storage(url), study_name="s")
        first.enqueue_trial({"x": 1.0})
        studies = [optuna.load_study(storage=open_storage(url), study_name="s") for _ in range(4)]
        barrier = threading.Barrier(len(studies))
        taken: list[int] = []

        def ask(study: optuna.Study, barrier: threading.Barrier, taken: list[int]) -> None:
            barrier.wait()
            taken.append(study.ask().number)

        threads = [threading.Thread(target=ask, args=(study, barrier, taken)) for study in studies]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(taken) == [0, 1, 2, 3], (attempt, taken)


def test_a_worker_killed_on_another_machine_is_failed_by_its_heartbeat(
    tiny_competition: DemoCompetition, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker killed mid-trial on "another machine" (its trial's recorded host made foreign,
    so its pid tells nothing) is failed once its heartbeat is older than the grace period;
    the next worker runs the slot again under a new trial number."""
    search = WORKER_SEARCH.replace("n_trials: 4", "n_trials: 2")
    recipe = with_pause(write_recipe(tmp_path, tiny_competition.root, extra=search))
    recipe.write_text(recipe.read_text().replace("epochs: 2", "epochs: 1"))
    monkeypatch.setenv("TOOLKIT_HEARTBEAT_GRACE", "4")  # seconds, instead of 2 minutes
    run_dir = tmp_path / "run"
    marker = tmp_path / "paused"
    first = start_paused(["worker", recipe, "--output", run_dir], marker, 1, cwd=tmp_path)
    kill_when_paused(first, marker)  # in trial 0's first training step

    storage = f"sqlite:///{run_dir / 'study.db'}"
    (killed,) = optuna.load_study(study_name="tiny", storage=storage).trials
    assert killed.state == optuna.trial.TrialState.RUNNING
    identity = killed.user_attrs["worker"]
    elsewhere = {**identity, "host": f"{identity['host']}-elsewhere"}
    optuna.storages.RDBStorage(storage).set_trial_user_attr(killed._trial_id, "worker", elsewhere)

    result = run_cli("run", recipe, "--output", run_dir, "--no-report", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "2 trials (2 complete, 0 pruned, 1 failed)" in result.stdout
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert study.trials[0].user_attrs["worker"] == elsewhere  # left to its own worker
    runner = {t.user_attrs["worker"]["pid"] for t in study.trials[1:]}
    assert len(runner) == 1 and identity["pid"] not in runner
    (again,) = [t for t in study.trials[1:] if t.user_attrs.get("baseline")]
    assert again.params == killed.params  # the killed baseline, queued again

    rows = json.loads(run_cli("leaderboard", "--db", tmp_path / "leaderboard.db", "--json").stdout)
    trials = sorted((r["trial_number"], r["state"]) for r in rows if r["kind"] == "trial")
    assert trials == [(0, "failed"), (1, "complete"), (2, "complete")]  # each number run once
    failed = next(r for r in rows if r["id"] == "run/t0000")
    assert failed["params"]["error"] == "no heartbeat from its worker"
    assert not (run_dir / "trials" / "t0000" / "test_probs.npy").exists()
    members = {m["id"] for m in json.loads((run_dir / "ensemble.json").read_text())["members"]}
    assert members <= {"run/t0001", "run/t0002"}
