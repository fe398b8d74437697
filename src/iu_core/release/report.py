"""`iucore db report [RUN_ID]`: one run as the seeds' evidence appendix.

Seed 002's "Live Apply Appendix" (A1-A7), seed 003 §4-§12 and seed 004 were
written by hand after each apply. This module renders the same appendix from
what iucore recorded while the run happened (iucore.migration_log: the rows of
the run, their `evidence` with what iu_core.framework.observe saw inside each revision's
transaction, the `backup` of the run, the `db preflight` that preceded it and
the `selftest` that followed it). Nothing is re-measured now: a report of an
old run shows that run's figures.

`build` gathers the data (a plain dict: `--json` prints exactly it); `render`
turns that dict, and only it, into Markdown.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BadInput
from ..framework.fingerprint import EXACT_COUNT_LIMIT
from ..framework.observe import SIZE_DEFINITION, VERSION
from ..framework.transcript import format_table
from .preflight import READ

if TYPE_CHECKING:
    import psycopg


class UnknownRun(BadInput):
    """A RUN_ID that names no run of this database (or more than one)."""


_COLUMNS = ("log_id, run_id::text AS run_id, revision, direction, mode, outcome, actor, started_at,"
            " duration_ms::float8 AS duration_ms, message, checksums, evidence, db_user, client, backup, override")
# As seed 002 A4 counts repeated statements: "CREATE FUNCTION" times 4.
TIMES = "\N{MULTIPLICATION SIGN}"
_PREFIX = re.compile(r"^[0-9a-f-]{4,36}$")


def _rows(conn: psycopg.Connection[Any], where: str, params: Iterable[Any], *,
          last: bool = False) -> list[dict[str, Any]]:
    """Audit rows matching `where` (fixed text, values bound), oldest first; `last`: only the newest."""
    order = "ORDER BY log_id DESC LIMIT 1" if last else "ORDER BY log_id"
    cur = conn.execute(f"SELECT {_COLUMNS} FROM iucore.migration_log WHERE {where} {order}", list(params))
    cols = [d.name for d in cur.description or []]
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def resolve(conn: psycopg.Connection[Any], run_id: str | None) -> str:
    """The run a RUN_ID names (a full uuid, or a unique prefix of at least 4 characters);
    without one, the last run (a check — preflight, selftest — is not a run of its own)."""
    if conn.execute("SELECT to_regclass('iucore.migration_log') IS NULL").fetchone() == (True,):
        raise UnknownRun(f"no run is recorded in database {conn.info.dbname!r}: iucore has not run here "
                         "(iucore.migration_log does not exist)", run_id=run_id)
    if run_id is None:
        row = conn.execute("SELECT run_id::text FROM iucore.migration_log WHERE direction <> 'check'"
                           " ORDER BY log_id DESC LIMIT 1").fetchone()
        if row is None:
            raise UnknownRun(f"no run is recorded in database {conn.info.dbname!r} yet (db history is empty)")
        return str(row[0])
    text = run_id.strip().lower()
    try:
        full = str(uuid.UUID(text))
    except ValueError:
        full = None
    if full is not None:
        found = [r[0] for r in conn.execute(
            "SELECT DISTINCT run_id::text FROM iucore.migration_log WHERE run_id = %s", (full,))]
    elif _PREFIX.match(text):
        found = [r[0] for r in conn.execute(
            "SELECT DISTINCT run_id::text FROM iucore.migration_log WHERE starts_with(run_id::text, %s)"
            " ORDER BY 1 LIMIT 10", (text,))]
    else:
        raise UnknownRun(f"{run_id!r} is not a run id (a uuid, or its first characters, as `iucore db history "
                         "--json` shows them)", run_id=run_id)
    if not found:
        raise UnknownRun(f"no run {run_id!r} in database {conn.info.dbname!r}; `iucore db history --json` lists "
                         "the runs with their run_id", run_id=run_id)
    if len(found) > 1:
        raise UnknownRun(f"{run_id!r} names several runs ({', '.join(found)}): give more of the run id",
                         run_id=run_id, candidates=found)
    return str(found[0])


# ---------------------------------------------------------------- gathering
def build(conn: psycopg.Connection[Any], run_id: str | None = None) -> dict[str, Any]:
    """Everything the report of one run says, as recorded (see the module doc)."""
    rid = resolve(conn, run_id)
    rows = _rows(conn, "run_id = %s", [rid])
    first, last = rows[0], rows[-1]
    kind = _kind(rows)
    report: dict[str, Any] = {
        "report_version": VERSION,
        "run_id": rid,
        "kind": kind,
        "mode": first["mode"],
        "outcome": _outcome(rows),
        "revisions": [r["revision"] for r in rows],
        "started_at": first["started_at"].isoformat(),
        "duration_ms": round(sum(float(r["duration_ms"] or 0) for r in rows if kind != "adopt")
                             or float(last["duration_ms"] or 0), 1),
        "actor": first["actor"],
        "db_user": first["db_user"],
        "client": first["client"],
        "log_ids": [r["log_id"] for r in rows],
        "messages": [r["message"] for r in rows if r["message"]],
    }
    observed = [r["evidence"].get("observed") or {} for r in rows]
    ident = next((o["identity"] for o in observed if o.get("identity")), None)
    report["target"] = ident
    if kind in ("preflight", "selftest"):
        report["check"] = first["evidence"]
        return report
    report["preflight"] = _preflight_before(conn, first["log_id"])
    report["read_identity"] = _read_identity(report["preflight"])
    if kind == "adopt":
        report["adopt"] = _adopt(rows)
        report["steps"] = []
    elif kind == "stamp":
        report["stamp"] = [r["evidence"] for r in rows]
        report["steps"] = []
    else:
        report["steps"] = [_step(r, i, len(rows)) for i, r in enumerate(rows)]
    report["run_totals"] = _totals(report["steps"])
    report["backup"] = next((r["backup"] for r in rows if r["backup"]), None)
    report["override"] = next((r["override"] for r in rows if r["override"]), None)
    report["selftest"] = _selftest_after(conn, rows)
    report["rehearsal"] = (next((o.get("rehearsal") for o in observed if o.get("rehearsal")), None)
                           if first["mode"] == "rehearsal" else None)
    if first["mode"] == "rehearsal" and kind == "adopt":
        report["rehearsal"] = {"note": "adopt rehearsal: the version row and audit rows were written and "
                                       "rolled back; no SQL of the chain ran"}
    return report


def _kind(rows: list[dict[str, Any]]) -> str:
    r = rows[0]
    if r["direction"] == "check":
        return str(r["revision"])
    if any(x["outcome"] == "stamped" for x in rows):
        return "stamp"
    if any(x["outcome"] == "adopted" or "vouched_for" in (x["evidence"] or {}) for x in rows):
        return "adopt"
    if str(r["revision"]).startswith("runtime/"):
        return f"runtime {r['direction']}"
    return str(r["direction"])


def _outcome(rows: list[dict[str, Any]]) -> str:
    outcomes = [r["outcome"] for r in rows]
    bad = [o for o in outcomes if o in ("refused", "failed", "interrupted")]
    if bad:
        done = [r["revision"] for r in rows if r["outcome"] == "applied"]
        return bad[-1] + (f" (after {', '.join(done)} committed)" if done else "")
    return outcomes[-1]


def _compress(tags: list[str]) -> str:
    out: list[str] = []
    i = 0
    while i < len(tags):
        j = i
        while j + 1 < len(tags) and tags[j + 1] == tags[i]:
            j += 1
        n = j - i + 1
        out.append(tags[i] + (f" {TIMES}{n}" if n > 1 else ""))
        i = j + 1
    return " / ".join(out)


def _step(row: dict[str, Any], index: int, count: int) -> dict[str, Any]:
    """One revision (or runtime script) of the run, from its audit row."""
    ev = row["evidence"] or {}
    obs = ev.get("observed") or {}
    rehearsal = row["mode"] == "rehearsal"
    tags = [t["tag"] for t in ev.get("transcript") or []]
    # One transaction per revision; a rehearsal is one transaction for the whole run.
    opening = ["BEGIN"] if (not rehearsal or index == 0) else []
    if row["outcome"] in ("refused", "failed", "interrupted"):
        err = ev.get("error") or {}
        ending = [f"ERROR ({err.get('section', '?')}, {err.get('file', '?')}:{err.get('line', '?')}: "
                  f"{err.get('message', row['message'])})" if err else "ERROR", "ROLLBACK"]
    elif rehearsal:
        ending = ["ROLLBACK"] if index == count - 1 else []
    else:
        ending = ["COMMIT"]
    # Without a recorded transcript (an offline script's row, an older iucore) the tags are unknown.
    statement_tags = [*opening, *tags, *ending] if "transcript" in ev else []
    changes = obs.get("changes") or {}
    tables = changes.get("tables") or []
    step: dict[str, Any] = {
        "log_id": row["log_id"], "revision": row["revision"], "direction": row["direction"],
        "outcome": row["outcome"], "message": row["message"], "started_at": row["started_at"].isoformat(),
        "duration_ms": float(row["duration_ms"] or 0), "checksums": row["checksums"] or {},
        "observed": bool(obs.get("version")), "not_observed": obs.get("not_observed") or [],
        "artifacts": obs.get("artifacts") or [],
        "transcript": ev.get("transcript") or [],
        "tags": statement_tags,
        "tags_line": _compress(statement_tags) if statement_tags else "statements not recorded for this row",
        "checks": {k: v for k, v in ev.items() if k in ("preflight", "postcheck", "guard", "assert")},
        "error": ev.get("error"),
        "gates": {"before": (obs.get("before") or {}).get("gates"), "after": (obs.get("after") or {}).get("gates"),
                  "source": (obs.get("after") or obs.get("before") or {}).get("gates_source")},
        "before": {k: v for k, v in (obs.get("before") or {}).items() if k not in ("gates", "counts")},
        "after": {k: v for k, v in (obs.get("after") or {}).items() if k not in ("gates", "counts")},
        "objects": changes.get("objects"),
        "catalog": changes.get("catalog"),
        "functions": changes.get("functions"),
        "config_values_changed": changes.get("config_values_changed"),
        "tables": tables,
        "size_bytes": changes.get("size_bytes") or (
            {"before": (obs.get("before") or {}).get("size_bytes"), "after": None, "delta": None}
            if obs.get("before") else None),
        "written": [t["table"] for t in tables if _written(t)],
        "not_written": [t["table"] for t in tables if _not_written(t)],
    }
    return step


def _written(t: dict[str, Any]) -> bool:
    return bool(any(t.get("ins_upd_del") or []) or t.get("delta") or t.get("before") is None
                or t.get("after") is None)


def _not_written(t: dict[str, Any]) -> bool:
    """Proven untouched: there before and after, Δ=0 (or an estimate), and no
    INSERT/UPDATE/DELETE counted in the revision's transaction."""
    return (t.get("before") is not None and t.get("after") is not None and t.get("ins_upd_del") is not None
            and not any(t["ins_upd_del"]) and t.get("delta") in (0, None))


