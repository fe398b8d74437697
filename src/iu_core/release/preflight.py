"""The mandatory-gates checklist a release engineer runs before a real apply.

Every check the seeds ran by hand before an apply (seed 002 A2 "Hard Gate 0",
seed 003 §4 "All 14 mandatory gates PASS", §5 "verified at the 240x
surface", seed 001 §5 "No-hardcode — PASS"), each PASS or FAIL with its
evidence. A check that cannot run (a missing option, a privilege, an error)
is a FAIL that says why, never a skip: the run passes only if all 14 do.

  1  read identity          the read-only role (--read-url): who and where, and that it cannot write
  2  write identity         the run's own role and a reversible probe on dot_config (BEGIN / UPDATE 1 /
                            IN_TX / ROLLBACK / AFTER_RB)
  3  server health          not in recovery, accepting writes, major >= production's, uptime, connections
  4  backup                 the newest backup of THIS database in --backup-dir is recent and verifies
  5  gates                  every governable gate shut (an expired open is shut), never-flip false
  6  prior surface          the applied revisions' objects present, nothing of the pending ones, and
                            the applied revisions' self-tests pass
  7  inventory              no drift: nothing missing, no unacknowledged IU-Core-named extra
  8  checksums              the applied files are the ones that were applied
  9  SSOT                   the registry's governed commands = the catalog, row for row (seed 004)
  10 no-hardcode            no password, DSN, address or port literal in the files to apply
  11 conventions            the files to apply parse and follow the SQL conventions (iucore lint)
  12 lock                   no other iucore run holds the migration lock
  13 long transactions      none the apply would queue behind
  14 client tools           pg_dump and pg_restore of the server's major are here

`db preflight` records each run as an audit row (revision `preflight`,
direction `check`, outcome `passed` or `refused`, the checklist as evidence),
so `db report` of the next run shows the checklist that preceded it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import IUCoreError, Refused
from ..framework.audit import record_check
from ..framework.backup import _tool_version, backups_in, choose, identify, restorer, verify_backup
from ..framework.checksums import verify as verify_checksums
from ..framework.declarations import CLASSES
from ..framework.fingerprint import current_heads
from ..framework.layout import applied_chain, script_directory
from ..framework.observe import artifacts, revision_files
from ..framework.scope import OURS_CTE, scope_of
from ..framework.selftest import available
from ..framework.selftest import run as run_selftests
from ..framework.session import LOCK_KEY
from ..pg.db import connect
from .inventory import compare, live
from .inventory import report as inventory_report
from .lint import check_hardcode, lint_project
from .ssot import ssot

if TYPE_CHECKING:
    import psycopg

    from ..pg.target import Target

# From revision least_privilege on, the gates and their classes are the
# database's (public.iu_gate_class, each read through fn_iu_gate_state).
# Before it the database holds no classification: these are the chain's gates
# as seed 002 A4 classifies them, plus 033's auto_instantiate_enabled, which
# least_privilege makes governable (a test holds them equal to the table).
LEGACY_GOVERNABLE = (
    "iu_core.composer_enabled", "iu_core.structure_ops_enabled", "iu_core.delivery_enabled",
    "iu_core.three_axis_auto_refresh_enabled", "iu_core.operator_runtime_enabled",
    "queue.job_substrate.enabled", "queue.dlq.replay_enabled",
)
LEGACY_LATER_GOVERNABLE = ("iu_core.auto_instantiate_enabled",)  # 033 on, when the key exists
LEGACY_NEVER_FLIP = ("iu_enact.allow_no_review_decision", "iu_core.vector_sync_enabled")
PROBE_GATE = "iu_core.composer_enabled"
# Production runs PostgreSQL 16 (seed 002 A2: "PostgreSQL 16.13"): a rehearsal
# on an older major proves nothing about it. 13 is the oldest the SQL runs on.
PRODUCTION_MAJOR = 16
OLDEST_MAJOR = 13
# Connections a release needs beside everything else: the run's own, the
# backup's pg_dump, and this checklist's read-identity probe.
CONNECTIONS_NEEDED = 3

READ = "read identity (read-only role)"
WRITE = "write identity (reversible probe)"
SERVER = "server health and version"
BACKUP = "recent verified backup"
GATES = "gates closed, never-flip intact"
SURFACE = "prior surface verified"
INVENTORY = "inventory: no drift"
CHECKSUMS = "applied files' checksums"
SSOT = "SSOT: registry = catalog"
HARDCODE = "no hardcoded secret in the files to apply"
CONVENTIONS = "files to apply follow the conventions"
LOCK = "migration lock free"
LONG_TXN = "no long transaction to queue behind"
TOOLS = "pg_dump and pg_restore of the server's major"
MANDATORY = (READ, WRITE, SERVER, BACKUP, GATES, SURFACE, INVENTORY, CHECKSUMS, SSOT, HARDCODE,
             CONVENTIONS, LOCK, LONG_TXN, TOOLS)


@dataclass
class Check:
    name: str
    ok: bool
    evidence: str
    data: dict[str, Any] = field(default_factory=dict)
    ms: float = 0.0  # how long the check took: what a slow preflight spends its time on

    def to_json(self) -> dict[str, Any]:
        return {"check": self.name, "status": "PASS" if self.ok else "FAIL",
                "evidence": self.evidence, "ms": round(self.ms, 1), **({"data": self.data} if self.data else {})}


@dataclass
class PreflightReport:
    checks: list[Check] = field(default_factory=list)
    at: list[str] = field(default_factory=list)  # the database's revision(s) when it ran
    pending: list[str] = field(default_factory=list)  # what an upgrade to head would apply
    target: str = ""
    duration_ms: float = 0.0
    recorded: str | None = None  # the audit run id, once recorded
    not_recorded: str | None = None  # why it could not be

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    @property
    def passed(self) -> int:
        return sum(c.ok for c in self.checks)

    def summary(self) -> str:
        return f"{self.passed}/{len(self.checks)} mandatory gates PASS"

    def raise_for_outcome(self) -> None:
        """Refused (exit 3) naming each failing gate, unless every one passed."""
        if not self.ok:
            raise Refused("preflight failed: " + "; ".join(f"{c.name}: {c.evidence}" for c in self.failed),
                          failed=[c.name for c in self.failed])

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "passed": self.passed, "total": len(self.checks), "summary": self.summary(),
                "target": self.target, "at": self.at, "pending": self.pending,
                "duration_ms": round(self.duration_ms, 1), "recorded_run_id": self.recorded,
                "not_recorded": self.not_recorded, "checks": [c.to_json() for c in self.checks]}


def _exists(conn: psycopg.Connection[Any], rel: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (rel,)).fetchone() == (True,)


def _first_line(exc: BaseException) -> str:
    diag = getattr(exc, "diag", None)
    msg = getattr(exc, "message", None)
    text = str(exc).strip()
    return (diag.message_primary if diag else None) or msg or (text.splitlines()[0] if text else type(exc).__name__)


# ---------------------------------------------------------------- 1 read identity
_WHO = ("SELECT current_user, current_database(), coalesce(host(inet_server_addr()), 'local socket'),"
        " current_setting('server_version'), (SELECT oid::bigint FROM pg_database WHERE datname ="
        " current_database()), pg_postmaster_start_time(),"
        " (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)")


# IU Core's tables (iu_core.framework.scope) the connected role may write, and IU Core's schemas it may create in.
_WRITABLE_SQL = "WITH " + OURS_CTE + """
SELECT 'table ' || ns.nspname || '.' || c.relname
  FROM our_tab o JOIN pg_class c ON c.oid = o.oid JOIN ns ON ns.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p')
   AND has_table_privilege(c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')
UNION ALL
SELECT 'CREATE on schema ' || nspname FROM ns WHERE has_schema_privilege(oid, 'CREATE')
ORDER BY 1"""


def check_read_identity(conn: psycopg.Connection[Any], read_target: Target | None, project: Path) -> Check:
    """Seed 002 A2: the read identity, through the read-only role itself.

    Connects as that role, shows `role | database | server address | PostgreSQL
    version`, checks it reaches the same database as the run (name, oid and the
    server's start time), and proves it cannot write: inside a READ WRITE
    transaction that is rolled back, an UPDATE of dot_config (needing the
    UPDATE privilege only) and a CREATE TABLE in public must both be refused
    for lack of privilege, and the role may INSERT, UPDATE, DELETE or TRUNCATE
    no IU Core table, nor CREATE in an IU Core schema.
    """

    if read_target is None:
        return Check(READ, False, "not proven: give --read-url URL, the read-only role's connection (seed 002 "
                     "A2: context_pack_readonly); without it nobody has shown the read identity reaches this "
                     "database and cannot write")
    try:
        rconn = connect(read_target, app="iucore:preflight-read")
    except IUCoreError as exc:
        return Check(READ, False, f"cannot connect as the read identity: {exc.message}")
    with rconn:
        who = rconn.execute(_WHO).fetchone()
        mine = conn.execute(_WHO).fetchone()
        assert who is not None and mine is not None
        user, db, addr, version, oid, started, superuser = who
        line = f"{user} | {db} | {addr} | PostgreSQL {version}"
        data: dict[str, Any] = {"role": user, "database": db, "server_address": addr, "server_version": version,
                                "url": read_target.display}
        problems = []
        if (db, oid, started) != (mine[1], mine[4], mine[5]):
            problems.append(f"it reaches database {db!r} (oid {oid}, server started {started}), not the run's "
                            f"{mine[1]!r} (oid {mine[4]}, server started {mine[5]})")
        if superuser:
            problems.append(f"{user} is a superuser: it can write anything")
        if user == mine[0]:
            problems.append(f"it is the run's own role {user!r}, not a read-only one")
        # WHERE false: only the UPDATE privilege is checked (no column is read), and no row is touched
        attempts: list[tuple[str, str, tuple[str, ...]]] = (
            [("UPDATE public.dot_config", "UPDATE public.dot_config SET value = %s WHERE false",
              ("iucore-read-probe",))] if _exists(conn, "public.dot_config") else [])
        attempts.append(("CREATE TABLE public.iucore_read_probe", "CREATE TABLE public.iucore_read_probe (x int)",
                         ()))
        probe = ["BEGIN READ WRITE"]
        wrote = []
        rconn.execute("BEGIN READ WRITE")
        try:
            for label, sql, params in attempts:
                rconn.execute("SAVEPOINT probe")
                try:
                    cur = rconn.execute(sql, params or None)
                    probe.append(f"{label} → {cur.statusmessage} (NOT refused)")
                    wrote.append(label)
                except Exception as exc:
                    state = getattr(exc, "sqlstate", None) or "?"
                    probe.append(f"{label} → refused ({state} {_first_line(exc)})")
                    if state != "42501":  # only a missing privilege proves the role cannot
                        wrote.append(f"{label} (refused for another reason, {state}: cannot tell)")
                rconn.execute("ROLLBACK TO SAVEPOINT probe")
        finally:
            rconn.execute("ROLLBACK")
        probe.append("ROLLBACK")
        writable = [r[0] for r in rconn.execute(_WRITABLE_SQL, scope_of(project).params())]
        probe.append(f"may write: {', '.join(writable)}" if writable
                     else "no INSERT/UPDATE/DELETE/TRUNCATE on any IU Core table, no CREATE in its schemas")
        wrote += writable
        if wrote:
            problems.append("the read identity can write, or it could not be shown that it cannot: "
                            + ", ".join(wrote))
        data["probe"] = probe
    evidence = line + " | " + " / ".join(probe)
    return Check(READ, not problems, "; ".join(problems) + f" ({evidence})" if problems else evidence, data)


# ---------------------------------------------------------------- 2 write identity
def check_write_probe(conn: psycopg.Connection[Any], expect_database: str | None = None,
                      expect_user: str | None = None) -> Check:
    """IDENTITY, then BEGIN; UPDATE a gate; read it in the transaction; ROLLBACK; value unchanged."""
    row = conn.execute(_WHO).fetchone()
    assert row is not None
    user, db, addr, version = row[0], row[1], row[2], row[3]
    data = {"user": user, "database": db, "server_address": addr, "server_version": version}
    problems = []
    if expect_database and db != expect_database:
        problems.append(f"database is {db!r}, expected {expect_database!r}")
    if expect_user and user != expect_user:
        problems.append(f"user is {user!r}, expected {expect_user!r}")
    lines = [f"IDENTITY | {user} | {db} | {addr} | PostgreSQL {version}"]
    if problems:
        return Check(WRITE, False, "; ".join(problems) + f" ({lines[0]})", data)
    if not _exists(conn, "public.dot_config"):
        conn.execute("BEGIN")
        try:
            conn.execute("CREATE TABLE public.iucore_write_probe (x int)")
        except Exception as exc:  # no CREATE on public: say why
            conn.execute("ROLLBACK")
            return Check(WRITE, False, f"{lines[0]} / cannot create in public: {_first_line(exc)}", data)
        conn.execute("ROLLBACK")
        gone = not _exists(conn, "public.iucore_write_probe")
        return Check(WRITE, gone,
                     f"{lines[0]} / no dot_config yet: CREATE TABLE in public, ROLLBACK, table gone" if gone
                     else "probe table persisted after ROLLBACK", data)
    before = conn.execute("SELECT value FROM public.dot_config WHERE key = %s", (PROBE_GATE,)).fetchone()
    if before is None:
        return Check(WRITE, False, f"{lines[0]} / dot_config has no {PROBE_GATE} row", data)
    flipped = "false" if before[0] == "true" else "true"
    lines += [f"GATE | {PROBE_GATE} | {before[0]}", "BEGIN"]
    conn.execute("BEGIN")
    try:
        cur = conn.execute("UPDATE public.dot_config SET value = %s WHERE key = %s", (flipped, PROBE_GATE))
        lines.append(cur.statusmessage or "")
        in_tx = conn.execute("SELECT value FROM public.dot_config WHERE key = %s", (PROBE_GATE,)).fetchone()
        lines.append(f"IN_TX | {PROBE_GATE} | {in_tx[0] if in_tx else None}")
    except Exception as exc:
        conn.execute("ROLLBACK")
        return Check(WRITE, False, f"{lines[0]} / UPDATE refused: {_first_line(exc)}", data)
    conn.execute("ROLLBACK")
    lines.append("ROLLBACK")
    after = conn.execute("SELECT value FROM public.dot_config WHERE key = %s", (PROBE_GATE,)).fetchone()
    lines.append(f"AFTER_RB | {PROBE_GATE} | {after[0] if after else None}")
    ok = in_tx is not None and in_tx[0] == flipped and after is not None and after[0] == before[0]
    return Check(WRITE, ok, " / ".join(lines), {**data, "probe": lines})


# ---------------------------------------------------------------- 3 server
def check_server(conn: psycopg.Connection[Any]) -> Check:
    """Not in recovery, accepting writes, a supported major no older than production's,
    uptime, and enough free connections for the release."""
    row = conn.execute(
        """SELECT pg_is_in_recovery(), current_setting('transaction_read_only'),
                  current_setting('server_version'), current_setting('server_version_num')::int,
                  date_trunc('second', now() - pg_postmaster_start_time())::text,
                  (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),
                  current_setting('max_connections')::int,
                  current_setting('superuser_reserved_connections')::int,
                  coalesce(current_setting('reserved_connections', true), '0')::int""").fetchone()
    assert row is not None
    recovery, read_only, version, num, uptime, used, max_conn, su_reserved, reserved = row
    major = num // 10000
    free = max_conn - su_reserved - reserved - used
    problems = []
    if recovery:
        problems.append("the server is in recovery (a standby): it accepts no writes")
    if read_only == "on":
        problems.append("this session is read-only (default_transaction_read_only): the run could not write")
    if major < OLDEST_MAJOR:
        problems.append(f"PostgreSQL {version} is older than {OLDEST_MAJOR}, the oldest the revisions run on")
    elif major < PRODUCTION_MAJOR:
        problems.append(f"PostgreSQL {major} is older than production's {PRODUCTION_MAJOR}: proving a release on it "
                        "proves nothing about production")
    if free < CONNECTIONS_NEEDED:
        problems.append(f"only {free} connection slot(s) free for a non-superuser; the release needs "
                        f"{CONNECTIONS_NEEDED} (the run, the backup's pg_dump, this check)")
    ev = (f"PostgreSQL {version} (major {major} ≥ production's {PRODUCTION_MAJOR}); "
          f"{'in recovery' if recovery else 'primary, not in recovery'}; "
          f"{'read-only' if read_only == 'on' else 'accepting writes'}; up {uptime}; "
          f"{used}/{max_conn} connections ({free} free for a non-superuser)")
    data = {"server_version": version, "major": major, "in_recovery": recovery, "read_only": read_only == "on",
            "uptime": uptime, "connections": used, "max_connections": max_conn, "free": free}
    return Check(SERVER, not problems, "; ".join(problems) + f" ({ev})" if problems else ev, data)


# ---------------------------------------------------------------- 4 backup
def check_backup(conn: psycopg.Connection[Any], backup_dir: Path | None, max_age_s: float) -> Check:
    """The newest backup OF THIS DATABASE in BACKUP_DIR is recent and verifies.

    "Of this database" is the sidecar's database name, oid and cluster system
    identifier against the live ones (a dump of another database, or one
    without its sidecar, does not count); then verify_backup re-checks the
    archive with the server's own pg_restore and against the sidecar.
    """

    if backup_dir is None:
        return Check(BACKUP, False, "no --backup-dir: a verified backup of this database is mandatory before a "
                     "real apply (iucore db backup --out DIR, then db preflight --backup-dir DIR)")
    ident = identify(conn)
    if ident.system_identifier is None:
        return Check(BACKUP, False, "cannot read this cluster's system identifier, so no backup can be tied to "
                     "it: GRANT EXECUTE ON FUNCTION pg_catalog.pg_control_system() TO the role iucore uses")
    recorded, bare = backups_in(backup_dir) if backup_dir.is_dir() else ([], [])
    mine = [b for b in recorded if (b.database, b.database_oid, b.system_identifier)
            == (ident.database, ident.oid, ident.system_identifier)]
    if not mine:
        others = sorted({f"{b.database} (oid {b.database_oid}, system {b.system_identifier})"
                         for b in recorded})
        why = f"no backup of database {ident.database!r} (oid {ident.oid}, system {ident.system_identifier}) in {backup_dir}"
        if others:
            why += f"; it holds backups of other databases only: {', '.join(others)}"
        if bare:
            why += f"; {len(bare)} dump(s) without an iucore sidecar cannot be tied to this database"
        return Check(BACKUP, False, why + " (iucore db backup --out …)")
    newest = mine[0]
    try:
        made = datetime.fromisoformat(str(newest.created_at).replace("Z", "+00:00"))
    except ValueError:
        return Check(BACKUP, False, f"{newest.sidecar}: created_at {newest.created_at!r} is not a time")
    age = (datetime.now(UTC) - made).total_seconds()
    if age > max_age_s:
        return Check(BACKUP, False, f"{newest.path} is {age / 3600:.1f} h old (max {max_age_s / 3600:g} h)")
    try:
        b = verify_backup(Path(newest.path), server_major=ident.major, expect=ident)
    except IUCoreError as exc:
        return Check(BACKUP, False, exc.message)
    return Check(BACKUP, True, b.summary(), b.to_json())


# ---------------------------------------------------------------- 5 gates
def gate_states(conn: psycopg.Connection[Any], config: dict[str, str] | None,
                *, have_classes: bool) -> tuple[list[dict[str, Any]], str]:
    """Every gate with its class, raw value and effective state, and where the classes came from.

    From least_privilege on: every row of public.iu_gate_class, its state read by
    fn_iu_gate_state (an expired open is 'expired', i.e. shut). Before it: the
    chain's protocol gates (seed 002 A4), their state read from the value alone.
    `config` is dot_config's key → value (None: no dot_config).
    """
    if config is None:
        return [], "no dot_config"
    if have_classes:
        rows = conn.execute(
            """SELECT k.gate_key, k.class, c.value, public.fn_iu_gate_state(k.gate_key)
                 FROM public.iu_gate_class k LEFT JOIN public.dot_config c ON c.key = k.gate_key
                ORDER BY k.class, k.gate_key""").fetchall()
        return ([{"key": k, "class": cls, "value": v, "state": s} for k, cls, v, s in rows],
                "public.iu_gate_class (state by fn_iu_gate_state: an expired open reads shut)")
    governable = LEGACY_GOVERNABLE + tuple(k for k in LEGACY_LATER_GOVERNABLE if k in config)
    out = []
    for cls, keys in (("governable", governable), ("never_flip", LEGACY_NEVER_FLIP)):
        for k in sorted(keys):
            v = config.get(k)
            if v is None:
                state = "missing"
            elif cls == "never_flip":
                state = "shut" if v == "false" else "flipped"
            else:
                state = {"true": "open", "false": "shut"}.get(v, "invalid")
            out.append({"key": k, "class": cls, "value": v, "state": state})
    return out, "the chain's protocol gates (seed 002 A4; no classification in the database before least_privilege)"


_NEVER_FLIPPED = "never-flip not false"


def _gate_problems(open_: list[str], *wrong: tuple[str, list[str]]) -> list[str]:
    """One phrase per kind of gate trouble that has keys: open gates first, then each
    (what is wrong, keys) in the order given."""
    problems = [f"open: {', '.join(open_)} (close them: iucore gate close …)"] if open_ else []
    return problems + [f"{what}: {', '.join(keys)}" for what, keys in wrong if keys]


def check_gates(conn: psycopg.Connection[Any]) -> Check:
    if not _exists(conn, "public.dot_config"):
        return Check(GATES, True, "no dot_config yet (empty database): no gate to be open")
    if _exists(conn, "public.iu_gate_class"):
        return _check_classified_gates(conn)
    rows = dict(conn.execute("SELECT key, value FROM public.dot_config").fetchall())
    gates, _ = gate_states(conn, rows, have_classes=False)
    governable = [g for g in gates if g["class"] == "governable"]
    open_ = [g["key"] for g in governable if g["state"] == "open"]
    odd = [g["key"] for g in governable if g["state"] == "invalid"]
    flipped = [g["key"] for g in gates if g["state"] == "flipped"]
    missing = [g["key"] for g in gates if g["state"] == "missing"]
    problems = _gate_problems(open_, ("neither true nor false (fail closed)", odd),
                              (_NEVER_FLIPPED, flipped), ("missing (fail closed)", missing))
    return Check(GATES, not problems,
                 "; ".join(problems) or f"{len(governable)} governable false, {len(LEGACY_NEVER_FLIP)} never-flip "
                 "false (no classification in this database yet: the chain's, before least_privilege)",
                 {"gates": {g["key"]: g["value"] for g in gates}})


def _check_classified_gates(conn: psycopg.Connection[Any]) -> Check:
    """The database's own verify: every classified gate, the TTL enforced."""
    row = conn.execute("SELECT public.fn_iu_gate_verify_closed(NULL)").fetchone()
    v: dict[str, Any] = row[0] if row and isinstance(row[0], dict) else {}
    gates = v.get("gates") or []
    stale = list(v.get("stale_open") or [])
    open_ = list(v.get("open") or [])
    governable = [g for g in gates if g.get("class") == "governable"]
    never = [g for g in gates if g.get("class") == "never_flip"]
    not_closed = [g["key"] for g in governable if g["key"] not in open_ and g["key"] not in stale
                  and g.get("value") != "false"]
    flipped = [g["key"] for g in never if g.get("value") != "false"]
    problems = _gate_problems(open_, ("missing or neither true nor false (fail closed)", not_closed),
                              (_NEVER_FLIPPED, flipped))
    if not problems and (not gates or v.get("all_safe") is not True):
        problems.append(f"the gate verify did not answer all_safe (fail closed): {v}")
    note = (f"; read 'true' but shut (expired, or not opened through the protocol): {', '.join(stale)} — "
            "every check treats them as shut; iucore gate watchdog resets them") if stale else ""
    ev = f"{len(governable)} governable shut, {len(never)} never-flip false (public.iu_gate_class){note}"
    return Check(GATES, not problems, "; ".join(problems) + note if problems else ev,
                 {"gates": {g["key"]: g.get("state") for g in gates}, "stale_open": stale})


# ---------------------------------------------------------------- 6 prior surface
def check_prior_surface(conn: psycopg.Connection[Any], project: Path, heads: list[str], applied: list[str],
                        pending: list[str]) -> Check:
    """Seed 003 §5: the surface the apply builds on is the one the chain says (its
    objects present, nothing of the pending revisions present) and it still
    behaves (the applied revisions' self-tests pass against their transcripts)."""

    if not heads:
        present = sum(len(v) for v in live(conn, scope_of(project)).values())
        if present:
            return Check(SURFACE, False, f"no revision is recorded, yet {present} IU Core object(s) are present: "
                         "take the database over with `iucore db adopt REV` first")
        return Check(SURFACE, True, "empty database (base): no prior surface, nothing of the chain present")
    rep = compare(conn, project, heads[0] if len(heads) == 1 else None)
    if len(heads) > 1:
        return Check(SURFACE, False, f"several heads {heads}: cannot tell which surface to verify")
    missing = [f"{cls} {n}" for cls in CLASSES for n in rep.missing(cls)]
    later = [f"{cls} {n} ({rep.declared_by[(cls, n)]})" for cls in CLASSES for n in rep.extras(cls)
             if rep.declared_by.get((cls, n)) in pending]
    expected = sum(len(v) for v in rep.expected.values())
    started = time.perf_counter()
    results = run_selftests(conn, project, [r for r in available(project) if r in applied])
    selftests_ms = (time.perf_counter() - started) * 1000
    bad = [f"{r.name} {r.status.upper()}{' — ' + r.reason if r.reason else ''}" for r in results
           if r.status != "passed"]
    problems = []
    if missing:
        problems.append(f"{len(missing)} object(s) of the applied revisions missing: {', '.join(missing[:10])}")
    if later:
        problems.append(f"object(s) of the pending revisions already present: {', '.join(later[:10])}")
    if bad:
        problems.append(f"self-test(s) not passing: {'; '.join(bad)}")
    ev = (f"{expected - len(missing)}/{expected} declared objects at {heads[0]} present; "
          + (f"nothing of {', '.join(pending)} present; " if pending else "at head, nothing pending; ")
          + f"self-tests {sum(r.status == 'passed' for r in results)}/{len(results)} PASSED"
          + (f" ({', '.join(r.name for r in results)})" if results else " (no applied revision has one)"))
    data = {"declared": expected, "missing": missing, "pending_present": later,
            "selftests": {r.name: r.status for r in results}, "selftests_ms": round(selftests_ms, 1)}
    return Check(SURFACE, not problems, "; ".join(problems) + f" ({ev})" if problems else ev, data)


# ---------------------------------------------------------------- 7 inventory, 8 checksums, 9 SSOT
def check_inventory(conn: psycopg.Connection[Any], project: Path) -> Check:
    """No drift in IU Core's objects (never Directus's): every extra is named, acknowledged or not."""

    rep = inventory_report(conn, project)
    j = rep.to_json()
    acked = [f"acknowledged extra {a.cls} {a.name} ({a.reason}; by {a.by})" for a in rep.acknowledged_extras]
    if rep.ok:
        evidence = "; ".join([f"{j['present_total']}/{j['expected_total']} at {rep.revision or 'base'}", *acked])
    else:
        evidence = "; ".join(rep.drift[:10]) + (f" … and {len(rep.drift) - 10} more" if len(rep.drift) > 10 else "")
    return Check(INVENTORY, rep.ok, evidence, {"drift": rep.drift, "extras": j["extras"]})


def check_checksums(conn: psycopg.Connection[Any], project: Path) -> Check:

    rep = verify_checksums(conn, project)
    n = sum(f.status == "ok" for f in rep.files)
    return Check(CHECKSUMS, rep.ok,
                 f"{n} file(s) of {len(rep.applied)} applied revision(s) match" if rep.ok
                 else "; ".join(rep.lines()))


def check_ssot(conn: psycopg.Connection[Any], project: Path, applied: list[str]) -> Check:
    """Seed 004: the registry's governed commands equal the live catalog, row for row,
    and 280's and 034's seed INSERTs re-run (rolled back) answer INSERT 0 0."""
    rep = ssot(conn, project, applied)
    if not applied:
        return Check(SSOT, True, "base: no catalog to hold the registry against")
    if not rep.ok:
        return Check(SSOT, False, "; ".join(rep.lines()), rep.to_json())
    return Check(SSOT, True, "; ".join(rep.summary()) if rep.registry_rows or rep.catalog_rows
                 else "no command catalog in this chain", rep.to_json())


# ---------------------------------------------------------------- 10 no-hardcode, 11 conventions
def pending_files(project: Path, pending: list[str]) -> list[Path]:
    """Every file the pending revisions run or ship: module, SQL, self-test, and their `\\ir` includes."""

    files = [f for rev in pending for f in revision_files(project, rev)]
    return [project / a["path"] for a in artifacts(project, files)]


def check_no_hardcode(project: Path, pending: list[str]) -> Check:
    """Seed 001 §5: no password, DSN, address or default-port literal in what is about to run.

    The finding names file, line and what it is, never the matched text (it may be a secret)."""

    files = pending_files(project, pending)
    if not pending:
        return Check(HARDCODE, True, "at head: no file to apply")
    found = []
    for p in files:
        for f in check_hardcode(p):
            what = f.message.split(": ", 1)[0]
            found.append(f"{p.relative_to(project)}:{f.line}: {what}")
    return Check(HARDCODE, not found,
                 "; ".join(found) if found else f"{len(files)} file(s) of {', '.join(pending)}: no password, DSN, "
                 "address or port literal", {"files": [str(p.relative_to(project)) for p in files],
                                            "findings": found})


_LINTED: dict[tuple[str, tuple[tuple[str, int, int], ...]], list[Any]] = {}


def _lint(project: Path) -> list[Any]:
    """`iucore lint` of the project, once per process while its SQL and revision files are unchanged
    (it reads the whole chain: each file is judged by what the earlier ones made)."""

    files = [p for d in ("migrations", "rollbacks", "selftests", "runtime") for p in (project / d).rglob("*")
             if p.is_file()]
    key = (str(project.resolve()), tuple(sorted((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files)))
    if key not in _LINTED:
        if len(_LINTED) > 16:
            _LINTED.clear()
        _LINTED[key] = lint_project(project)
    return _LINTED[key]


def check_conventions(project: Path, pending: list[str]) -> Check:
    """The pending files parse (sections, statements, PL/pgSQL) and pass every static gate
    of `iucore lint` (SECURITY DEFINER paths, REVOKE FROM PUBLIC, no hidden DDL, no timeouts)."""
    if not pending:
        return Check(CONVENTIONS, True, "at head: no file to apply")
    files = {str(p.relative_to(project)) for p in pending_files(project, pending)}
    findings = [f for f in _lint(project) if f.rule != "no-hardcode" and f.file in files]
    lines = [str(f) for f in findings]
    return Check(CONVENTIONS, not findings,
                 "; ".join(lines[:10]) + (f" … and {len(lines) - 10} more" if len(lines) > 10 else "") if findings
                 else f"{len(files)} file(s) of {', '.join(pending)} parse and pass iucore lint",
                 {"findings": lines})


# ---------------------------------------------------------------- 12 lock, 13 long transactions
def check_lock(conn: psycopg.Connection[Any]) -> Check:
    got = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
    if got == (True,):
        conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
        return Check(LOCK, True, "pg_try_advisory_lock succeeded (released)")
    return Check(LOCK, False, "another iucore run holds the migration advisory lock")


def check_long_transactions(conn: psycopg.Connection[Any], max_age_s: float) -> Check:
    """No transaction in this database older than max_age_s; sessions whose
    transaction the role may not see (another role's, without pg_read_all_stats)
    fail the check: it cannot tell (fail closed)."""
    rows = conn.execute(
        """SELECT pid, usename, state, round(extract(epoch FROM now() - xact_start))::int AS age_s,
                  left(query, 60)
             FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid()
              AND xact_start IS NOT NULL AND now() - xact_start > make_interval(secs => %s)
            ORDER BY xact_start""",
        (max_age_s,),
    ).fetchall()
    hidden = conn.execute(
        # another role's session, its columns hidden (NULL, query '<insufficient privilege>');
        # background workers have no user
        """SELECT count(*), string_agg(DISTINCT usename::text, ', '), quote_ident(current_user)
             FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid()
              AND usename IS NOT NULL AND state IS NULL AND xact_start IS NULL""").fetchone()
    problems = [f"pid {r[0]} ({r[1]}, {r[2]}) open {r[3]}s: {r[4]!r}" for r in rows]
    if hidden and hidden[0]:
        problems.append(f"{hidden[0]} session(s) of {hidden[1]} on this database are hidden from {hidden[2]}: their "
                        "transactions cannot be seen, so none can be ruled out; "
                        f"GRANT pg_read_all_stats TO {hidden[2]}")
    if not problems:
        return Check(LONG_TXN, True, f"none older than {max_age_s:g}s")
    return Check(LONG_TXN, False, "; ".join(problems))


# ---------------------------------------------------------------- 14 client tools
def check_tools(conn: psycopg.Connection[Any]) -> Check:
    """pg_dump of the server's major or newer (the backup) and pg_restore of exactly its
    major (what proves the backup restorable here)."""

    row = conn.execute("SELECT current_setting('server_version_num')::int").fetchone()
    major = int(row[0]) // 10000 if row else 0

    try:
        dump, restore = choose("pg_dump", major), restorer(major)
    except IUCoreError as exc:
        return Check(TOOLS, False, exc.message)
    versions = {p: (_tool_version(p) or (0, "?"))[1] for p in (dump, restore)}
    return Check(TOOLS, True, f"{dump} ({versions[dump]}); {restore} ({versions[restore]})",
                 {"pg_dump": dump, "pg_restore": restore})


# ---------------------------------------------------------------- the run
def _safely(conn: psycopg.Connection[Any], name: str, fn: Callable[[], Check]) -> Check:
    """A check that raises is a FAIL that says why (a check that could not run never passes)."""
    from psycopg.pq import TransactionStatus

    try:
        return fn()
    except Exception as exc:
        if conn.info.transaction_status != TransactionStatus.IDLE:
            conn.execute("ROLLBACK")
        return Check(name, False, f"could not run: {_first_line(exc)}")


def run(conn: psycopg.Connection[Any], project: Path, *, read_target: Target | None = None,
        expect_database: str | None = None, expect_user: str | None = None, backup_dir: Path | None = None,
        max_xact_age_s: float = 60, backup_max_age_s: float = 24 * 3600) -> PreflightReport:
    """Every mandatory gate, in the seeds' order; `conn` must be in autocommit mode."""

    t0 = time.perf_counter()
    heads = current_heads(conn)
    applied = applied_chain(project, heads)
    order = [r.revision for r in reversed(list(script_directory(project).walk_revisions()))]
    pending = [r for r in order if r not in applied]
    rep = PreflightReport(at=heads, pending=pending)
    steps: list[tuple[str, Callable[[], Check]]] = [
        (READ, lambda: check_read_identity(conn, read_target, project)),
        (WRITE, lambda: check_write_probe(conn, expect_database, expect_user)),
        (SERVER, lambda: check_server(conn)),
        (BACKUP, lambda: check_backup(conn, backup_dir, backup_max_age_s)),
        (GATES, lambda: check_gates(conn)),
        (SURFACE, lambda: check_prior_surface(conn, project, heads, applied, pending)),
        (INVENTORY, lambda: check_inventory(conn, project)),
        (CHECKSUMS, lambda: check_checksums(conn, project)),
        (SSOT, lambda: check_ssot(conn, project, applied)),
        (HARDCODE, lambda: check_no_hardcode(project, pending)),
        (CONVENTIONS, lambda: check_conventions(project, pending)),
        (LOCK, lambda: check_lock(conn)),
        (LONG_TXN, lambda: check_long_transactions(conn, max_xact_age_s)),
        (TOOLS, lambda: check_tools(conn)),
    ]
    for name, fn in steps:
        started = time.perf_counter()
        check = _safely(conn, name, fn)
        check.ms = (time.perf_counter() - started) * 1000
        rep.checks.append(check)
    rep.duration_ms = (time.perf_counter() - t0) * 1000
    return rep


def record(conn: psycopg.Connection[Any], rep: PreflightReport, *, actor: str, started_at: float) -> None:
    """The checklist as an audit row (revision `preflight`, direction `check`), so the
    next run's report can show it. A role that cannot write the log leaves the
    report saying why (`not_recorded`); the checklist itself stands."""

    rep.recorded, rep.not_recorded = record_check(
        conn, kind="preflight", outcome="passed" if rep.ok else "refused", actor=actor, started_at=started_at,
        duration_ms=rep.duration_ms, message=f"preflight: {rep.summary()}", evidence=rep.to_json())
