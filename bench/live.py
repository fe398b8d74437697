"""The live-traffic scenario: what production sees while iucore migrates.

A steady, mixed IU Core workload runs from several connections (one per kind
of operation, each at its own fixed rate) while ONE long transaction holds a
lock that the migration needs, and an iucore command runs as a real process.
Every operation is timed from the moment it was due (open-loop: a client that
arrives on schedule and has to wait sees the whole wait), so a connection stuck
behind a lock queue shows every operation that queued behind it.

Each scenario runs three times, on three fresh databases built the same way,
in an order that rotates from scenario to scenario:

- `baseline`: the same workload and the same long transaction, no migration;
- `retry`: the iucore command with a short lock_timeout and lock retries
  (when the installed iucore has them; otherwise it says so);
- `today`: the iucore command as it behaves without retries: one try, the
  former default lock_timeout of 5 s (`--lock-retries 0 --lock-timeout 5s`).

What production saw is the workload's latency against the baseline's; what
the DBA saw is the command's tries, wall time and outcome. The targets
(issue 12): the workload's added wait at most 2x the configured lock_timeout,
no workload error, and the migration completes once the long transaction
ends, inside its budget.

The mix is the IU Core traffic that is valid on BOTH sides of the change being
measured: an operation that the migration removes (the dispatcher, when
least_privilege is rolled back) would fail afterwards for a reason that has
nothing to do with locks, and a gate the guard refuses to see open (the gate
protocol's and least_privilege's rollbacks, the self-tests) stays shut, so the
composer writes sit out those scenarios. bench/README.md lists the mix of each.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from harness import ROOT, TIMES, BenchServer, child_env, executable, fmt_time

from iu_core.config import RunOptions
from iu_core.domain.runtime import OperatorRuntime
from iu_core.framework import migrate
from iu_core.framework.fingerprint import current_heads

Say = Callable[[str], None]

# ---------------------------------------------------------------- timeline (seconds from the start)
HOLD_AT = 0.5  # the long transaction takes its lock
HOLD_FOR = 5.0  # … and keeps it this long (issue 12: "a few seconds")
MIGRATE_AT = 0.6  # the iucore process starts (its lock request comes 1-2 s later: start-up, checks)
AFTER = 1.0  # the workload keeps running this long after the command ended
MIN_WINDOW = HOLD_AT + HOLD_FOR + 2.0  # the baseline's window, and the shortest window of a run
MAX_COMMAND = 180.0  # a command still running after this is killed (and the scenario fails)

# Operations per second of each kind; each kind has its own connection.
RATES = {
    "config_read": 20.0,  # a gate/runtime-key read, as every IU Core function does
    "config_touch": 5.0,  # an update of a runtime key (the touch trigger moves updated_at)
    "emit": 10.0,  # fn_iu_emit_event: one event into event_outbox
    "worker": 4.0,  # the route worker, 20 events per run (attempts, the run event)
    "clone": 8.0,  # the composer birth gate fn_iu_create (a unit)
    "reorder": 8.0,  # a composer reorder (the collection, its members, a composer event)
}
ACTOR = "bench-live"
ROUTE = "iu_outbound_default"
RUNTIME_KEY = "iu_core.delivery_live_routes"  # touched by the workload (a runtime key, value kept)
HOLD_KEY = "iu_sql_link.enabled"  # held by the long transaction (another runtime key, value kept)
COMPOSER_GATE = "iu_core.composer_enabled"

# Lock settings of the two ways of running a command.
RETRY_LOCK_TIMEOUT = "200ms"  # iucore's defaults, spelled out so that the table shows them
RETRY_LOCK_RETRIES = "40"
RETRY_BUDGET = "3min"
TODAY_LOCK_TIMEOUT = "5s"  # the former default, and no retry


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    start: str  # the revision the fresh database is at
    argv: tuple[str, ...]  # the iucore command after `--url URL`
    end: str  # where a completed real run leaves the database
    holder: str  # what the long transaction holds: config | outbox | unit | gate_row
    ops: tuple[str, ...]  # the workload's kinds of operation
    dispatcher: bool = False  # the governed entry point exists before and after
    locks: str = ""  # what the command locks that the workload writes (for the table)


_COMMON = ("config_read", "config_touch", "emit", "worker")
SCENARIOS: tuple[Scenario, ...] = (
    Scenario("upgrade", "`db upgrade head` (gate_protocol → worker_pick)", "gate_protocol",
             ("db", "upgrade", "head"), "worker_pick", "config", (*_COMMON, "clone", "reorder"),
             locks="dot_config SHARE ROW EXCLUSIVE (a new FK to it); ledger, catalog, iu_collection ACCESS EXCLUSIVE"),
    Scenario("rehearse", "`db upgrade head --rehearse` (the same, rolled back)", "gate_protocol",
             ("db", "upgrade", "head", "--rehearse"), "gate_protocol", "config", (*_COMMON, "clone", "reorder"),
             locks="as the upgrade"),
    # The workload runs the route worker the rollback drops and re-creates.
    Scenario("down_worker_pick", "`db downgrade least_privilege` (worker_pick's rollback)", "worker_pick",
             ("db", "downgrade", "least_privilege"), "least_privilege", "config", _COMMON,
             locks="the route worker's function (no table)"),
    Scenario("down_least_privilege", "`db downgrade gate_protocol` (least_privilege's rollback)", "least_privilege",
             ("db", "downgrade", "gate_protocol"), "gate_protocol", "config", _COMMON,
             locks="dot_config SHARE (guard)"),
    Scenario("down_gate_protocol", "`db downgrade 034` (gate_protocol's rollback)", "gate_protocol",
             ("db", "downgrade", "034"), "034", "config", _COMMON, locks="dot_config SHARE (guard)"),
    Scenario("down_034", "`db downgrade 033` (034's rollback)", "034", ("db", "downgrade", "033"), "033",
             "config", (*_COMMON, "clone", "reorder"), locks="two catalog rows (no hot table)"),
    Scenario("down_033", "`db downgrade 280` (033's rollback)", "033", ("db", "downgrade", "280"), "280",
             "outbox", (*_COMMON, "clone", "reorder"), locks="event_outbox SHARE (guard)"),
    Scenario("down_017", "`db downgrade 260` (017's rollback)", "017", ("db", "downgrade", "260"), "260",
             "unit", (*_COMMON, "clone", "reorder"), locks="information_unit SHARE (guard)"),
    # 260's guard refuses while composer events exist: no reorder (it emits one); clone emits a lifecycle event.
    Scenario("down_260", "`db downgrade 016` (260's rollback)", "260", ("db", "downgrade", "016"), "016",
             "outbox", (*_COMMON, "clone"), locks="event_outbox, iu_route_attempt SHARE (guard)"),
    # The self-tests expect the gates shut (they open and close them themselves, inside their transaction).
    Scenario("selftest", "`selftest` (every self-test, BEGIN … ROLLBACK)", "worker_pick", ("selftest",),
             "worker_pick", "gate_row", _COMMON, dispatcher=True,
             locks="rows of dot_config and the tables each self-test writes"),
)
STARTS = sorted({s.start for s in SCENARIOS})


# ---------------------------------------------------------------- the workload
@dataclass
class Sample:
    kind: str
    due: float  # when the operation was due (seconds from the run's start)
    done: float
    error: str | None = None

    @property
    def latency(self) -> float:
        return self.done - self.due


@dataclass
class Fixture:
    """What a database needs for the workload's composer operations (made before the window)."""

    collection: str | None = None
    pieces: list[str] = field(default_factory=list)


