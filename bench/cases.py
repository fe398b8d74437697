"""The seven benchmarks. Each returns table rows: iucore against a baseline measured
in the same run, on the same server, with the same number of repetitions.

Every group first runs one untimed warm-up round (page cache, .pyc files, plan
caches), then `reps` timed rounds; the variants of a round run in a rotating
order so that neither side always goes first. Operations that change state get
a fresh database per variant and round.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from harness import (
    ROOT,
    TIMES,
    BenchServer,
    Row,
    Samples,
    child_env,
    executable,
    run_process,
    timed,
)

from iu_core.domain.runtime import OperatorRuntime, run_command
from iu_core.framework import layout
from iu_core.framework.fingerprint import current_heads, snapshot
from iu_core.release.inventory import live
from iu_core.release.inventory import report as inventory_report

Say = Callable[[str], None]


def chain() -> list[str]:
    """The revisions in apply order, as Alembic resolves them."""
    script = layout.script_directory(ROOT)
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def _rotated(items: list[Any], k: int) -> list[Any]:
    k %= len(items)
    return items[k:] + items[:k]


def _heads(bs: BenchServer, db: str) -> list[str]:
    with bs.connect(db) as conn:
        return current_heads(conn)


def _catalog(bs: BenchServer, db: str) -> dict[str, dict[str, str]]:
    with bs.connect(db) as conn:
        snap = snapshot(conn)
    snap.pop("alembic_version", None)
    return snap


# ---------------------------------------------------------------- 1-3: migrations
def migrations(bs: BenchServer, reps: int, say: Say) -> list[Row]:
    """`iucore db upgrade head` (process) vs psql -1 per file, vs alembic, and --rehearse vs real."""
    revs = chain()
    head = revs[-1]
    iucore, alembic, psql = executable("iucore"), executable("alembic"), str(bs.bin / "psql")
    files = [ROOT / "migrations" / "sql" / f"{r}.sql" for r in revs]
    env = child_env()

    def proc(argv: list[str], e: dict[str, str] = env) -> tuple[float, float]:
        wall, p = run_process(argv, e)
        return wall, p.cpu_seconds  # type: ignore[attr-defined]

    def run_iucore(db: str) -> tuple[float, float]:
        return proc([iucore, "--url", bs.url(db), "db", "upgrade", "head"])

    def run_rehearse(db: str) -> tuple[float, float]:
        return proc([iucore, "--url", bs.url(db), "db", "upgrade", "head", "--rehearse"])

    def run_alembic(db: str) -> tuple[float, float]:
        return proc([alembic, "upgrade", "head"], child_env(IUCORE_DATABASE_URL=bs.url(db)))

    def run_psql(db: str) -> tuple[float, float]:
        # As a DBA would: one psql -1 per forward file, in chain order, stop on the first error.
        runs = [proc([psql, "-X", "-1", "-v", "ON_ERROR_STOP=1", "-f", str(f), bs.url(db)]) for f in files]
        return sum(r[0] for r in runs), sum(r[1] for r in runs)

    variants: dict[str, Callable[[str], tuple[float, float]]] = {
        "iucore": run_iucore, "psql": run_psql, "alembic": run_alembic, "rehearse": run_rehearse,
    }
    cpu = {k: Samples(f"{k} (client CPU)") for k in variants}
    samples = {k: Samples(k) for k in variants}
    for rnd in range(reps + 1):
        dbs = {k: bs.create(f"mig_{k}") for k in variants}
        try:
            for k in _rotated(list(variants), rnd):
                t, c = variants[k](dbs[k])
                if rnd:
                    samples[k].add(t)
                    cpu[k].add(c)
            # Each variant did what it claims.
            for k in ("iucore", "alembic"):
                if _heads(bs, dbs[k]) != [head]:
                    raise RuntimeError(f"bench: {k} did not reach {head}")
            if _heads(bs, dbs["rehearse"]) != []:
                raise RuntimeError("bench: the rehearsal left an alembic_version")
            if rnd == 0:
                # The baselines do the same work: the same catalog, object for object.
                ref = _catalog(bs, dbs["iucore"])
                for k in ("psql", "alembic"):
                    if _catalog(bs, dbs[k]) != ref:
                        raise RuntimeError(f"bench: the {k} database differs from iucore's")
                if _catalog(bs, dbs["rehearse"]).get("function"):
                    raise RuntimeError("bench: the rehearsal left functions behind")
                say(f"  warm-up done; psql, alembic and iucore built the same catalog "
                    f"({sum(len(v) for v in ref.values())} catalog entries, {len(revs)} revisions)")
        finally:
            for db in dbs.values():
                bs.drop(db)
        if rnd:
            say(f"  round {rnd}: " + ", ".join(f"{k} {samples[k].values[-1] * 1000:.0f} ms" for k in variants))
    for s in [*samples.values(), *cpu.values()]:
        say("  " + s.summary())
    n = len(revs)
    return [
        Row("1. `iucore db upgrade head`, empty → head, whole process", samples["iucore"].value,
            samples["psql"].value, f"`psql -X -1 -v ON_ERROR_STOP=1 -f` {TIMES} {n} files", 3.0, "ratio"),
        Row("2. `iucore db upgrade head` vs plain Alembic (the price of the CLI)", samples["iucore"].value,
            samples["alembic"].value, "`alembic upgrade head`, same env.py", 1.15, "ratio"),
        Row("3. `iucore db upgrade head --rehearse` vs the real apply", samples["rehearse"].value,
            samples["iucore"].value, "`iucore db upgrade head`", 1.1, "ratio"),
    ]


# ---------------------------------------------------------------- 4: start-up
def startup(bs: BenchServer, reps: int, head_db: str, say: Say) -> list[Row]:
    iucore, psql = executable("iucore"), str(bs.bin / "psql")
    env = child_env()
    db = bs.create("current", head_db)
    try:
        variants: dict[str, list[str]] = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "iucore --help": [iucore, "--help"],
            "iucore db current": [iucore, "--url", bs.url(db), "db", "current"],
            "psql -c (same query)": [psql, "-X", "-At", "-c",
                                     "SELECT version_num FROM iucore.alembic_version", bs.url(db)],
        }
        samples = {k: Samples(k) for k in variants}
        cpu = {k: Samples(f"{k} (client CPU)") for k in variants}
        for rnd in range(reps + 1):
            for k in _rotated(list(variants), rnd):
                t, proc = run_process(variants[k], env)
                if k == "iucore db current" and b"(head)" not in proc.stdout:
                    raise RuntimeError(f"bench: db current did not report head: {proc.stdout!r}")
                if rnd:
                    samples[k].add(t)
                    cpu[k].add(proc.cpu_seconds)  # type: ignore[attr-defined]
    finally:
        bs.drop(db)
    for s in [*samples.values(), *cpu.values()]:
        say("  " + s.summary())
    return [
        Row("4a. `iucore --help` start-up", samples["iucore --help"].value, samples["python -c pass"].value,
            "`python -c pass`", 0.150, "absolute"),
        Row("4b. `iucore db current` (running server, `--url`)", samples["iucore db current"].value,
            samples["psql -c (same query)"].value, "`psql -c` reading alembic_version", 0.600, "absolute"),
    ]


# ---------------------------------------------------------------- 5: route worker
EVENTS = 10_000
ROUTE = "iu_outbound_default"

# Honour the registry: stream and lane come from it (the type-validate trigger checks
# them). A delayed-lane composer type, so nothing is deduplicated.
_INSERT_EVENTS = """
INSERT INTO public.event_outbox
    (event_domain, event_type, event_stream, delivery_lane, event_subject_ref, payload, severity, actor, created_at)
