"""`iucore demo`: the whole story in one command, on the embedded server by default.

Rehearse then apply head, replay the self-tests, compose the runtime/290
collection of seed 001 (three pieces, a collection, a checkpoint), run seed
000's seven-step proof, a worker dry-run, the DOT inventory and the health
views. Idempotent: a second run finds everything in place and proves it again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import RunOptions
from ..domain.demodata import DEMO_ACTORS, guard_writes
from ..domain.proof import DEFAULT_COLLECTION, run_proof
from ..domain.runtime import OperatorRuntime, ensure_answer
from ..errors import CheckFailed, Failed
from ..framework import migrate
from ..framework.transcript import format_table
from ..pg.db import connect
from ..pg.target import Target
from ..release import datascripts
from . import db as db_verbs

if TYPE_CHECKING:
    import psycopg

Say = Callable[[str], None]

# The columns a reader wants, in seed 000 §5's order.
HEALTH_VIEWS = {
    "dot_iu_command_run_health": ["total_runs", "apply_runs", "applied", "refused", "failed",
                                  "distinct_commands", "catalog_size"],
    "dot_iu_command_registry": ["command_name", "runs", "applied", "refused", "failed", "last_status"],
    "dot_iu_route_attempt_summary": ["route_code", "attempt_status", "attempts"],
}


def worker_saw(conn: psycopg.Connection[Any], route: str) -> dict[str, dict[str, int]]:
    """What the route's latest worker run attempted: {stream: {event_type: n}}, in event order.

    One run is one transaction, so its attempts share their attempted_at.
    """
    out: dict[str, dict[str, int]] = {}
    for stream, etype, n in conn.execute(
            """SELECT e.event_stream, e.event_type, count(*)
                 FROM public.iu_route_attempt a JOIN public.event_outbox e USING (event_id)
                WHERE a.route_code = %(r)s
                  AND a.attempted_at = (SELECT max(attempted_at) FROM public.iu_route_attempt
                                         WHERE route_code = %(r)s)
                GROUP BY 1, 2 ORDER BY min(e.created_at), 2""", {"r": route}):
        out.setdefault(stream, {})[etype] = int(n)
    return out


def ledger_by_actor(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """dot_iu_command_run rows per actor, the proof's own first."""
    return {str(a): int(n) for a, n in conn.execute(
        "SELECT actor, count(*) FROM public.dot_iu_command_run GROUP BY 1"
        " ORDER BY actor <> 'runtime_500x_op_proof', 1")}