def _check(kind: str, answer: Any, want: str) -> None:
    status = answer.get("status") if isinstance(answer, dict) else None
    if status != want:
        raise RuntimeError(f"{kind} answered {json.dumps(answer)[:200]}")


def _op(kind: str, conn: psycopg.Connection[Any], fx: Fixture, rt: OperatorRuntime | None, n: int) -> None:
    """One operation of KIND; raises on an error or an unexpected answer."""
    if kind == "config_read":
        row = conn.execute("SELECT c.value, public.fn_iu_gate_is_open(%s) FROM public.dot_config c"
                           " WHERE c.key = 'iu_core.route_worker_enabled'", (COMPOSER_GATE,)).fetchone()
        if row is None:
            raise RuntimeError("config_read: no row")
    elif kind == "config_touch":
        cur = conn.execute("UPDATE public.dot_config SET value = value WHERE key = %s", (RUNTIME_KEY,))
        if cur.rowcount != 1:
            raise RuntimeError(f"config_touch updated {cur.rowcount} rows")
    elif kind == "emit":
        row = conn.execute("SELECT public.fn_iu_emit_event('iu', 'structure_child_added', %s, '{}'::jsonb, %s)",
                           (f"bench-live:{uuid.uuid4()}", ACTOR)).fetchone()
        if row is None or row[0] is None:
            raise RuntimeError("emit: no event written")
    elif kind == "worker":
        if rt is not None:  # the governed entry point: gate read, call and ledger row in one statement
            ans = rt.apply("dot_iu_route_worker_run", {"route_code": ROUTE, "limit": 20})
            if ans.status != "applied":
                raise RuntimeError(f"worker via dispatcher answered {ans.status}: {ans.guidance}")
        else:
            row = conn.execute("SELECT public.fn_iu_route_worker_run(%s, 20)", (ROUTE,)).fetchone()
            if row is None or not isinstance(row[0], dict) or "attempts_written" not in row[0]:
                raise RuntimeError(f"worker answered {row}")
    elif kind == "clone":
        row = conn.execute("SELECT public.fn_iu_create(%s, 'piece', 'live piece', %s)",
                           (f"bench/live/{uuid.uuid4()}", ACTOR)).fetchone()
        _check(kind, row[0] if row else None, "created")
    elif kind == "reorder":
        assert fx.collection is not None
        piece = fx.pieces[n % len(fx.pieces)]
        row = conn.execute("SELECT public.fn_iu_collection_reorder_piece(%s, %s, %s, %s)",
                           (fx.collection, piece, (n * 7) % len(fx.pieces), ACTOR)).fetchone()
        _check(kind, row[0] if row else None, "reordered")
    else:
        raise ValueError(kind)