SELECT r.event_domain, r.event_type, r.event_stream, r.delivery_lane, 'bench:' || g,
       jsonb_build_object('collection_id', gen_random_uuid(), 'n', g), r.default_severity, 'bench',
       now() + g * interval '1 microsecond'
  FROM public.event_type_registry r, generate_series(1, %(n)s::integer) AS g
 WHERE r.event_domain = 'iu' AND r.event_type = 'piece_reordered' AND r.delivery_lane = 'delayed'
"""

# The same attempt rows (same columns, same values, same count), written without
# the worker: no route lookup, no anti-join, no row locks, no ON CONFLICT, no run event.
_PLAIN_INSERT = """
INSERT INTO public.iu_route_attempt (route_code, event_id, attempt_status, detail)
SELECT %(route)s, e.event_id, 'dry_run', jsonb_build_object('reason', 'delivery_disabled', 'mode', 'dry_run')
  FROM public.event_outbox e
"""

_ATTEMPTS_DIGEST = """
SELECT count(*), md5(string_agg(route_code || event_id::text || attempt_status || detail::text, ','
                                ORDER BY event_id))
  FROM public.iu_route_attempt
"""


def route_worker(bs: BenchServer, reps: int, head_db: str, say: Say) -> list[Row]:
    src = bs.create("events", head_db)
    try:
        with bs.connect(src) as conn:
            n = conn.execute(_INSERT_EVENTS, {"n": EVENTS}).rowcount
            if n != EVENTS:
                raise RuntimeError(f"bench: wrote {n} events, expected {EVENTS} (is iu.piece_reordered registered on the delayed lane?)")
            conn.execute("VACUUM (ANALYZE) public.event_outbox")
            gates = dict(conn.execute(
                "SELECT key, value FROM public.dot_config WHERE key IN "
                "('iu_core.route_worker_enabled', 'iu_core.delivery_enabled')").fetchall())
        say(f"  {EVENTS} pending iu.piece_reordered events (delayed lane); gates as installed: {gates}")
        worker, plain = Samples("fn_iu_route_worker_run"), Samples("plain INSERT … SELECT")
        for rnd in range(reps + 1):
            dbs = {"worker": bs.create("worker", src), "plain": bs.create("plain", src)}
            try:
                conns = {k: bs.connect(v) for k, v in dbs.items()}
                for k in _rotated(["worker", "plain"], rnd):
                    c = conns[k]
                    if k == "worker":
                        t, row = timed(lambda c=c: c.execute(
                            "SELECT public.fn_iu_route_worker_run(%s, %s::integer)", (ROUTE, EVENTS)).fetchone())
                        ans = row[0]
                        if ans.get("attempts_written") != EVENTS:
                            raise RuntimeError(f"bench: the worker answered {json.dumps(ans)}")
                    else:
                        t, cur = timed(lambda c=c: c.execute(_PLAIN_INSERT, {"route": ROUTE}))
                        if cur.rowcount != EVENTS:
                            raise RuntimeError(f"bench: plain INSERT wrote {cur.rowcount} rows")
                    if rnd:
                        (worker if k == "worker" else plain).add(t)
                digests = {k: c.execute(_ATTEMPTS_DIGEST).fetchone() for k, c in conns.items()}
                if digests["worker"] != digests["plain"]:
                    raise RuntimeError(f"bench: worker and plain INSERT wrote different attempts: {digests}")
                for c in conns.values():
                    c.close()
            finally:
                for db in dbs.values():
                    bs.drop(db)
    finally:
        bs.drop(src)
    say("  " + worker.summary())
    say("  " + plain.summary())
    return [Row(f"5. route worker, {EVENTS:,} pending events → attempts", worker.value, plain.value,
                "plain `INSERT … SELECT` of the same attempt rows", 3.0, "ratio")]


# ---------------------------------------------------------------- 6: dot apply
# Since revision least_privilege an apply is one statement, fn_dot_iu_execute: the gate
# check, the call and the ledger row in one round trip (issue 12: 6a within 2x the bare call).
CALLS = 200
RUNTIME_GATE, COMPOSER_GATE = "iu_core.operator_runtime_enabled", "iu_core.composer_enabled"


@dataclass
class DotCase:
    """One command through OperatorRuntime.apply against its function called directly."""

    command: str
    function: str
    params: Callable[[str], dict[str, Any]]  # per call, from a unique tag
    direct: Callable[[psycopg.Connection[Any], str], Any]  # the same call, straight to the function
    label: str
    target: float  # the ratio to meet


def _direct_healthcheck(conn: psycopg.Connection[Any], tag: str) -> Any:
    return conn.execute("SELECT public.fn_iu_healthcheck()").fetchone()


def _direct_create(conn: psycopg.Connection[Any], tag: str) -> Any:
    row = conn.execute("SELECT public.fn_iu_create(%s, 'piece', 'bench piece', 'bench')",
                       (f"bench/direct/{tag}",)).fetchone()
    if not row or row[0].get("status") != "created":
        raise RuntimeError(f"bench: fn_iu_create answered {row}")
    return row


DOT_CASES = (
    # The brief's cheap read: the function writes nothing, so the baseline never
    # commits anything durable, while every apply commits its ledger row.
    DotCase("dot_iu_healthcheck", "fn_iu_healthcheck", lambda tag: {}, _direct_healthcheck,
            "`SELECT public.fn_iu_healthcheck()`", 2.0),
    # A cheap mutation: the birth gate creates one unit; here the
    # baseline's autocommit pays a durable commit too.
    DotCase("dot_iu_clone_piece", "fn_iu_create",
            lambda tag: {"canonical_address": f"bench/runtime/{tag}", "unit_kind": "piece",
                         "title": "bench piece"},
            _direct_create, "`SELECT public.fn_iu_create(…)`, autocommit", 3.0),
)


def _gate(conn: psycopg.Connection[Any], verb: str, gate: str) -> None:
    params = ({"gate_key": gate, "approval_id": str(uuid.uuid4()),
               "reason": "iucore bench: dot apply throughput", "ttl_seconds": "900"}
              if verb == "open" else {"gate_key": gate, "reason": "iucore bench done"})
    ans = run_command(conn, "apply", f"dot_iu_gate_{verb}", params, "bench")
    if ans.status != "applied":
        raise RuntimeError(f"bench: gate {verb} {gate} answered {ans.status}: {ans.answer}")


def dot_apply(bs: BenchServer, reps: int, head_db: str, say: Say) -> list[Row]:
    db = bs.create("dot", head_db)
    rows: list[Row] = []
    try:
        with bs.connect(db) as conn:
            opened: list[str] = []
            try:
                for gate in (RUNTIME_GATE, COMPOSER_GATE):  # through the gate protocol, for the run only
                    _gate(conn, "open", gate)
                    opened.append(gate)
                rt = OperatorRuntime(conn, "bench")
                for case in DOT_CASES:
                    def via_runtime(rnd: int, case: DotCase = case) -> None:
                        for i in range(CALLS):
                            ans = rt.apply(case.command, case.params(f"{rnd}/{i}"))
                            if ans.status != "applied":
                                raise RuntimeError(f"bench: {case.command} apply answered {ans.status}: "
                                                   f"{ans.guidance}")

                    def direct(rnd: int, case: DotCase = case) -> None:
                        for i in range(CALLS):
                            case.direct(conn, f"{rnd}/{i}")

                    runtime_s = Samples(f"{case.command}: OperatorRuntime.apply")
                    direct_s = Samples(f"{case.command}: {case.function} directly")
                    for rnd in range(reps + 1):
                        for k in _rotated(["runtime", "direct"], rnd):
                            t, _ = timed(lambda k=k, rnd=rnd: (via_runtime if k == "runtime" else direct)(rnd))
                            if rnd:
                                (runtime_s if k == "runtime" else direct_s).add(t / CALLS)
                    row = conn.execute("SELECT count(*) FROM public.dot_iu_command_run WHERE command_name = %s",
                                       (case.command,)).fetchone()
                    n = row[0] if row else 0
                    if n != (reps + 1) * CALLS:
                        raise RuntimeError(f"bench: {n} ledger rows for {case.command}, "
                                           f"expected one per apply ({(reps + 1) * CALLS})")
                    say(f"  {case.command}: {n} ledger rows, one per apply")
                    say("  " + runtime_s.summary(unit="ms per command"))
                    say("  " + direct_s.summary(unit="ms per command"))
                    rows.append(Row(f"6{'ab'[len(rows)]}. `dot apply {case.command}`, per command (in-process library, "
                                    f"{CALLS} calls, one connection)", runtime_s.value, direct_s.value,
                                    f"{case.label} on the same connection", case.target, "ratio"))
            finally:
                for gate in reversed(opened):
                    _gate(conn, "close", gate)
    finally:
        bs.drop(db)
    return rows


# ---------------------------------------------------------------- 7: inventory
NOISE_TABLES = NOISE_FUNCTIONS = 5_000
_NOISE_BATCH = """
DO $noise$
BEGIN
    FOR i IN {lo}..{hi} LOOP
        EXECUTE format('CREATE TABLE noise.t%s (id integer PRIMARY KEY, v integer)', i);
        EXECUTE format('CREATE FUNCTION noise.f%s(x integer) RETURNS integer LANGUAGE sql IMMUTABLE '
                       'AS $f$ SELECT x + %s $f$', i, i);
    END LOOP;
