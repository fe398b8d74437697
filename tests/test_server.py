"""The embedded default: no --url, no IUCORE_DATABASE_URL → a server from the wheel.

These run the real `iucore` console script in subprocesses with their own
IUCORE_HOME, so they start (and stop) a second, private cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import PG_MAJOR, PROJECTS

IUCORE = str(Path(sys.executable).with_name("iucore"))
SAMPLE = PROJECTS / "sample"


@pytest.fixture
def home() -> Iterator[Path]:
    h = Path(tempfile.mkdtemp(prefix="iucore-home-"))
    yield h
    env = {**os.environ, "IUCORE_HOME": str(h), "IUCORE_PG_MAJOR": str(PG_MAJOR)}
    env.pop("IUCORE_DATABASE_URL", None)
    subprocess.run([IUCORE, "server", "stop"], env=env, capture_output=True, timeout=60)
    subprocess.run(["rm", "-rf", str(h)], check=False)


def iucore(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "IUCORE_HOME": str(home), "IUCORE_PG_MAJOR": str(PG_MAJOR)}
    env.pop("IUCORE_DATABASE_URL", None)
    return subprocess.run([IUCORE, "--project", str(SAMPLE), *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_upgrade_starts_the_server_on_demand_and_the_next_command_reuses_it(home: Path) -> None:
    st = json.loads(iucore(home, "--json", "server", "status").stdout)
    assert st["running"] is False and st["initialised"] is False
    up = iucore(home, "db", "upgrade", "head")
    assert up.returncode == 0, up.stderr
    assert "iucore: now at a3" in up.stdout
    st = json.loads(iucore(home, "--json", "server", "status").stdout)
    assert st["running"] is True and st["major"] == PG_MAJOR
    assert st["datadir"].startswith(str(home))
    cur = iucore(home, "db", "current")
    assert cur.stdout.strip() == "a3 (head)"
    # same server: same pid after another command
    assert json.loads(iucore(home, "--json", "server", "status").stdout)["pid"] == st["pid"]
    url = iucore(home, "server", "url").stdout.strip()
    assert url.startswith("postgresql://postgres@/iucore?host=") and ":" not in url.split("@", 1)[0][13:]
    stop = iucore(home, "server", "stop")
    assert stop.stdout.strip() == "stopped"
    assert json.loads(iucore(home, "--json", "server", "status").stdout)["running"] is False
    # data survives a restart
    assert iucore(home, "db", "current").stdout.strip() == "a3 (head)"


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
    ps = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True).stdout
    postmasters = [line for line in ps.splitlines() if "postgres -D" in line and str(home) in line]
    assert len(postmasters) == 1, postmasters