def _worker_thread(bs: BenchServer, db: str, kind: str, fx: Fixture, dispatcher: bool, t0: float,
                   stop: threading.Event, out: list[Sample]) -> None:
    interval = 1.0 / RATES[kind]
    with psycopg.connect(bs.url(db), autocommit=True, application_name=f"bench-live-{kind}") as conn:
        rt = OperatorRuntime(conn, ACTOR) if (kind == "worker" and dispatcher) else None
        n = 0
        while not stop.is_set():
            due = n * interval
            now = time.perf_counter() - t0
            if due > now:
                time.sleep(due - now)
                if stop.is_set():
                    break
            err = None
            try:
                _op(kind, conn, fx, rt, n)
            except Exception as exc:  # a workload error is a finding, not a crash
                err = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ''}"
            out.append(Sample(kind, due, time.perf_counter() - t0, err))
            n += 1


def _holder(bs: BenchServer, db: str, kind: str, t0: float, held: dict[str, float]) -> None:
    """The long transaction: takes its lock at HOLD_AT, keeps it HOLD_FOR seconds, rolls back."""
    with psycopg.connect(bs.url(db), autocommit=False, application_name="bench-live-long-transaction") as conn:
        time.sleep(max(0.0, HOLD_AT - (time.perf_counter() - t0)))
        if kind == "config":
            conn.execute("UPDATE public.dot_config SET value = value WHERE key = %s", (HOLD_KEY,))
        elif kind == "gate_row":  # a row the self-tests update
            conn.execute("UPDATE public.dot_config SET value = value WHERE key = %s", (COMPOSER_GATE,))
        elif kind == "outbox":
            row = conn.execute("SELECT public.fn_iu_emit_event('iu', 'structure_child_added', %s, '{}'::jsonb, %s)",
                               (f"bench-live:holder:{uuid.uuid4()}", ACTOR)).fetchone()
            if not row or row[0] is None:
                raise RuntimeError("the long transaction wrote no event")
        elif kind == "unit":
            row = conn.execute("SELECT public.fn_iu_create(%s, 'piece', 'held piece', %s)",
                               (f"bench/live/holder/{uuid.uuid4()}", ACTOR)).fetchone()
            _check("holder", row[0] if row else None, "created")
        else:
            raise ValueError(kind)
        held["from"] = time.perf_counter() - t0
        time.sleep(HOLD_FOR)
        conn.rollback()
        held["to"] = time.perf_counter() - t0