END
$noise$
"""


def inventory(bs: BenchServer, reps: int, head_db: str, say: Say) -> list[Row]:
    noisy, clean = bs.create("inv_noise", head_db), bs.create("inv_clean", head_db)
    try:
        with bs.connect(noisy) as conn:
            conn.execute("CREATE SCHEMA noise")
            for lo in range(1, NOISE_TABLES + 1, 500):  # batches: bounded locks per transaction
                conn.execute(_NOISE_BATCH.format(lo=lo, hi=min(lo + 499, NOISE_TABLES)).encode())
            conn.execute("ANALYZE")
            counts = conn.execute(
                "SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                "         WHERE n.nspname = 'noise' AND c.relkind = 'r'),"
                "       (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                "         WHERE n.nspname = 'noise')").fetchone()
        say(f"  schema noise: {counts[0]} tables (with their primary keys), {counts[1]} functions")
        for db in (noisy, clean):
            with bs.connect(db) as conn:
                rep = inventory_report(conn, ROOT)
            if not rep.ok:
                raise RuntimeError(f"bench: inventory --check drifts on {db}: {rep.drift[:5]}")

        def query_time(db: str) -> float:
            # A fresh connection per measurement, as the CLI makes one (untimed);
            # timed: every query `inventory --check` sends (heads, then the live inventory).
            with bs.connect(db) as conn:
                t_heads, _ = timed(lambda: current_heads(conn))
                t_live, _ = timed(lambda: live(conn))
            return t_heads + t_live

        with_noise, without = Samples("with 10k noise objects"), Samples("without noise")
        for rnd in range(reps + 1):
            for k in _rotated(["noise", "clean"], rnd):
                t = query_time(noisy if k == "noise" else clean)
                if rnd:
                    (with_noise if k == "noise" else without).add(t)
    finally:
        bs.drop(noisy)
        bs.drop(clean)
    say("  " + with_noise.summary())
    say("  " + without.summary())
    return [Row("7. `iucore inventory --check` query time, 10,000 unrelated objects in schema `noise`",
                with_noise.value, without.value, "same queries, no noise", 0.100, "absolute")]
