"""The project's figures at the points where the seeds state theirs (docs/seeds.md).

`measure` walks the seeds' story on an empty database, the way a DBA and an
operator would with iucore: the chain one revision at a time (seed 003's
016 → 260 → 017, seed 004's 034 with its rollback proof, seed 002's gate
protocol with its self-test and rollback dry-run), then head, runtime/270 and a
worker run (seed 003 §6, §10), runtime/290, seed 000's proof and seed 001 §3's
worker run. At each point it reads what the seed reports there, through the
library the CLI calls (migrate, datascripts, the proof driver, the operator
runtime, the preflight checklist) and plain catalog reads. Every value is a
string, in the form the table of docs/seeds.md shows it;
tests/test_seed_numbers.py holds the two equal.
"""

from __future__ import annotations

import subprocess
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from iu_core.commands import db as db_verbs
from iu_core.commands.demo import ledger_by_actor, worker_saw
from iu_core.config import RunOptions
from iu_core.domain.proof import run_proof
from iu_core.domain.registry import COMMANDS
from iu_core.domain.roles import apply as apply_grants
from iu_core.domain.roles import plan_readonly
from iu_core.domain.runtime import OperatorRuntime, ensure_answer
from iu_core.framework import migrate
from iu_core.framework.backup import choose
from iu_core.pg.target import Target
from iu_core.release import datascripts
from iu_core.release.preflight import run as preflight_run
from iu_core.release.ssot import ssot

ACTOR = "seed-numbers"
PROOF = "runtime_500x_op_proof"
COMPOSER_TYPES = ("collection_created", "piece_added_to_collection", "collection_rendered", "piece_reordered")


def _inventory(target: Target, project: Path) -> tuple[str, dict[str, int]]:
    rep = db_verbs.inventory(target, project=project).to_json()
    per = {c["class"]: int(c["present"]) for c in rep["classes"]}
    text = f"{rep['present_total']}/{rep['expected_total']}: " + " / ".join(f"{k} {v}" for k, v in per.items())
    return text, per


def _delta(before: dict[str, int], after: dict[str, int]) -> str:
    return ", ".join(f"{k} {after[k] - before[k]:+d}" for k in after if after[k] != before[k]) or "none"


def _one(conn: psycopg.Connection[Any], sql: str, params: Any = None) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def _count(conn: psycopg.Connection[Any], table: str, where: str = "true") -> int:
    return int(_one(conn, f"SELECT count(*) FROM {table} WHERE {where}"))  # fixed identifiers


def _tags(lines: list[str]) -> list[str]:
    """The command tags of a transcript (what psql prints per statement), without DO/LOCK noise."""
    out: list[str] = []
    for line in lines:
        word = line.split(" ", 1)[0]
        if word in {"INSERT", "DELETE", "UPDATE", "CREATE", "DROP", "COMMENT", "REVOKE", "GRANT"}:
            out.append(line.strip())
    return out


def _squash(tags: list[str]) -> str:
    """CREATE FUNCTION, CREATE FUNCTION → CREATE FUNCTION x2, as the seeds count repeats."""
    out: list[list[Any]] = []
    for t in tags:
        if out and out[-1][0] == t:
            out[-1][1] += 1
        else:
            out.append([t, 1])
    return " / ".join(t if n == 1 else f"{t} x{n}" for t, n in out)


def _schema_bytes(target: Target, major: int) -> int:
    """Size of `pg_dump --schema-only` of the database (seed 002 A4's "Schema … bytes")."""
    out = subprocess.run([choose("pg_dump", major), "--no-password", "--schema-only", "--dbname", target.libpq],
                         check=True, capture_output=True).stdout
    # pg_dump ≥ 16.10/17.6 writes a random \restrict key: same length every time, so the size holds.
    return len(out)


def _health(conn: psycopg.Connection[Any]) -> str:
    r = conn.execute("SELECT total_runs, apply_runs, applied, refused, failed, distinct_commands, catalog_size"
                     " FROM public.v_dot_iu_command_run_health").fetchone()
    assert r is not None
    return (f"{r[0]} total / {r[1]} apply / {r[2]} applied / {r[3]} refused / {r[4]} failed / "
            f"{r[5]} distinct commands / catalog {r[6]}")