def _totals(steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The run as a whole: the first revision's before against the last one's after."""
    observed = [s for s in steps if s["observed"] and s["after"]]
    if not observed or len(observed) != len(steps):
        return None
    first, last = steps[0], steps[-1]
    written = sorted({t for s in steps for t in s["written"]})
    tables = sorted({t["table"] for s in steps for t in s["tables"]})
    return {
        "catalog_rows": {"before": first["before"].get("catalog_rows"), "after": last["after"].get("catalog_rows")},
        "size_bytes": {"before": first["before"].get("size_bytes"), "after": last["after"].get("size_bytes"),
                       "delta": (last["after"].get("size_bytes") or 0) - (first["before"].get("size_bytes") or 0)},
        "objects": {"before": first["before"].get("objects"), "after": last["after"].get("objects")},
        "tables_written": written,
        "tables_not_written": [t for t in tables if t not in written
                               and all(t in s["not_written"] for s in steps)],
    }


def _preflight_before(conn: psycopg.Connection[Any], first_log_id: int) -> dict[str, Any] | None:
    """The last `db preflight` before the run, if no other real run came between."""
    pre = _rows(conn, "revision = 'preflight' AND direction = 'check' AND log_id < %s", [first_log_id], last=True)
    if not pre:
        return None
    p = pre[0]
    between = conn.execute(
        "SELECT run_id::text FROM iucore.migration_log WHERE log_id > %s AND log_id < %s AND direction <> 'check'"
        " AND mode = 'real' ORDER BY log_id LIMIT 1", (p["log_id"], first_log_id)).fetchone()
    ev = p["evidence"] or {}
    out = {"run_id": p["run_id"], "log_id": p["log_id"], "started_at": p["started_at"].isoformat(),
           "actor": p["actor"], "outcome": p["outcome"], "summary": ev.get("summary"),
           "passed": ev.get("passed"), "total": ev.get("total"), "at": ev.get("at"),
           "pending": ev.get("pending"), "checks": ev.get("checks") or []}
    if between:
        out["stale"] = f"another real run ({between[0]}) came between it and this run"
    return out


def _read_identity(preflight: dict[str, Any] | None) -> dict[str, Any] | None:
    if not preflight:
        return None
    check = next((c for c in preflight["checks"] if c.get("check") == READ), None)
    if check is None:
        return None
    return {"status": check["status"], "evidence": check["evidence"], **(check.get("data") or {})}


def _selftest_after(conn: psycopg.Connection[Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    if rows[0]["mode"] == "rehearsal":
        return {"status": "not applicable", "why": "a rehearsal applies nothing"}
    if any(r["outcome"] in ("refused", "failed", "interrupted") for r in rows) and not any(
            r["outcome"] == "applied" for r in rows):
        return {"status": "not applicable", "why": "nothing of this run committed"}
    last = rows[-1]["log_id"]
    nxt = conn.execute("SELECT min(log_id) FROM iucore.migration_log WHERE log_id > %s AND direction <> 'check'"
                       " AND mode = 'real'", (last,)).fetchone()
    bound = nxt[0] if nxt and nxt[0] is not None else None
    where = "revision = 'selftest' AND direction = 'check' AND log_id > %s"
    params: list[Any] = [last]
    if bound is not None:
        where += " AND log_id < %s"
        params.append(bound)
    found = _rows(conn, where, params)[:1]
    if not found:
        return {"status": "not run", "why": "no `iucore selftest` was recorded after this run"
                + (" before the next one" if bound is not None else "")}
    s = found[0]
    ev = s["evidence"] or {}
    return {"status": s["outcome"], "run_id": s["run_id"], "log_id": s["log_id"],
            "started_at": s["started_at"].isoformat(), "actor": s["actor"], "summary": ev.get("summary"),
            "results": ev.get("results") or []}


def _adopt(rows: list[dict[str, Any]]) -> dict[str, Any]:
    main = next((r for r in rows if "vouched_for" in (r["evidence"] or {})), rows[-1])
    ev = main["evidence"] or {}
    obs = ev.get("observed") or {}
    return {"revision": ev.get("revision"), "vouched_for": ev.get("vouched_for"), "checks": ev.get("checks"),
            "verified": {k: len(v) for k, v in (ev.get("verified") or {}).items()},
            "acknowledged": ev.get("acknowledged"), "differences": ev.get("differences"),
            "checksums": ev.get("checksums"), "artifacts": obs.get("artifacts") or [],
            "state": obs.get("state"), "not_observed": obs.get("not_observed") or []}


# ---------------------------------------------------------------- rendering
def _n(v: Any) -> str:
    return "—" if v is None else f"{v:,}" if isinstance(v, int) else str(v)


def _delta(v: Any) -> str:
    return "—" if v is None else f"{v:+,}" if v else "0"


def _code(v: Any) -> str:
    return "`" + str(v).replace("`", "'") + "`"


def _cell(v: Any) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def _table(head: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return [*out, ""]


def _when(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    except ValueError:
        return iso


def _identity_line(i: dict[str, Any] | None) -> str:
    if not i:
        return "not recorded"
    addr = i.get("server_address")
    if i.get("server_port"):
        addr = f"{addr}:{i['server_port']}"
    role = i.get("current_user")
    if i.get("session_user") and i.get("session_user") != role:
        role = f"{role} (session user {i['session_user']})"
    return _code(f"{role} | {i.get('database')} | {addr} | PostgreSQL {i.get('server_version')}")


def render(rep: dict[str, Any]) -> str:
    """The report as Markdown: seed 002's appendix, A1-A7, for one run."""
    out: list[str] = []
    kind, mode = rep["kind"], rep["mode"]
    revs = rep["revisions"]
    title = {"preflight": "db preflight", "selftest": "selftest"}.get(kind, f"{kind} {revs[-1]}")
    out += [f"# iucore run report — {title} ({mode}, {rep['outcome']})", ""]
    out += _table(["", ""], [
        ["run", _code(rep["run_id"])], ["kind", f"{kind} ({mode})"],
        ["revisions", " → ".join(dict.fromkeys(revs))], ["outcome", rep["outcome"]],
        ["started", _when(rep["started_at"])], ["duration", f"{rep['duration_ms']:,.0f} ms"],
        ["actor", f"{rep['actor']} (database role {rep['db_user']}, client {rep['client']})"],
        ["audit rows", ", ".join(map(str, rep["log_ids"]))],
    ])
    if kind in ("preflight", "selftest"):
        out += _check_run(rep)
        return "\n".join(out).rstrip() + "\n"
    out += _a1(rep) + _a2(rep) + _a3(rep) + _a4(rep) + _a5(rep) + _a6(rep) + _a7(rep)
    return "\n".join(out).rstrip() + "\n"


def _check_run(rep: dict[str, Any]) -> list[str]:
    ev = rep.get("check") or {}
    if rep["kind"] == "preflight":
        out = ["## Mandatory gates", "", f"**{ev.get('summary')}** (target {ev.get('target')}, at "
               f"{', '.join(ev.get('at') or []) or 'base'})", ""]
        return out + _checklist(ev.get("checks") or [])
    out = ["## Self-tests", "", f"**{ev.get('summary')}** (at {', '.join(ev.get('at') or []) or 'base'})", ""]
    return out + _table(["self-test", "status", "reason"],
                        [[r.get("name"), r.get("status"), r.get("reason") or ""] for r in ev.get("results") or []])


def _checklist(checks: list[dict[str, Any]]) -> list[str]:
    return _table(["#", "check", "status", "evidence"],
                  [[i, c.get("check"), f"**{c.get('status')}**", c.get("evidence")] for i, c in enumerate(checks, 1)])


def _artifacts(steps_or_files: list[dict[str, Any]]) -> list[str]:
    rows, seen = [], set()
    for a in steps_or_files:
        if a["path"] in seen:
            continue
        seen.add(a["path"])
        rows.append([_code(a["path"]), a["kind"], _n(a["bytes"]), _code(a["sha256"]), _code(a["md5"])])
    if not rows:
        return ["Artifacts: not recorded for this run.", ""]
    return _table(["file", "kind", "bytes", "sha256", "md5"], rows)


def _a1(rep: dict[str, Any]) -> list[str]:
    out = ["## A1 — Target, identities and artifacts", ""]
    out.append(f"- **Write/apply identity** (role | database | server | version): {_identity_line(rep['target'])}")
    if rep["target"]:
        out.append(f"  - database oid {rep['target'].get('database_oid')}, server started "
                   f"{_when(rep['target'].get('server_started_at') or '')}")
    ri = rep.get("read_identity")
    if ri:
        line = (_code(f"{ri.get('role')} | {ri.get('database')} | {ri.get('server_address')} | PostgreSQL "
                      f"{ri.get('server_version')}") if ri.get("role") else "")
        out.append(f"- **Read identity**: {line} — {ri['status']} in the preflight before this run: "
                   f"{ri['evidence']}")
    else:
        out.append("- **Read identity**: not known for this run (no `db preflight --read-url` before it)")
    out.append("")
    files = rep["adopt"]["artifacts"] if rep["kind"] == "adopt" else [a for s in rep["steps"] for a in s["artifacts"]]
    out += ["Artifacts (sha256 and md5 of the bytes on disk; `\\ir` includes listed after the file that "
            "includes them):", ""]
    out += _artifacts(files)
    expanded = [(a["path"], a["sha256_expanded"]) for a in files
                if a.get("sha256_expanded") and a["sha256_expanded"] != a["sha256"]]
    if expanded:
        out += ["sha256 of the text psql runs (includes expanded), which the audit records and `db verify` holds "
                "the files to:", ""]
        out += [f"- {_code(p)}: {_code(h)}" for p, h in expanded] + [""]
    return out


def _a2(rep: dict[str, Any]) -> list[str]:
    out = ["## A2 — Mandatory gates (the `db preflight` before this run)", ""]
    p = rep.get("preflight")
    if not p:
        return [*out, "No `db preflight` was recorded before this run.", ""]
    out.append(f"**{p.get('summary')}** — preflight run {_code(p['run_id'])} at {_when(p['started_at'])} by "
               f"{p['actor']} (database at {', '.join(p.get('at') or []) or 'base'}; pending "
               f"{', '.join(p.get('pending') or []) or 'nothing'}).")
    if p.get("stale"):
        out.append(f"Note: {p['stale']}.")
    out.append("")
    return out + _checklist(p["checks"])


def _gate_cell(g: dict[str, Any] | None) -> str:
    if g is None:
        return "—"
    return f"{g.get('value')} ({g.get('state')})"


def _a3(rep: dict[str, Any]) -> list[str]:
    out = ["## A3 — Gates before and after", ""]
    if rep["kind"] == "adopt":
        state = (rep["adopt"].get("state") or {}).get("gates")
        if not state:
            return [*out, "Not recorded.", ""]
        return out + _table(["gate", "class", "value (effective state)"],
                            [[_code(g["key"]), g["class"], _gate_cell(g)] for g in state])
    steps = [s for s in rep["steps"] if s["gates"]["before"] is not None or s["gates"]["after"] is not None]
    if not steps:
        return [*out, "Not recorded.", ""]
    before = {g["key"]: g for g in steps[0]["gates"]["before"] or []}
    after = {g["key"]: g for g in steps[-1]["gates"]["after"] or []}
    classes = {k: g["class"] for k, g in {**before, **after}.items()}
    rows = [[_code(k), classes[k], _gate_cell(before.get(k)), _gate_cell(after.get(k))]
            for k in sorted(classes, key=lambda k: (classes[k], k))]
    if not rows:
        return [*out, "No gate in the database (no dot_config) before or after.", ""]
    out.append(f"Value and effective state; classes from {steps[-1]['gates']['source']}. Before: at the first "
               "revision's start; after: at the last revision's end (before its COMMIT or ROLLBACK).")
    out.append("")
    return out + _table(["gate", "class", "before", "after"], rows)


def _rows_block(title: str, sec: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for n in sec.get("notices") or []:
        out.append(f"NOTICE:  {n}")
    rows = sec.get("rows") or []
    groups: dict[tuple[str, ...], list[list[Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r), []).append(list(r.values()))
    for cols, vals in groups.items():
        out += format_table(list(cols), vals)
    if not out:
        return []
    return [f"{title}:", "", "```", *out, "```", ""]


def _a4(rep: dict[str, Any]) -> list[str]:
    out = ["## A4 — Transcript", ""]
    if rep["kind"] == "adopt":
        a = rep["adopt"]
        out += [f"No statement of the chain ran: `db adopt` proved {' → '.join(a.get('vouched_for') or [])} "
                "object by object and recorded it.", ""]
        out += _table(["check", "status", "detail"], [[c.get("check"), c.get("status"),
                                                       c.get("detail") or "; ".join(c.get("differences") or [])]
                                                      for c in a.get("checks") or []])
        return out
    if rep["kind"] == "stamp":
        return out + ["No statement ran: a stamp records a revision without checking anything.", ""] + [
            f"- {_code(e.get('command'))}: stamped {', '.join(e.get('stamped') or [])} from "
            f"{', '.join(e.get('from') or []) or 'base'} — {e.get('warning')}" for e in rep["stamp"]] + [""]
    for s in rep["steps"]:
        out += [f"### {s['revision']} {s['direction']} — {s['outcome']}", "", f"`{s['tags_line']}`", ""]
        rows = [[i, t["section"], f"{t['file']}:{t['line']}", _code(t["tag"])] for i, t in enumerate(s["transcript"], 1)]
        if rows:
            out += _table(["#", "section", "file:line", "command tag"], rows)
        if s["error"]:
            e = s["error"]
            out += [f"**Stopped** in @{e.get('section')} at {e.get('file')}:{e.get('line')}: "
                    f"{e.get('sqlstate')} {e.get('message')}", ""]
        for sec, label in (("preflight", "Preflight"), ("guard", "Guard"), ("postcheck", "Post-check"),
                           ("assert", "Assert")):
            if sec in s["checks"]:
                out += _rows_block(f"{label} ({s['checks'][sec].get('statements')} statement(s))", s["checks"][sec])
    return out


def _a5(rep: dict[str, Any]) -> list[str]:
    out = ["## A5 — Object diff", ""]
    if rep["kind"] == "adopt":
        v = rep["adopt"].get("verified") or {}
        return [*out, "Nothing changed: adopt changes no IU Core object. Objects verified present per class:", "", *_table(["class", "verified"], [[k, _n(n)] for k, n in sorted(v.items())])]
    if rep["kind"] == "stamp":
        return [*out, "Not observed: a stamp runs nothing.", ""]
    for s in rep["steps"]:
        out += [f"### {s['revision']} {s['direction']}", ""]
        if not s["observed"] or s["objects"] is None:
            out += [_not_observed(s), ""]
            continue
        objs = s["objects"]
        out += _table(["class", "before", "after", "added", "removed", "changed"],
                      [[c, _n(o["before"]), _n(o["after"]), len(o["added"]), len(o["removed"]), len(o["changed"])]
                       for c, o in sorted(objs.items())])
        for what in ("added", "removed", "changed"):
            names = [f"{c} {n}" for c, o in sorted(objs.items()) for n in o[what]]
            if names:
                out += [f"{what.capitalize()}: " + ", ".join(_code(n) for n in names), ""]
        cat = s["catalog"]
        if cat is not None:
            line = f"Catalog `public.dot_iu_command_catalog`: {_n(cat['before'])} → {_n(cat['after'])}"
            out += [line + ("." if not (cat["added"] or cat["removed"] or cat["changed"]) else ";"), ""]
            for label, rows in (("new rows", cat["added"]), ("removed rows", cat["removed"])):
                if rows:
                    out += [f"- {label}: " + ", ".join(_code(_catalog_row(r)) for r in rows)]
            for ch in cat["changed"]:
                out += [f"- changed: {_code(_catalog_row(ch['before']))} → {_code(_catalog_row(ch['after']))}"]
            out.append("")
        fns = s["functions"] or []
        if fns:
            out += ["Functions added, replaced or removed (volatility and SECURITY DEFINER as they are after; "
                    "a removed one as it was):", ""]
            out += _table(["function", "change", "volatility", "SECURITY DEFINER", "search_path"],
                          [[_code(f["name"]), f["change"] + (_was(f.get("before")) if f.get("before") else ""),
                            f.get("volatility"), "yes" if f.get("security_definer") else "no",
                            f.get("search_path") or "—"] for f in fns])
        for c in s["config_values_changed"] or []:
            out.append(f"- dot_config {_code(c['key'])}: {c['before']} → {c['after']}")
        if s["config_values_changed"]:
            out.append("")
    return out


def _was(b: dict[str, Any]) -> str:
    return f" (was {b.get('volatility')}, SECURITY DEFINER {'yes' if b.get('security_definer') else 'no'})"


def _catalog_row(r: dict[str, Any]) -> str:
    return (f"{r['command_name']}|{r['category']}|mut={str(r['mutating']).lower()}|"
            f"rev={str(r['reversible']).lower()}|{{{','.join(r.get('target_functions') or [])}}}")


def _not_observed(s: dict[str, Any]) -> str:
    why = "; ".join(s["not_observed"])
    return ("Not observed" + (f": {why}" if why else " (recorded without iucore's run-time observation: an "
                              "offline script, a run by an older iucore, or a run that stopped before it)") + ".")


def _a6(rep: dict[str, Any]) -> list[str]:
    out = ["## A6 — Row counts and schema size: the forbidden-action ledger", ""]
    if rep["kind"] in ("adopt", "stamp"):
        st = (rep.get("adopt") or {}).get("state") if rep["kind"] == "adopt" else None
        if not st:
            return [*out, "Nothing ran; not observed.", ""]
        out += [f"Nothing ran. The state adopted: schema size {_n(st.get('size_bytes'))} bytes ({SIZE_DEFINITION}); "
                f"catalog {_n(st.get('catalog_rows'))} rows.", ""]
        return out + _table(["table", "rows", "count"], [[_code(t), _n(v[0]), v[1]]
                                                       for t, v in sorted((st.get("counts") or {}).items())])
    tot = rep.get("run_totals")
    if tot and len(rep["steps"]) > 1:
        sz = tot["size_bytes"]
        out += [f"**The run**: catalog {_n(tot['catalog_rows']['before'])} → {_n(tot['catalog_rows']['after'])}; "
                f"schema {_n(sz['before'])} → {_n(sz['after'])} bytes (Δ {_delta(sz['delta'])}); tables written: "
                + (", ".join(_code(t) for t in tot["tables_written"]) or "none")
                + f"; not written by any revision: {len(tot['tables_not_written'])}.", ""]
    for s in rep["steps"]:
        out += [f"### {s['revision']} {s['direction']}", ""]
        if not s["observed"] or not s["tables"]:
            out += [_not_observed(s) if not s["observed"] else "No IU Core table before or after.", ""]
            if s["size_bytes"]:
                out += [_size_line(s["size_bytes"]), ""]
            continue
        rows = []
        for t in s["tables"]:
            w = t.get("ins_upd_del")
            rows.append([_code(t["table"]), _n(t["before"]), _n(t["after"]), _delta(t["delta"]),
                         "—" if w is None else "/".join(map(str, w)), t["method"]])
        out += _table(["table", "before", "after", "Δ", "INSERT/UPDATE/DELETE rows", "count"], rows)
        nw = s["not_written"]
        out += [f"**Not written** ({len(nw)} of {len(s['tables'])} tables: there before and after, Δ=0, no row "
                "inserted, updated or deleted in the revision's transaction): "
                + (", ".join(_code(t) for t in nw) if nw else "none"), ""]
        if s["written"]:
            out += ["**Written or created/dropped**: " + ", ".join(_code(t) for t in s["written"]), ""]
        if s["size_bytes"]:
            out += [_size_line(s["size_bytes"]), ""]
    out += [f"Row counts are exact below {_limit()} rows (a bounded count in the revision's transaction) and the "
            "planner's estimate above (column *count*); INSERT/UPDATE/DELETE rows are PostgreSQL's own counters "
            "for the transaction (pg_stat_xact_all_tables), rolled-back subtransactions included.", ""]
    return out


def _limit() -> str:
    return f"{EXACT_COUNT_LIMIT:,}"


def _size_line(sz: dict[str, Any]) -> str:
    return (f"Schema {_n(sz.get('before'))} → {_n(sz.get('after'))} bytes (Δ {_delta(sz.get('delta'))}): "
            f"{SIZE_DEFINITION}.")


def _a7(rep: dict[str, Any]) -> list[str]:
    out = ["## A7 — Backup, self-test, rehearsal", ""]
    b = rep.get("backup")
    if b:
        out.append(f"- **Backup** taken and verified before the run: {_code(b.get('path'))}, {_n(b.get('bytes'))} "
                   f"bytes, sha256 {_code(b.get('sha256'))}, {_n(b.get('toc_entries'))} TOC entries.")
    else:
        out.append("- **Backup**: none taken by this run (`db upgrade --backup-dir DIR` takes and verifies one"
                   "; the preflight's backup check, above, names the one it verified).")
    if rep.get("override"):
        out.append(f"- **Override**: {rep['override']}")
    st = rep.get("selftest") or {}
    if st.get("status") in ("passed", "failed"):
        out.append(f"- **Self-test after the run**: {st['status'].upper()} — {st.get('summary')} (selftest run "
                   f"{_code(st.get('run_id'))} at {_when(st.get('started_at') or '')} by {st.get('actor')})")
        out += [f"  - {r.get('name')}: {r.get('status')}{' — ' + r['reason'] if r.get('reason') else ''}"
                for r in st.get("results") or []]
    else:
        out.append(f"- **Self-test after the run**: {st.get('status')} ({st.get('why')})")
    reh = rep.get("rehearsal")
    if rep["mode"] == "rehearsal":
        if not reh:
            out.append("- **Rehearsal**: rolled back; no proof was recorded.")
        elif "note" in reh:
            out.append(f"- **Rehearsal**: {reh['note']}.")
        else:
            same = reh.get("unchanged")
            out.append(f"- **Rehearsal — nothing persisted: {'PROVEN' if same else 'NOT PROVEN'}**. Catalog "
                       f"fingerprint before {_code(reh.get('fingerprint_before'))}, after the ROLLBACK "
                       f"{_code(reh.get('fingerprint_after'))}; objects, reference rows and the exact row counts of "
                       f"{reh.get('tables_counted')} IU Core tables {_code(reh.get('state_before'))} → "
                       f"{_code(reh.get('state_after'))}"
                       + (f"; tables whose count moved: {', '.join(reh['tables_changed'])}"
                          if reh.get("tables_changed") else "") + ".")
            for d in reh.get("differences") or []:
                out.append(f"  - {d}")
    out.append("")
    return out


def write(path: Path, text: str) -> Path:
    """Write the report to PATH: a fresh file beside it, renamed over it (a symlink at
    that name is replaced, never followed); PATH's directory must exist."""
    import os
    import tempfile

    if path.is_dir():
        raise BadInput(f"--out {path}: is a directory; name the report file (e.g. {path / 'report.md'})")
    parent = path.parent
    if not parent.is_dir():
        raise BadInput(f"--out {path}: directory {parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
