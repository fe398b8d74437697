"""The embedded default: no --url, no IUCORE_DATABASE_URL → a server from the wheel.

These run the real `iucore` console script in subprocesses with their own
IUCORE_HOME, so they start (and stop) a second, private cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import PG_MAJOR, SAMPLE

IUCORE = str(Path(sys.executable).with_name("iucore"))


@pytest.fixture
def home(pg_major: int) -> Iterator[Path]:
    """A private IUCORE_HOME; its cluster (of the major under test) is stopped and removed after."""
    h = Path(tempfile.mkdtemp(prefix="iucore-home-"))
    yield h
    env = {**os.environ, "IUCORE_HOME": str(h), "IUCORE_PG_MAJOR": str(pg_major)}
    env.pop("IUCORE_DATABASE_URL", None)
    subprocess.run([IUCORE, "server", "stop"], env=env, capture_output=True, timeout=60)
    shutil.rmtree(h, ignore_errors=True)


def iucore(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the console script; the caller checks the exit code (see `run_ok`)."""
    env = {**os.environ, "IUCORE_HOME": str(home), "IUCORE_PG_MAJOR": str(PG_MAJOR)}
    env.pop("IUCORE_DATABASE_URL", None)
    return subprocess.run([IUCORE, "--project", str(SAMPLE), *args], env=env,
                          capture_output=True, text=True, timeout=120)


def run_ok(home: Path, *args: str) -> str:
    """Run the console script, assert it exited 0, return its stdout."""
    res = iucore(home, *args)
    assert res.returncode == 0, (args, res.returncode, res.stderr)
    return res.stdout


def test_upgrade_starts_the_server_on_demand_and_the_next_command_reuses_it(home: Path) -> None:
    st = json.loads(run_ok(home, "--json", "server", "status"))
    assert st["running"] is False and st["initialised"] is False
    assert "iucore: now at a3" in run_ok(home, "db", "upgrade", "head")
    st = json.loads(run_ok(home, "--json", "server", "status"))
    assert st["running"] is True and st["major"] == PG_MAJOR
    assert st["datadir"].startswith(str(home))
    assert run_ok(home, "db", "current").strip() == "a3 (head)"
    # same server: same pid after another command
    assert json.loads(run_ok(home, "--json", "server", "status"))["pid"] == st["pid"]
    url = run_ok(home, "server", "url").strip()
    assert url.startswith("postgresql://postgres@/iucore?host=") and ":" not in url.split("@", 1)[0][13:]
    assert run_ok(home, "server", "stop").strip() == "stopped"
    assert json.loads(run_ok(home, "--json", "server", "status"))["running"] is False
    # data survives a restart
    assert run_ok(home, "db", "current").strip() == "a3 (head)"


def test_concurrent_processes_never_start_two_servers(home: Path) -> None:
    env = {**os.environ, "IUCORE_HOME": str(home), "IUCORE_PG_MAJOR": str(PG_MAJOR)}
    env.pop("IUCORE_DATABASE_URL", None)
    procs = [
        subprocess.Popen([IUCORE, "--json", "server", "start"], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    pids = {json.loads(o)["pid"] for o, _ in outs}
    assert len(pids) == 1
    # exactly one postmaster on this data directory
    ps = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    postmasters = [line for line in ps.splitlines() if "postgres -D" in line and str(home) in line]
    assert len(postmasters) == 1, postmasters