class Demo:
    def __init__(self, target: Target, project: Path, say: Say, actor: str = "iucore_demo",
                 confirm_database: str | None = None) -> None:
        self.target, self.project, self.say, self.actor = target, project, say, actor
        self.confirm_database = confirm_database  # --yes-on-this-database (iu_core.domain.demodata)
        self.timings: list[tuple[str, float]] = []

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.say(f"\n── {title} " + "─" * max(0, 66 - len(title)))
        t0 = time.perf_counter()
        yield
        ms = (time.perf_counter() - t0) * 1000
        self.timings.append((title, ms))
        self.say(f"   ({ms:.0f} ms)")

    def run(self) -> list[tuple[str, float]]:
        with connect(self.target) as conn:  # before anything is written
            guard_writes(conn, self.target, self.confirm_database, "the demo")
        opts = RunOptions(actor=self.actor)
        with self.step("1. rehearse the upgrade to head (COMMIT → ROLLBACK)"):
            r = migrate.upgrade(self.target, "head", project=self.project, options=opts.with_(rehearse=True))
            if r.nothing_to_do:
                self.say(f"   already at {', '.join(r.to_heads)}: nothing to rehearse")
            else:
                self.say(f"   rehearsed {len(r.revisions)} revision(s); fingerprint unchanged: {r.fingerprint_after}")
        with self.step("2. apply head (preflight → body → post-check, locked, audited)"):
            r = migrate.upgrade(self.target, "head", project=self.project, options=opts)
            done = ", ".join(x["revision"] for x in r.revisions) or "nothing to do"
            self.say(f"   applied: {done}; now at {', '.join(r.to_heads)}")
        with self.step("3. self-tests (BEGIN … ROLLBACK, replayed against recorded transcripts)"):
            results = migrate.selftest(self.target, project=self.project)
            for res in results:
                self.say(f"   {res.name:<14} {res.status}")
            bad = [x for x in results if not x.ok]
            if bad:
                raise CheckFailed("self-tests failed: " + ", ".join(f"{x.name} ({x.status})" for x in bad))
        with connect(self.target) as conn:
            with self.step("4. runtime/290: three pieces, one collection, a checkpoint"):
                self._compose_290()
            with self.step("5. seed 000's seven-step durable operator-runtime proof"):
                before = ledger_by_actor(conn)
                proof = run_proof(conn, actor="runtime_500x_op_proof")
                for line in proof.table():
                    self.say("   " + line)
                if not proof.ok:
                    raise Failed("proof failed: " + "; ".join(proof.problems))
                self.say(f"   order restored: {' '.join(proof.order_after)}; events {proof.events}")
                after = ledger_by_actor(conn)
                grew = {a: after[a] - before.get(a, 0) for a in after if after[a] != before.get(a, 0)}
                self.say(f"   dot_iu_command_run {sum(before.values())} → {sum(after.values())}: "
                         + ", ".join(f"+{n} {a}" for a, n in grew.items()))
            rt = OperatorRuntime(conn, self.actor)
            with self.step("6. route worker dry-run (no external delivery is possible)"):
                a = ensure_answer(rt.apply("dot_iu_route_worker_run", {"route_code": "iu_outbound_default",
                                                                      "limit": 200})).answer
                self.say(f"   fn_iu_route_worker_run('iu_outbound_default', 200) → seen={a['seen']}, "
                         f"attempts_written={a['attempts_written']}, skipped={a['skipped']}, "
                         f"dead_lettered={a['dead_lettered']}")
                if a["attempts_written"]:
                    saw = worker_saw(conn, "iu_outbound_default")
                    self.say("   attempted: " + "; ".join(
                        f"{stream} {sum(types.values())} ({', '.join(f'{t} {n}' for t, n in types.items())})"
                        for stream, types in saw.items()))
            with self.step("7. DOT inventory"):
                rep = db_verbs.inventory(self.target, project=self.project)
                j = rep.to_json()
                self.say(f"   {j['present_total']}/{j['expected_total']} at {rep.revision}: "
                         + " / ".join(f"{c['class']} {c['present']}" for c in rep.classes)
                         + f" — drift {len(rep.drift)}")
                if not rep.ok:
                    raise CheckFailed("inventory drift: " + "; ".join(rep.drift))
            with self.step("8. health views"):
                for name, cols in HEALTH_VIEWS.items():
                    rows = ensure_answer(rt.verify(name, {"limit": 100})).answer["rows"]
                    rows = [r for r in rows if r.get("runs", 1)]  # registry: commands that ran
                    self.say(f"   {name}:")
                    self._table(cols, rows)
                g = ensure_answer(rt.verify("dot_iu_gate_verify_closed", {})).answer
                self.say(f"   gates: all_safe = {str(g['all_safe']).lower()}")
        total = sum(ms for _, ms in self.timings)
        self.say(f"\ndemo complete in {total / 1000:.1f} s")
        if not self.target.embedded:
            self.say("to remove what the demo wrote here: iucore proof remove "
                     + " ".join(f"--written-by {a}" for a in sorted({self.actor, *DEMO_ACTORS}))
                     + f" --yes-on-this-database {self.confirm_database}")
        return self.timings

    def _compose_290(self) -> None:
        """runtime/290 itself (the data script), unless an earlier run applied it."""
        state = next(s for s in datascripts.status(self.target, project=self.project) if s.name == "290")
        if state.applied:
            self.say(f"   {DEFAULT_COLLECTION} exists already (runtime/290 applied by an earlier run)")
            return
        res = datascripts.apply(self.target, "290", approval_id=str(uuid.uuid4()), project=self.project,
                                options=RunOptions(actor=self.actor))
        self.say(f"   runtime/290 applied ({res.statements} statements, audited): {DEFAULT_COLLECTION} — "
                 "3 pieces through the birth gate, 3 memberships, 5 composer events, gates closed again")

    def _table(self, cols: list[str], rows: list[dict[str, Any]]) -> None:
        if not rows:
            self.say("     (no rows)")
            return
        for line in format_table(cols, [[r.get(c) for c in cols] for r in rows]):
            self.say("     " + line)
