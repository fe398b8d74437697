"""The mandatory-gates checklist a release engineer runs before a real apply.

Seed 002 A2 ("Hard Gate 0": read identity, write identity with a reversible
probe) and seed 003 §4 ("All 14 mandatory gates PASS"): each check PASS or
FAIL with its evidence; the run passes only if every check does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .session import LOCK_KEY

if TYPE_CHECKING:
    import psycopg

# From revision least_privilege on, the gates and their classes are the
# database's (public.iu_gate_class, read through fn_iu_gate_verify_closed).
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


@dataclass
class Check:
    name: str
    ok: bool
    evidence: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"check": self.name, "status": "PASS" if self.ok else "FAIL",
                "evidence": self.evidence, **({"data": self.data} if self.data else {})}


@dataclass
class PreflightReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "passed": sum(c.ok for c in self.checks), "total": len(self.checks),
                "checks": [c.to_json() for c in self.checks]}


def _exists(conn: psycopg.Connection[Any], rel: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (rel,)).fetchone() == (True,)


def check_identity(conn: psycopg.Connection[Any], expect_database: str | None,
                   expect_user: str | None) -> Check:
    row = conn.execute(
        "SELECT current_user, current_database(), current_setting('server_version'),"
        " coalesce(host(inet_server_addr()), 'local socket')"
    ).fetchone()
    assert row is not None
    user, db, version, where = row
    problems = []
    if expect_database and db != expect_database:
        problems.append(f"database is {db!r}, expected {expect_database!r}")
    if expect_user and user != expect_user:
        problems.append(f"user is {user!r}, expected {expect_user!r}")
    ev = f"{user} | {db} | {where} | PostgreSQL {version}"
    return Check("read identity", not problems, "; ".join(problems) or ev,
                 {"user": user, "database": db, "server_version": version})


def check_write_probe(conn: psycopg.Connection[Any]) -> Check:
    """BEGIN; UPDATE a gate; read it in the transaction; ROLLBACK; value unchanged."""
    if not _exists(conn, "public.dot_config"):
        conn.execute("BEGIN")
        try:
            conn.execute("CREATE TABLE public.iucore_write_probe (x int)")
            ok = True
        except Exception as exc:  # no CREATE on public: say why
            conn.execute("ROLLBACK")
            return Check("write identity (reversible probe)", False, f"cannot create in public: {exc}")
        conn.execute("ROLLBACK")
        gone = not _exists(conn, "public.iucore_write_probe")
        return Check("write identity (reversible probe)", ok and gone,
                     "no dot_config yet: CREATE TABLE in public, ROLLBACK, table gone" if gone
                     else "probe table persisted after ROLLBACK")
    before = conn.execute("SELECT value FROM public.dot_config WHERE key = %s", (PROBE_GATE,)).fetchone()
    if before is None:
        return Check("write identity (reversible probe)", False, f"dot_config has no {PROBE_GATE} row")
    flipped = "false" if before[0] == "true" else "true"
    lines = [f"GATE | {PROBE_GATE} | {before[0]}", "BEGIN"]
    conn.execute("BEGIN")
    try:
        cur = conn.execute("UPDATE public.dot_config SET value = %s WHERE key = %s", (flipped, PROBE_GATE))
        lines.append(cur.statusmessage or "")
        in_tx = conn.execute("SELECT value FROM public.dot_config WHERE key = %s", (PROBE_GATE,)).fetchone()
        lines.append(f"IN_TX | {PROBE_GATE} | {in_tx[0] if in_tx else None}")
    except Exception as exc:
        conn.execute("ROLLBACK")
        return Check("write identity (reversible probe)", False, f"UPDATE refused: {exc}")
    conn.execute("ROLLBACK")
    lines.append("ROLLBACK")
    after = conn.execute("SELECT value FROM public.dot_config WHERE key = %s", (PROBE_GATE,)).fetchone()
    lines.append(f"AFTER_RB | {PROBE_GATE} | {after[0] if after else None}")
    ok = in_tx is not None and in_tx[0] == flipped and after is not None and after[0] == before[0]
    return Check("write identity (reversible probe)", ok, " / ".join(lines))


def check_gates(conn: psycopg.Connection[Any]) -> Check:
    name = "gates closed, never-flip intact"
    if not _exists(conn, "public.dot_config"):
        return Check(name, True, "no dot_config yet (empty database)")
    if _exists(conn, "public.iu_gate_class"):
        return _check_classified_gates(conn, name)
    rows = dict(conn.execute("SELECT key, value FROM public.dot_config").fetchall())
    governable = LEGACY_GOVERNABLE + tuple(k for k in LEGACY_LATER_GOVERNABLE if k in rows)
    missing = [k for k in governable + LEGACY_NEVER_FLIP if k not in rows]
    open_ = [k for k in governable if rows.get(k) == "true"]
    odd = [k for k in governable if k in rows and rows[k] not in ("true", "false")]
    flipped = [k for k in LEGACY_NEVER_FLIP if rows.get(k) != "false" and k in rows]
    problems = []
    if open_:
        problems.append(f"open: {', '.join(open_)} (close them: iucore gate close …)")
    if odd:
        problems.append(f"neither true nor false (fail closed): {', '.join(odd)}")
    if flipped:
        problems.append(f"never-flip not false: {', '.join(flipped)}")
    if missing:
        problems.append(f"missing (fail closed): {', '.join(missing)}")
    return Check(name, not problems,
                 "; ".join(problems) or f"{len(governable)} governable false, {len(LEGACY_NEVER_FLIP)} never-flip "
                 "false (no classification in this database yet: the chain's, before least_privilege)",
                 {"gates": {k: rows.get(k) for k in governable + LEGACY_NEVER_FLIP}})


def _check_classified_gates(conn: psycopg.Connection[Any], name: str) -> Check:
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
    problems = []
    if open_:
        problems.append(f"open: {', '.join(open_)} (close them: iucore gate close …)")
    if not_closed:
        problems.append(f"missing or neither true nor false (fail closed): {', '.join(not_closed)}")
    if flipped:
        problems.append(f"never-flip not false: {', '.join(flipped)}")
    if not problems and (not gates or v.get("all_safe") is not True):
        problems.append(f"the gate verify did not answer all_safe (fail closed): {v}")
    note = (f"; read 'true' but shut (expired, or not opened through the protocol): {', '.join(stale)} — "
            "every check treats them as shut; iucore gate watchdog resets them") if stale else ""
    ev = f"{len(governable)} governable shut, {len(never)} never-flip false (public.iu_gate_class){note}"
    return Check(name, not problems, "; ".join(problems) + note if problems else ev,
                 {"gates": {g["key"]: g.get("state") for g in gates}, "stale_open": stale})


def check_inventory(conn: psycopg.Connection[Any], project: Path) -> Check:
    """No drift in IU Core's objects (never Directus's): every extra is named, acknowledged or not."""
    from .inventory import report

    rep = report(conn, project)
    j = rep.to_json()
    acked = [f"acknowledged extra {a.cls} {a.name} ({a.reason}; by {a.by})" for a in rep.acknowledged_extras]
    if rep.ok:
        evidence = "; ".join([f"{j['present_total']}/{j['expected_total']} at {rep.revision or 'base'}", *acked])
    else:
        evidence = "; ".join(rep.drift[:10]) + (f" … and {len(rep.drift) - 10} more" if len(rep.drift) > 10 else "")
    return Check("inventory: no drift", rep.ok, evidence,
                 {"drift": rep.drift, "extras": j["extras"]})


def check_checksums(conn: psycopg.Connection[Any], project: Path) -> Check:
    from .checksums import verify

    rep = verify(conn, project)
    n = sum(f.status == "ok" for f in rep.files)
    return Check("applied files' checksums", rep.ok,
                 f"{n} file(s) of {len(rep.applied)} applied revision(s) match" if rep.ok
                 else "; ".join(rep.lines()))


def check_lock(conn: psycopg.Connection[Any]) -> Check:
    got = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
    if got == (True,):
        conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
        return Check("migration lock free", True, "pg_try_advisory_lock succeeded (released)")
    return Check("migration lock free", False, "another iucore run holds the migration advisory lock")


def check_long_transactions(conn: psycopg.Connection[Any], max_age_s: float) -> Check:
    rows = conn.execute(
        """SELECT pid, usename, state, round(extract(epoch FROM now() - xact_start))::int AS age_s,
                  left(query, 60)
             FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid()
              AND xact_start IS NOT NULL AND now() - xact_start > make_interval(secs => %s)
            ORDER BY xact_start""",
        (max_age_s,),
    ).fetchall()
    # Without pg_read_all_stats a role sees only its own sessions' transactions:
    # the others' read as '<insufficient privilege>' with no xact_start. Not
    # seeing is not "none": fail closed and say what the role needs.
    hidden = conn.execute(
        """SELECT count(*), string_agg(DISTINCT coalesce(usename, '?'), ', '), quote_ident(current_user)
             FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid()
              AND query = '<insufficient privilege>'""").fetchone()
    if not rows and hidden and hidden[0]:
        return Check("no long transaction to queue behind", False,
                     f"{hidden[0]} session(s) of {hidden[1]} on this database are hidden from {hidden[2]}: "
                     "their transactions cannot be seen, so none can be ruled out; "
                     f"GRANT pg_read_all_stats TO {hidden[2]}")
    if not rows:
        return Check("no long transaction to queue behind", True, f"none older than {max_age_s:g}s")
    return Check("no long transaction to queue behind", False,
                 "; ".join(f"pid {r[0]} ({r[1]}, {r[2]}) open {r[3]}s: {r[4]!r}" for r in rows))


def check_backup(conn: psycopg.Connection[Any], backup_dir: Path, max_age_s: float) -> Check:
    """The newest backup OF THIS DATABASE in BACKUP_DIR is recent and verifies.

    "Of this database" is the sidecar's database name, oid and cluster system
    identifier against the live ones (a dump of another database, or one
    without its sidecar, does not count); then verify_backup re-checks the
    archive with the server's own pg_restore and against the sidecar.
    """
    from .backup import backups_in, identify, verify_backup
    from .errors import IUCoreError

    name = "recent verified backup"
    ident = identify(conn)
    if ident.system_identifier is None:
        return Check(name, False, "cannot read this cluster's system identifier, so no backup can be tied to "
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
        return Check(name, False, why + " (iucore db backup --out …)")
    newest = mine[0]
    try:
        made = datetime.fromisoformat(str(newest.created_at).replace("Z", "+00:00"))
    except ValueError:
        return Check(name, False, f"{newest.sidecar}: created_at {newest.created_at!r} is not a time")
    age = (datetime.now(UTC) - made).total_seconds()
    if age > max_age_s:
        return Check(name, False, f"{newest.path} is {age / 3600:.1f} h old (max {max_age_s / 3600:g} h)")
    try:
        b = verify_backup(Path(newest.path), server_major=ident.major, expect=ident)
    except IUCoreError as exc:
        return Check(name, False, exc.message)
    return Check(name, True, b.summary(), b.to_json())


def run(conn: psycopg.Connection[Any], project: Path, *, expect_database: str | None = None,
        expect_user: str | None = None, backup_dir: Path | None = None,
        max_xact_age_s: float = 60, backup_max_age_s: float = 24 * 3600) -> PreflightReport:
    rep = PreflightReport()
    rep.checks.append(check_identity(conn, expect_database, expect_user))
    rep.checks.append(check_write_probe(conn))
    rep.checks.append(check_gates(conn))
    rep.checks.append(check_inventory(conn, project))
    rep.checks.append(check_checksums(conn, project))
    rep.checks.append(check_lock(conn))
    rep.checks.append(check_long_transactions(conn, max_xact_age_s))
    if backup_dir is not None:
        rep.checks.append(check_backup(conn, backup_dir, backup_max_age_s))
    return rep