def _registry_line(conn: psycopg.Connection[Any], command: str) -> str:
    r = conn.execute("SELECT runs, applied, refused, last_status FROM public.v_dot_iu_command_registry"
                     " WHERE command_name = %s", (command,)).fetchone()
    assert r is not None
    return f"{r[0]} runs / {r[1]} applied / {r[2]} refused / last_status={r[3]}"


def _gates(conn: psycopg.Connection[Any]) -> str:
    g = _one(conn, "SELECT public.fn_iu_gate_verify_closed(NULL)")
    keys = [x["key"] for x in g["gates"]]
    closed = sum(x["value"] == "false" for x in g["gates"])
    if _one(conn, "SELECT to_regclass('public.iu_gate_class') IS NOT NULL"):
        classes = dict(conn.execute("SELECT class, count(*) FROM public.iu_gate_class"
                                    " WHERE class IN ('governable', 'never_flip') GROUP BY 1").fetchall())
        gov, never = int(classes.get("governable", 0)), int(classes.get("never_flip", 0))
    else:  # gate_protocol: the classification is fn_iu_gate_open's own lists
        never = sum(k in ("iu_enact.allow_no_review_decision", "iu_core.vector_sync_enabled") for k in keys)
        gov = len(keys) - never
    return f"{len(keys)} gates ({gov} governable, {never} never-flip), {closed} false, all_safe={str(g['all_safe']).lower()}"


def _events(conn: psycopg.Connection[Any], where: str, params: Any = None) -> dict[str, int]:
    return {str(t): int(n) for t, n in conn.execute(
        f"SELECT event_type, count(*) FROM public.event_outbox WHERE {where} GROUP BY 1 ORDER BY min(created_at), 1",
        params)}


def _fmt(events: dict[str, int]) -> str:
    return ", ".join(f"{t} {n}" for t, n in events.items())


def _saw(conn: psycopg.Connection[Any], route: str) -> str:
    return "; ".join(f"{s} {sum(t.values())} ({_fmt(t)})" for s, t in worker_saw(conn, route).items())