# ---------------------------------------------------------------- databases
def build_templates(bs: BenchServer, say: Say) -> dict[str, str]:
    """One database per start revision, built in-process (untimed)."""
    out: dict[str, str] = {}
    for rev in STARTS:
        name = bs.create(f"live_{rev}")
        migrate.upgrade(bs.target(name), rev, project=ROOT, options=RunOptions(actor="bench-setup"))
        out[rev] = name
    say(f"  templates at {', '.join(STARTS)}")
    return out


def _prepare(bs: BenchServer, db: str, sc: Scenario) -> Fixture:
    """Open what the workload needs for the window, the way production would at this revision."""
    fx = Fixture()
    if "clone" not in sc.ops and "reorder" not in sc.ops:
        return fx
    with psycopg.connect(bs.url(db), autocommit=True) as conn:
        protocol = conn.execute("SELECT to_regprocedure('public.fn_iu_gate_open(text,uuid,text,text,integer)')"
                                " IS NOT NULL").fetchone() == (True,)
        if protocol:  # through the gate protocol, with an approval and a TTL
            row = conn.execute("SELECT public.fn_iu_gate_open(%s, %s, 'bench: live traffic window', %s, 900)",
                               (COMPOSER_GATE, str(uuid.uuid4()), ACTOR)).fetchone()
            _check("gate open", row[0] if row else None, "opened")
        else:  # before the gate protocol, a gate was a dot_config value (seed 003)
            conn.execute("UPDATE public.dot_config SET value = 'true' WHERE key = %s", (COMPOSER_GATE,))
        if "reorder" in sc.ops:
            for i in range(6):
                row = conn.execute("SELECT public.fn_iu_create(%s, 'piece', 'live member', %s)",
                                   (f"bench/live/member-{i}", ACTOR)).fetchone()
                _check("member", row[0] if row else None, "created")
                fx.pieces.append(row[0]["iu_id"])  # type: ignore[index]
            row = conn.execute("SELECT public.fn_iu_compose('bench/live/collection', 'file', 'live collection',"
                               " %s::uuid[], %s)", (fx.pieces, ACTOR)).fetchone()
            _check("compose", row[0] if row else None, "composed")
            fx.collection = row[0]["collection_id"]  # type: ignore[index]
    return fx


# ---------------------------------------------------------------- one run
@dataclass
class CommandRun:
    argv: list[str]
    options: list[str] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0
    rc: int | None = None
    output: str = ""
    tries: int = 1

    @property
    def wall(self) -> float:
        return self.ended - self.started

    def outcome(self, released: float | None = None) -> str:
        if self.rc == 0:
            if released is not None and self.ended > released:
                return f"completed {self.ended - released:.2f} s after the long transaction ended"
            return "completed (it needed no lock the long transaction held)" if released else "completed"
        last = [ln for ln in self.output.strip().splitlines() if ln.strip()][-1:] or ["(no output)"]
        return f"exit {self.rc}: {last[0][:140]}"


