"""Short lock waits, retried (GitLab's WithLockRetries, for every iucore run).

A run waits at most `lock_timeout` for any lock. Production keeps writing
while it waits, and PostgreSQL queues every later conflicting request behind
the migration's, so that wait is what production can be made to wait, per
try. A lock timeout (SQLSTATE 55P03) rolls the unit back whole: one revision
of a real run, a whole rehearsal, a runtime data script, a self-test. After a
growing, jittered sleep the unit runs again from its first statement, until
`lock_retries` retries or `retry_budget` are spent; then LockRetriesExhausted
(exit 3, or 5 when earlier revisions of the run committed). The sleeps hold
no lock: the unit's transaction is gone.

Who held the lock must be read while the run waits: once lock_timeout fires
nobody waits any more and pg_blocking_pids() has nothing to say. A LockWatch
polls on a connection of its own, while a try runs, whether the run's backend
waits for a heavyweight lock (pg_stat_activity, no lock taken) and only then
asks pg_blocking_pids() who holds it.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import IUCoreError, LockRetriesExhausted
from ..pg.db import connect

if TYPE_CHECKING:
    import psycopg

    from ..config import RunOptions
    from ..pg.target import Target
    from .transcript import Sink

T = TypeVar("T")
LOCK_NOT_AVAILABLE = "55P03"
# The sleep after the n-th lock timeout is drawn from [cap/2, cap], cap =
# FIRST_SLEEP_S * 2^(n-1), at most MAX_SLEEP_S: quick retries while the holder
# is an ordinary short transaction, then backing off from a long one without
# ever missing its end by more than MAX_SLEEP_S. The jitter keeps two runs
# (or a run and a retrying application) from colliding in step.
FIRST_SLEEP_S = 0.1
MAX_SLEEP_S = 10.0
_QUERY_CHARS = 120

# While the watched backend waits for a lock: who holds it. Cheap when it does
# not wait (the WHERE filters pg_stat_activity before pg_blocking_pids runs).
_HOLDERS_SQL = """
SELECT b.pid, b.application_name, b.usename::text,
       extract(epoch FROM clock_timestamp() - b.xact_start)::float8, b.state, b.query
  FROM pg_catalog.pg_stat_activity AS w
 CROSS JOIN LATERAL unnest(pg_catalog.pg_blocking_pids(w.pid)) AS h(pid)
  JOIN pg_catalog.pg_stat_activity AS b ON b.pid = h.pid
 WHERE w.pid = %s AND w.wait_event_type = 'Lock'
 ORDER BY b.xact_start NULLS LAST, b.pid"""


@dataclass(frozen=True)
class Holder:
    """A session the run waited for, as pg_stat_activity showed it at the time."""

    pid: int
    application: str | None
    user: str | None
    open_s: float | None  # how long its transaction had been open
    state: str | None
    query: str | None  # first line, shortened; None when the role may not see it

    def describe(self) -> str:
        parts = [f"application {self.application or '(none)'}"]
        if self.user:
            parts.append(f"user {self.user}")
        if self.open_s is not None:
            parts.append(f"transaction open {self.open_s:.1f} s")
        if self.state:
            parts.append(self.state)
        text = f"pid {self.pid} ({', '.join(parts)}"
        return text + (f": {self.query})" if self.query else ")")

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "application": self.application, "user": self.user,
                "transaction_open_s": None if self.open_s is None else round(self.open_s, 3),
                "state": self.state, "query": self.query}


def _first_line(query: str | None) -> str | None:
    if not query:
        return None
    line = next((ln.strip() for ln in query.splitlines() if ln.strip()), "")
    return line if len(line) <= _QUERY_CHARS else line[: _QUERY_CHARS - 1] + "…"


def read_holders(conn: psycopg.Connection[Any], pid: int) -> list[Holder]:
    """The sessions backend `pid` is waiting for right now (empty: it is not waiting for a lock)."""
    rows = conn.execute(_HOLDERS_SQL, (pid,)).fetchall()
    return [Holder(pid=r[0], application=r[1], user=r[2], open_s=r[3], state=r[4], query=_first_line(r[5]))
            for r in rows]


class LockWatch:
    """Sees, while a try runs, whom the run's backend waits for (see the module doc).

    One connection of its own (application `<app>:watch`) and one daemon
    thread, polling only while armed. A watch that fails is no reason to fail
    the run: the holder is then reported as not seen.
    """

    def __init__(self, target: Target, pid: int, *, app: str, lock_timeout_ms: int) -> None:
        self._pid = pid
        # Several looks within one lock_timeout, never a busy loop.
        self._interval = min(0.05, max(0.005, lock_timeout_ms / 1000 / 8))
        self._conn = connect(target, autocommit=True, app=f"{app}:watch")
        self._mutex = threading.Lock()
        self._seen: list[Holder] = []
        self._generation = 0
        self._armed = threading.Event()
        self._stop = threading.Event()
        self.error: str | None = None
        self._thread = threading.Thread(target=self._loop, name="iucore-lock-watch", daemon=True)
        self._thread.start()

    def arm(self) -> None:
        """A try starts: forget what the last one waited for, and watch."""
        with self._mutex:
            self._generation += 1
            self._seen = []
        self._armed.set()

    def disarm(self) -> None:
        self._armed.clear()

    def holders(self) -> list[Holder]:
        """Whom the run last waited for in this try (the lock that timed out: it waited longest)."""
        with self._mutex:
            return list(self._seen)

    def close(self) -> None:
        self._stop.set()
        self._armed.set()  # wake the loop so it sees the stop
        self._thread.join(timeout=10)
        with contextlib.suppress(Exception):  # the run's outcome does not depend on it
            self._conn.close()

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self._armed.wait()
                if self._stop.is_set():
                    break
                with self._mutex:
                    generation = self._generation
                found = read_holders(self._conn, self._pid)
                if found:
                    with self._mutex:
                        if generation == self._generation:
                            self._seen = found
                self._stop.wait(self._interval)
        except Exception as exc:  # the watch is evidence, never the reason a run fails
            self.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"


def is_lock_timeout(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) is PostgreSQL's lock_not_available (55P03)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if getattr(e, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            return True
        if isinstance(e, IUCoreError) and e.data.get("sqlstate") == LOCK_NOT_AVAILABLE:
            return True
        orig = getattr(e, "orig", None)  # SQLAlchemy's wrapper of the driver's error
        todo.extend([e.__cause__, e.__context__, orig if isinstance(orig, BaseException) else None])
    return False


@dataclass
class LockTimeout:
    """One try that hit lock_timeout."""

    attempt: int
    at: float  # epoch seconds
    waited_ms: float  # how long the try ran, its lock wait included
    where: str | None  # file:line of the statement that waited
    holders: list[Holder]
    sleep_s: float | None = None  # None: the last try

    def to_json(self) -> dict[str, Any]:
        return {"try": self.attempt, "at": round(self.at, 3), "waited_ms": round(self.waited_ms, 1),
                "statement": self.where, "holders": [h.to_json() for h in self.holders],
                "sleep_s": None if self.sleep_s is None else round(self.sleep_s, 3)}


@dataclass
class Unit:
    """The tries of one unit (a revision, a whole rehearsal, a data script, a self-test)."""

    name: str
    started: float  # epoch seconds: the first try's start
    tries: int = 1
    timeouts: list[LockTimeout] = field(default_factory=list)
    gave_up: bool = False

    def to_json(self, options: RunOptions) -> dict[str, Any]:
        return {"tries": self.tries, "lock_timeout_ms": options.lock_timeout_ms,
                "lock_retries": options.lock_retries, "retry_budget_ms": options.retry_budget_ms,
                "gave_up": self.gave_up, "timeouts": [t.to_json() for t in self.timeouts]}


class LockRetries:
    """The retry policy and its record for one command run (see the module doc).

    Enabled when lock_retries > 0 and lock_timeout is set: with
    `--lock-retries 0` a lock timeout fails the run as it always did.
    """

    def __init__(self, options: RunOptions, *, sink: Sink | None = None,
                 rng: random.Random | None = None) -> None:
        self.options = options
        self.sink = sink
        self.units: dict[str, Unit] = {}
        self.watch: LockWatch | None = None
        self._rng = rng or random.Random()
        self._try_started = time.time()

    @property
    def enabled(self) -> bool:
        return self.options.lock_retries > 0 and self.options.lock_timeout_ms > 0

    @property
    def max_tries(self) -> int:
        return self.options.lock_retries + 1

    def watch_backend(self, target: Target, pid: int, app: str) -> None:
        """Start watching whom backend `pid` waits for (nothing when retries are off)."""
        if self.enabled and self.watch is None:
            try:
                self.watch = LockWatch(target, pid, app=app, lock_timeout_ms=self.options.lock_timeout_ms)
            except IUCoreError as exc:  # the run reports holders as not seen
                if self.sink:
                    self.sink(f"-- lock watch not available ({exc.message}): holders will not be named")

    def close(self) -> None:
        if self.watch is not None:
            self.watch.close()
            self.watch = None

    def begin_try(self) -> None:
        self._try_started = time.time()
        if self.watch is not None:
            self.watch.arm()

    def end_try(self) -> None:
        if self.watch is not None:
            self.watch.disarm()

    def retryable(self, exc: BaseException) -> bool:
        return self.enabled and is_lock_timeout(exc)

    def timed_out(self, exc: BaseException | None, unit: str, direction: str = "", *, where: str | None = None,
                  started: float | None = None) -> float:
        """Record that the current try of `unit` hit lock_timeout (it has been rolled back).

        Returns the seconds to sleep before the next try, after writing the
        transcript line; raises LockRetriesExhausted (from `exc`) when no try
        is left within lock_retries and retry_budget. `started`: when this try
        of the unit began (default: at begin_try; a real run's revision begins
        later, after the revisions before it in the same try committed).
        """
        self.end_try()
        now = time.time()
        began = started if started is not None else self._try_started
        u = self.units.get(unit)
        if u is None:
            u = self.units[unit] = Unit(unit, started=began)
        holders = self.watch.holders() if self.watch is not None else []
        t = LockTimeout(attempt=u.tries, at=now, waited_ms=(now - began) * 1000, where=where, holders=holders)
        u.timeouts.append(t)
        n = len(u.timeouts)
        cap = min(MAX_SLEEP_S, FIRST_SLEEP_S * 2 ** (n - 1))
        sleep = cap / 2 + self._rng.uniform(0, cap / 2)
        elapsed = now - u.started
        budget = self.options.retry_budget_ms / 1000
        if u.tries >= self.max_tries or (budget > 0 and elapsed + sleep > budget):
            u.gave_up = True
            self._say(f"-- lock timeout on try {u.tries}/{self.max_tries} ({where or unit}) waiting on "
                      f"{self._holder_text(holders)}; giving up after {elapsed:.1f} s")
            raise self._exhausted(u, direction, elapsed) from exc
        t.sleep_s = sleep
        self._say(f"-- lock timeout on try {u.tries}/{self.max_tries} ({where or unit}) waiting on "
                  f"{self._holder_text(holders)}; retrying in {sleep:.1f} s")
        return sleep

    def call(self, unit: str, read: Callable[[], T]) -> T:
        """`read` (a transaction of its own that rolls itself back on error), retried on a lock timeout.

        For what a run reads around its units (a rehearsal's catalog
        snapshots): an ACCESS SHARE waits only behind an ACCESS EXCLUSIVE held
        or queued, and then it waits like any other lock request.
        """
        while True:
            self.begin_try()
            try:
                return read()
            except Exception as exc:
                if not self.retryable(exc):
                    raise
                self.sleep(self.timed_out(exc, unit))
                self.next_try(unit)
            finally:
                self.end_try()

    def next_try(self, unit: str) -> None:
        """The unit runs again (after its sleep)."""
        self.units[unit].tries += 1

    def sleep(self, seconds: float) -> None:
        """Between tries, holding no lock; SIGINT/SIGTERM interrupt it like any statement."""
        time.sleep(seconds)

    def evidence(self, unit: str) -> dict[str, Any] | None:
        """The audit evidence of a unit that hit a lock timeout (None: it never did)."""
        u = self.units.get(unit)
        return u.to_json(self.options) if u is not None else None

    def _exhausted(self, u: Unit, direction: str, elapsed: float) -> LockRetriesExhausted:
        holders = u.timeouts[-1].holders
        what = f"{u.name} {direction}".strip()
        budget = self.options.retry_budget_ms / 1000
        limit = (f"{u.tries} of {self.max_tries} tries (--lock-retries {self.options.lock_retries})"
                 if u.tries >= self.max_tries else
                 f"{u.tries} tries: the next would start past the retry budget of {budget:g} s")
        msg = (f"{what}: lock_timeout ({self.options.lock_timeout_ms} ms) on every try, {limit}, "
               f"{elapsed:.1f} s in all; it waited on {self._holder_text(holders)}. Every try was rolled "
               f"back. End or wait for that transaction, then run again (or raise --retry-budget / "
               f"--lock-retries)")
        watch_error = self.watch.error if self.watch is not None else None
        return LockRetriesExhausted(
            msg, revision=u.name, direction=direction or None, tries=u.tries, elapsed_s=round(elapsed, 3),
            holder=holders[0].to_json() if holders else None, holders=[h.to_json() for h in holders],
            timeouts=[t.to_json() for t in u.timeouts], sqlstate=LOCK_NOT_AVAILABLE,
            **({"watch_error": watch_error} if watch_error else {}),
        )

    def _holder_text(self, holders: list[Holder]) -> str:
        if not holders:
            why = f" ({self.watch.error})" if self.watch is not None and self.watch.error else ""
            return f"a lock whose holder was not seen{why}"
        extra = f" and {len(holders) - 1} more" if len(holders) > 1 else ""
        return holders[0].describe() + extra

    def _say(self, line: str) -> None:
        if self.sink:
            self.sink(line)