def measure(target: Target, project: Path, major: int, say: Callable[[str], None] | None = None) -> dict[str, str]:
    """Every figure docs/seeds.md states for the project, measured on TARGET (an empty database)."""
    m: dict[str, str] = {}
    opts = RunOptions(actor=ACTOR)

    def up(rev: str, sink: Callable[[str], None] | None = None) -> Any:
        return migrate.upgrade(target, rev, project=project, options=opts, sink=sink)

    conn = psycopg.connect(target.libpq, autocommit=True)
    try:
        # ---- seed 003: the surface before 016, its backup, 016 → 260 → 017
        up("substrate")
        text, at_substrate = _inventory(target, project)
        m["003 §5 DOT before 016"] = text
        with tempfile.TemporaryDirectory() as tmp:
            m["003 §4 backup TOC entries"] = str(migrate.backup(target, Path(tmp)).toc_entries)
        up("016")
        _, at_016 = _inventory(target, project)
        m["003 §6 016 adds"] = _delta(at_substrate, at_016)
        up("260")
        text, at_260 = _inventory(target, project)
        m["003 §6 260 adds"] = _delta(at_016, at_260)
        m["003 §6 DOT after 016 + 260"] = text.split(":")[0]
        up("017")
        text, at_017 = _inventory(target, project)
        m["003 §6 017 adds"] = _delta(at_260, at_017)
        m["003 §6 DOT after 017"] = text.split(":")[0]

        # ---- seed 004: 280's catalog, 033, 034 and its rollback proof
        up("280")
        catalog_280 = _count(conn, "public.dot_iu_command_catalog")
        up("033")
        lines: list[str] = []
        r = up("034", sink=lines.append)
        rows = {x.get("check"): x for x in r.revisions[-1]["evidence"]["postcheck"]["rows"]}
        m["004 034 apply"] = (f"{next(t for t in _tags(lines) if t.startswith('INSERT'))}; catalog "
                              f"{rows['034_catalog']['catalog_rows']}; distinct target functions "
                              f"{rows['034_targets']['distinct_target_functions']}, all resolvable "
                              f"{str(rows['034_targets']['all_resolvable']).lower()}")
        m["004 catalog 280 → 034"] = f"{catalog_280} → {_count(conn, 'public.dot_iu_command_catalog')}"
        text, _ = _inventory(target, project)
        m["004 D9 at 034"] = text
        migrate.downgrade(target, "033", project=project, options=opts)
        down = _count(conn, "public.dot_iu_command_catalog")
        up("034")
        m["004 rollback proof"] = f"26 → {down} → {_count(conn, 'public.dot_iu_command_catalog')}"
        rep = ssot(conn, project, ["substrate", "016", "260", "017", "280", "033", "034"])
        m["004 SSOT re-run"] = ", ".join(f"{x.revision}: {x.tag}" for x in rep.reruns)
        m["004 registry / governed"] = (f"{len(COMMANDS)} commands; governed at 280 "
                                        f"{sum(c.revision == '280' for c in COMMANDS)}, at 034 {rep.registry_rows}")

        # ---- seed 002: the gate protocol
        m["002 A3 event_type_registry"] = ", ".join(
            f"{n} {d}" for d, n in conn.execute(
                "SELECT event_domain, count(*) FROM public.event_type_registry GROUP BY 1 ORDER BY 2 DESC, 1"))
        m["002 A3 event_type_registry"] = (f"{_count(conn, 'public.event_type_registry')} rows: "
                                           + m["002 A3 event_type_registry"])
        m["002 A3 review_decision rowcount"] = str(_count(conn, "cutter_governance.review_decision"))
        m["002 A3 catalog/run CHECKs"] = "; ".join(
            f"{col} {n}" for col, n in conn.execute(
                """SELECT a.attname,
                          (SELECT count(*) FROM regexp_matches(pg_get_constraintdef(c.oid), $$'[a-z_]+'$$, 'g'))
                     FROM pg_constraint c
                     JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
                    WHERE c.conrelid = 'public.dot_iu_command_run'::regclass AND c.contype = 'c'
                      AND a.attname IN ('category', 'run_mode', 'run_status') ORDER BY 1"""))
        catalog_before, run_before = _count(conn, "public.dot_iu_command_catalog"), _count(conn, "public.dot_iu_command_run")
        schema_before = _schema_bytes(target, major)
        etr_before = _count(conn, "public.event_type_registry")
        lines = []
        up("gate_protocol", sink=lines.append)
        vol = next(x for x in lines if x.lstrip().startswith("gate_protocol_functions"))
        m["002 A4 apply transcript"] = _squash(_tags(lines))
        m["002 A4 catalog"] = f"{catalog_before} → {_count(conn, 'public.dot_iu_command_catalog')}"
        m["002 A4 new rows"] = ", ".join(
            f"{n}|{c}|mut={str(mu).lower()}|rev={str(rv).lower()}" for n, c, mu, rv in conn.execute(
                "SELECT command_name, category, mutating, reversible FROM public.dot_iu_command_catalog"
                " WHERE command_name LIKE 'dot\\_iu\\_gate\\_%' ORDER BY 1"))
        m["002 A4 volatility"] = vol.split("|", 1)[1].strip()
        m["002 A4 dot_iu_command_run"] = f"{run_before} → {_count(conn, 'public.dot_iu_command_run')}"
        schema_after = _schema_bytes(target, major)
        m["002 A4 schema Δ bytes"] = f"{schema_after - schema_before:+,}"
        m["002 A2 gates"] = _gates(conn)
        [self_test] = migrate.selftest(target, ["gate_protocol"], project=project)
        m["002 A5 self-test, then"] = (
            f"{self_test.status}; iu_gate_transition {_count(conn, 'public.iu_gate_transition')}, "
            f"dot_iu_command_run {_count(conn, 'public.dot_iu_command_run')}, "
            f"catalog {_count(conn, 'public.dot_iu_command_catalog')}")
        lines = []
        migrate.downgrade(target, "034", project=project, options=opts.with_(rehearse=True), sink=lines.append)
        rb = next(x for x in lines if x.lstrip().startswith("gate_protocol_rollback"))
        m["002 A6 rollback dry-run"] = (f"{_squash(_tags(lines))}; inside: catalog {rb.split('|')[1].strip()}; "
                                        f"after ROLLBACK: catalog {_count(conn, 'public.dot_iu_command_catalog')}")
        m["002 A7 stayed"] = (f"review_decision {_count(conn, 'cutter_governance.review_decision')}, "
                              f"event_type_registry {etr_before} → {_count(conn, 'public.event_type_registry')}")

        # ---- head
        up("head")
        m["002 A2 gates at head"] = _gates(conn)

        # ---- seed 003 §6, §10: runtime/270, then a worker run
        rt = OperatorRuntime(conn, ACTOR)
        iu_before = _count(conn, "public.information_unit")
        datascripts.apply(target, "270", approval_id=str(uuid.uuid4()), project=project, options=opts)
        m["003 §2 information_unit"] = f"{iu_before} → {_count(conn, 'public.information_unit')}"
        m["003 §6 270 writes"] = (
            f"{_count(conn, 'public.iu_collection', 'created_by = ' + repr('runtime_270'))} collection, "
            f"{_count(conn, 'public.information_unit', 'created_by = ' + repr('runtime_270'))} IUs, "
            f"{_count(conn, 'public.iu_collection_member', 'added_by = ' + repr('runtime_270'))} memberships, "
            f"events: {_fmt(_events(conn, 'actor = %s', ('runtime_270',)))}")
        w = ensure_answer(rt.apply("dot_iu_route_worker_run", {"route_code": "iu_outbound_default", "limit": 200})).answer
        m["003 §10 worker after 270"] = (
            f"seen={w['seen']}, attempts_written={w['attempts_written']}, skipped={w['skipped']}, "
            f"dead_lettered={w['dead_lettered']}, "
            f"sent {_count(conn, 'public.iu_route_attempt', 'attempt_status = ' + repr('sent'))}: "
            + _saw(conn, "iu_outbound_default"))

        # ---- seed 001 §6: runtime/290
        counts = {t: _count(conn, t) for t in ("public.information_unit", "public.iu_collection",
                                                "public.iu_collection_member")}
        datascripts.apply(target, "290", approval_id=str(uuid.uuid4()), project=project, options=opts)
        m["001 §6 290 writes"] = (
            ", ".join(f"{_count(conn, t) - n:+d} {t.split('.')[1]}" for t, n in counts.items())
            + f", events: {_fmt(_events(conn, 'actor = %s', ('runtime_290',)))}")

        # ---- seed 000: the seven-step proof
        before = ledger_by_actor(conn)
        proof = run_proof(conn, actor=PROOF)
        assert proof.ok, proof.problems
        after = ledger_by_actor(conn)
        m["000 §3 proof table"] = " / ".join(
            f"{s.n} {s.status} {'t' if s.mutating else 'f'} {s.ledger_rows} row" for s in proof.steps)
        m["000 §3 step 7 closed_gates"] = repr(proof.closed_gates_step7)
        back = proof.steps[4].call.rsplit("=", 1)[1].rstrip(")")
        m["000 §4 order after compensation"] = f"piece_order {back} → 0 → {back}; " + ", ".join(proof.order_after)
        grew = {a: after[a] - before.get(a, 0) for a in after if after[a] != before.get(a, 0)}
        m["000 §5 dot_iu_command_run"] = (f"{sum(before.values())} → {sum(after.values())} ("
                                          + ", ".join(f"+{n} {a}" for a, n in grew.items()) + ")")
        m["000 §5 run health"] = _health(conn)
        for cmd in ("dot_iu_reorder_piece", "dot_iu_checkpoint_collection", "dot_iu_validate_collection"):
            m[f"000 §5 registry {cmd}"] = _registry_line(conn, cmd)
        m["000 §5 end-state"] = ", ".join(
            f"{g['key']}={g['value']}" for g in _one(conn, "SELECT public.fn_iu_gate_verify_closed(NULL)")["gates"]
            if g["key"] in ("iu_core.operator_runtime_enabled", "iu_core.composer_enabled"))
        m["000 §6 commands in the proof's rows"] = ", ".join(r[0] for r in conn.execute(
            "SELECT DISTINCT command_name FROM public.dot_iu_command_run WHERE actor = %s ORDER BY 1", (PROOF,)))
        cid = proof.collection_id
        ev = _events(conn, "event_subject_ref = %s AND event_type = ANY(%s)", (cid, list(COMPOSER_TYPES)))
        distinct = conn.execute(
            "SELECT count(*), count(DISTINCT event_id), array_agg(DISTINCT delivery_lane) FROM public.event_outbox"
            " WHERE event_subject_ref = %s", (cid,)).fetchone()
        assert distinct is not None
        m["001 §1 composer events of the collection"] = (
            f"{_fmt(ev)}; total {distinct[0]}, {distinct[1]} distinct ids, lanes {','.join(distinct[2])}")
        m["001 §6 proof writes"] = (
            f"+{sum(grew.values())} ledger rows, composer events: "
            f"{_fmt(_events(conn, 'actor = %s', (PROOF,)))}")

        # ---- seed 001 §3: one worker run after the durable mutations
        attempts = _count(conn, "public.iu_route_attempt")
        w = ensure_answer(rt.apply("dot_iu_route_worker_run", {"route_code": "iu_outbound_default", "limit": 200})).answer
        m["001 §3 worker"] = (f"seen={w['seen']}, attempts_written={w['attempts_written']}, skipped={w['skipped']}, "
                              f"dead_lettered={w['dead_lettered']}: " + _saw(conn, "iu_outbound_default"))
        statuses = dict(conn.execute("SELECT attempt_status, count(*) FROM public.iu_route_attempt GROUP BY 1").fetchall())
        m["001 §3 iu_route_attempt"] = (f"{attempts} → {_count(conn, 'public.iu_route_attempt')} ("
                                        + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) + ")")
        m["001 §3 dead letters open"] = str(_count(conn, "public.v_iu_route_dead_letter_open"))
        m["001 §7 run health after the worker"] = _health(conn)
        views = ("v_dot_iu_command_registry", "v_dot_iu_command_run_health", "v_iu_collection_health",
                 "v_iu_collection_manifest", "v_iu_composer_event_backlog", "v_iu_route_attempt_summary",
                 "v_iu_route_dead_letter_open")
        present = sum(bool(_one(conn, "SELECT to_regclass(%s) IS NOT NULL", (f"public.{v}",))) for v in views)
        m["001 §7 observability views"] = f"{present}/{len(views)} present"
        text, _ = _inventory(target, project)
        m["001 §4 DOT at head"] = text
        m["000 §5 catalog at head"] = str(_count(conn, "public.dot_iu_command_catalog"))

        # ---- seed 003 §4: the mandatory gates before an apply
        # with the read identity of seed 002 A2: a real read-only login (db grant --readonly)
        reader = f"seed_numbers_ro_{uuid.uuid4().hex[:8]}"
        conn.execute(f'CREATE ROLE "{reader}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE')
        try:
            apply_grants(conn, plan_readonly(conn, reader))
            with tempfile.TemporaryDirectory() as tmp:
                migrate.backup(target, Path(tmp))
                pre = preflight_run(conn, project, backup_dir=Path(tmp),
                                    read_target=Target.of(**{**target.params, "user": reader})).to_json()
        finally:
            conn.execute(f'DROP OWNED BY "{reader}"')
            conn.execute(f'DROP ROLE "{reader}"')
        m["003 §4 mandatory gates"] = f"{pre['passed']}/{pre['total']} PASS"
    finally:
        conn.close()
    if say:
        for k, v in m.items():
            say(f"{k}: {v}")
    return m