@dataclass
class RunResult:
    scenario: str
    variant: str  # baseline | retry | today
    samples: list[Sample]
    held: dict[str, float]
    window: float
    command: CommandRun | None = None
    heads_after: list[str] = field(default_factory=list)
    lock_timeout_s: float | None = None

    @property
    def latencies(self) -> list[float]:
        return sorted(s.latency for s in self.samples)

    @property
    def errors(self) -> list[Sample]:
        return [s for s in self.samples if s.error]

    def pct(self, p: float) -> float:
        xs = self.latencies
        if not xs:
            return float("nan")
        k = min(len(xs) - 1, max(0, math.ceil(p / 100 * len(xs)) - 1))  # nearest rank
        return xs[k]

    @property
    def worst(self) -> float:
        return max(self.latencies) if self.samples else float("nan")

    def worst_of(self, kind: str) -> float:
        xs = [s.latency for s in self.samples if s.kind == kind]
        return max(xs) if xs else float("nan")


_TIMEOUT_LINE = re.compile(r"lock timeout on try \d+")


def _tries(output: str, rc: int | None) -> int:
    """How many times the command ran its unit: one more than the lock timeouts it reported,
    unless it gave up after the last one."""
    timeouts = len(_TIMEOUT_LINE.findall(output))
    return timeouts + (0 if timeouts and "giving up" in output else 1)


def run_once(bs: BenchServer, template: str, sc: Scenario, variant: str, extra: list[str],
             lock_timeout_s: float | None) -> RunResult:
    db = bs.create(f"live_{sc.key}_{variant}", template)
    try:
        fx = _prepare(bs, db, sc)
        samples: list[Sample] = []
        lists: dict[str, list[Sample]] = {k: [] for k in sc.ops}
        stop = threading.Event()
        held: dict[str, float] = {}
        t0 = time.perf_counter()
        threads = [threading.Thread(target=_worker_thread, name=f"live-{k}",
                                    args=(bs, db, k, fx, sc.dispatcher, t0, stop, lists[k]), daemon=True)
                   for k in sc.ops]
        holder = threading.Thread(target=_holder, args=(bs, db, sc.holder, t0, held), daemon=True)
        for th in [*threads, holder]:
            th.start()
        cmd: CommandRun | None = None
        if variant != "baseline":
            time.sleep(max(0.0, MIGRATE_AT - (time.perf_counter() - t0)))
            argv = [executable("iucore"), "--url", bs.url(db), *sc.argv, *extra]
            cmd = CommandRun(argv=[*sc.argv, *extra], options=list(extra))
            cmd.started = time.perf_counter() - t0
            try:
                proc = subprocess.run(argv, cwd=ROOT, env=child_env(), stdin=subprocess.DEVNULL,
                                      capture_output=True, text=True, timeout=MAX_COMMAND)
                cmd.rc, cmd.output = proc.returncode, (proc.stdout + proc.stderr)
            except subprocess.TimeoutExpired as exc:
                cmd.rc, cmd.output = -1, f"killed after {MAX_COMMAND:g} s: {exc}"
            cmd.ended = time.perf_counter() - t0
            cmd.tries = _tries(cmd.output, cmd.rc)
        end = max(MIN_WINDOW, (cmd.ended + AFTER) if cmd else 0.0)
        time.sleep(max(0.0, end - (time.perf_counter() - t0)))
        stop.set()
        holder.join()
        for th in threads:
            th.join()
        window = time.perf_counter() - t0
        for k in sc.ops:
            samples += lists[k]
        with bs.connect(db) as conn:
            heads = current_heads(conn)
        return RunResult(sc.key, variant, samples, held, window, cmd, heads, lock_timeout_s)
    finally:
        bs.drop(db)


# ---------------------------------------------------------------- the lock options the installed iucore has
def lock_options() -> dict[str, list[str]]:
    """The extra arguments of each variant, by what `iucore db upgrade --help` offers."""
    proc = subprocess.run([executable("iucore"), "db", "upgrade", "--help"], cwd=ROOT, env=child_env(),
                          capture_output=True, text=True, check=True)
    if "--lock-retries" not in proc.stdout:  # an iucore from before issue 12: one short try
        return {"retry": ["--lock-timeout", RETRY_LOCK_TIMEOUT], "today": ["--lock-timeout", TODAY_LOCK_TIMEOUT]}
    return {"retry": ["--lock-timeout", RETRY_LOCK_TIMEOUT, "--lock-retries", RETRY_LOCK_RETRIES,
                      "--retry-budget", RETRY_BUDGET],
            "today": ["--lock-timeout", TODAY_LOCK_TIMEOUT, "--lock-retries", "0"]}


def selftest_takes_lock_options() -> bool:
    proc = subprocess.run([executable("iucore"), "selftest", "--help"], cwd=ROOT, env=child_env(),
                          capture_output=True, text=True, check=True)
    return "--lock-timeout" in proc.stdout


def _seconds(text: str) -> float:
    from iu_core.config import parse_duration

    return parse_duration(text, "lock_timeout") / 1000


# ---------------------------------------------------------------- the verdicts
@dataclass
class Verdict:
    scenario: Scenario
    variant: str
    run: RunResult
    baseline: RunResult

    @property
    def added_wait(self) -> float:
        """The workload's worst latency beyond the baseline's typical one (conservative:
        everything above the baseline's median is charged to iucore)."""
        return max(0.0, self.run.worst - self.baseline.pct(50))

    @property
    def wait_target(self) -> float | None:
        return 2 * self.run.lock_timeout_s if self.run.lock_timeout_s is not None else None

    @property
    def wait_ok(self) -> bool:
        return self.wait_target is not None and self.added_wait <= self.wait_target

    @property
    def errors_ok(self) -> bool:
        return not self.run.errors

    @property
    def completed_ok(self) -> bool:
        """Exit 0, the database where the command leaves it, inside the budget."""
        cmd = self.run.command
        if cmd is None or cmd.rc != 0 or self.run.heads_after != [self.scenario.end]:
            return False
        return self.variant != "retry" or cmd.wall <= _seconds(RETRY_BUDGET)


def _ms(x: float) -> str:
    return fmt_time(x)


def live(bs: BenchServer, reps: int, say: Say) -> list[Verdict]:
    """Every scenario: baseline, retry and today, interleaved; one run each (a timeline, not a sample)."""
    opts = lock_options()
    retry_extra, today_extra = opts["retry"], opts["today"]
    st_opts = selftest_takes_lock_options()
    say(f"  lock options: retry = {' '.join(retry_extra)}; today = {' '.join(today_extra)}"
        + ("" if "--lock-retries" in retry_extra else "  (this iucore has no --lock-retries: 'retry' is one short try)")
        + ("" if st_opts else "; selftest takes no lock options"))
    say(f"  workload per second: {', '.join(f'{k} {v:g}' for k, v in RATES.items())}; "
        f"long transaction from {HOLD_AT:g} s for {HOLD_FOR:g} s; command starts at {MIGRATE_AT:g} s")
    templates = build_templates(bs, say)
    verdicts: list[Verdict] = []
    try:
        # Warm-up: one baseline window (connections, plan caches, page cache), not kept.
        run_once(bs, templates[SCENARIOS[0].start], SCENARIOS[0], "baseline", [], None)
        for i, sc in enumerate(SCENARIOS):
            variants = ["baseline", "retry", "today"]
            variants = variants[i % 3:] + variants[:i % 3]
            results: dict[str, RunResult] = {}
            for v in variants:
                if v == "baseline":
                    extra: list[str] = []
                    lt = None
                elif sc.argv[0] != "selftest" or st_opts:
                    extra = retry_extra if v == "retry" else today_extra
                    lt = _seconds(RETRY_LOCK_TIMEOUT if v == "retry" else TODAY_LOCK_TIMEOUT)
                else:  # a command without lock options runs as it is, in both variants
                    extra, lt = [], None
                results[v] = run_once(bs, templates[sc.start], sc, v, extra, lt)
            base = results["baseline"]
            say(f"  {sc.key}: baseline p50 {_ms(base.pct(50))} p99 {_ms(base.pct(99))} max {_ms(base.worst)}, "
                f"{len(base.samples)} ops, {len(base.errors)} errors")
            for v in ("retry", "today"):
                r = results[v]
                vd = Verdict(sc, v, r, base)
                verdicts.append(vd)
                cmd = r.command
                assert cmd is not None
                kinds = ", ".join(f"{k} {_ms(r.worst_of(k))}" for k in sc.ops)
                say(f"  {sc.key} [{v}] `{' '.join(cmd.argv)}`: {cmd.outcome(r.held.get('to'))}; {_ms(cmd.wall)} "
                    f"(started {cmd.started:.2f} s, ended {cmd.ended:.2f} s; long transaction "
                    f"{r.held.get('from', float('nan')):.2f}-{r.held.get('to', float('nan')):.2f} s), "
                    f"tries {cmd.tries}, now at {', '.join(r.heads_after) or 'base'}")
                say(f"    workload p50 {_ms(r.pct(50))} p99 {_ms(r.pct(99))} max {_ms(r.worst)} "
                    f"({len(r.samples)} ops, {len(r.errors)} errors); worst by kind: {kinds}")
                for e in r.errors[:3]:
                    say(f"    error: {e.kind} due {e.due:.2f} s: {e.error}")
                if cmd.rc != 0:
                    for ln in cmd.output.strip().splitlines()[-4:]:
                        say(f"    | {ln[:200]}")
    finally:
        for t in templates.values():
            bs.drop(t)
    return verdicts


LEGEND = (
    "A steady mixed IU Core workload from one connection per kind of operation, one long transaction "
    f"holding a conflicting lock for {HOLD_FOR:g} s (from {HOLD_AT:g} s), and the iucore command started at "
    f"{MIGRATE_AT:g} s as a real process; one timeline per row, each on a fresh database. Latency counts from "
    "when an operation was due (a client queued behind a lock sees the whole wait). *Baseline*: the same "
    "workload and long transaction with no command, measured in the same run. *Added wait*: the workload's "
    "worst latency minus the baseline's median, all of it charged to iucore. Targets (issue 12): added wait "
    f"≤ 2{TIMES} the configured lock_timeout; 0 workload errors; the command completes once the long transaction "
    "ends, inside its budget."
)


def table(verdicts: list[Verdict]) -> str:
    head = ["scenario", "lock settings", "workload p50 / p99 / max", "baseline p50 / p99 / max", "errors",
            "added wait (target)", "tries", "command time", "outcome", "result"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for v in verdicts:
        r, b, cmd = v.run, v.baseline, v.run.command
        assert cmd is not None
        target = f"≤ {_ms(v.wait_target)}" if v.wait_target is not None else "no lock_timeout option"
        checks = [("wait", v.wait_ok if v.wait_target is not None else None), ("errors", v.errors_ok),
                  ("completes", v.completed_ok)]
        result = ", ".join(f"{n} {'PASS' if ok else '**MISS**'}" for n, ok in checks if ok is not None)
        cells = [
            v.scenario.title, " ".join(cmd.options) or "(defaults)",
            f"{_ms(r.pct(50))} / {_ms(r.pct(99))} / {_ms(r.worst)}",
            f"{_ms(b.pct(50))} / {_ms(b.pct(99))} / {_ms(b.worst)}",
            str(len(r.errors)), f"{_ms(v.added_wait)} ({target})", str(cmd.tries), _ms(cmd.wall),
            cmd.outcome(r.held.get("to")), result,
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)
