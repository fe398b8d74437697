"""Seed 000 §3 as a reproducible driver: the seven-step durable operator-runtime proof.

Discovery-driven: the collection is found by its collection_key (composed
first if absent), the reordered piece is the one at the live highest
piece_order; no uuid is baked in. The composer and operator-runtime gates are
opened through the gate protocol for the mutating window only and closed in
`finally`, on failure and on Ctrl-C too.

Two actors, so the ledger reads as seed 000 §5 does: the seven steps are the
proof's own rows ("+7 this proof, all actor runtime_500x_op_proof"); the gate
window around them (two opens, two closes, the end-state check) is recorded
under `<actor>.gate_window`. Seed 000 flipped its gates before the gate
protocol existed, so they left no ledger row; through the protocol (seed 002
A4) every open and close is one, and they stay in the ledger, named as the
window's. When the collection must be composed first, the minting and the
composition are the proof's rows too (seed 000 found runtime/290's collection).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import Failed
from ..framework.transcript import format_table
from .registry import COMPOSER, OPERATOR_RUNTIME
from .runtime import OperatorRuntime, RunAnswer

if TYPE_CHECKING:
    import psycopg

DEFAULT_COLLECTION = "iu_core.runtime290.file-001"
DEFAULT_ACTOR = "runtime_500x_op_proof"
GATE_WINDOW = ".gate_window"  # suffix of the actor the gate window is recorded under
SEED_PIECES = (("intro", "Introduction"), ("body", "Body"), ("tail", "Closing notes"))


@dataclass
class Step:
    n: int
    call: str
    expected: str
    mutating: bool
    answer: RunAnswer | None = None
    ledger_rows: int = 0

    @property
    def status(self) -> str:
        return self.answer.status if self.answer else "not run"

    @property
    def ok(self) -> bool:
        return self.status == self.expected and self.ledger_rows == 1


@dataclass
class ProofResult:
    collection_key: str
    actor: str = DEFAULT_ACTOR
    gate_actor: str = DEFAULT_ACTOR + GATE_WINDOW
    collection_id: str | None = None
    composed: bool = False
    steps: list[Step] = field(default_factory=list)
    order_before: list[str] = field(default_factory=list)
    order_after: list[str] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)
    events_delayed_distinct: bool = False
    closed_gates_step7: list[str] = field(default_factory=list)
    final_gates: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_for_outcome(self) -> None:
        """Failed (exit 1) naming every problem, unless every step matched."""
        if not self.ok:
            raise Failed("operator-runtime proof failed: " + "; ".join(self.problems))

    def table(self) -> list[str]:
        rows = [[s.n, s.call, s.status, "t" if s.mutating else "f", f"{s.ledger_rows} row"]
                for s in self.steps]
        return format_table(["step", "call", "status", "mutating", "ledger"], rows)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "collection_key": self.collection_key, "collection_id": self.collection_id,
            "actor": self.actor, "gate_actor": self.gate_actor,
            "composed": self.composed, "order_before": self.order_before, "order_after": self.order_after,
            "steps": [{"step": s.n, "call": s.call, "status": s.status, "expected": s.expected,
                       "mutating": s.mutating, "ledger_rows": s.ledger_rows} for s in self.steps],
            "events": self.events, "closed_gates_step7": self.closed_gates_step7,
            "final_gates": self.final_gates, "problems": self.problems, "duration_ms": self.duration_ms,
        }


def _order(conn: psycopg.Connection[Any], cid: str) -> list[str]:
    return [f"{r[0]}/{r[1]}" for r in conn.execute(
        """SELECT m.piece_order, coalesce(m.label, left(m.iu_id::text, 8))
             FROM public.iu_collection_member m WHERE m.collection_id = %s ORDER BY m.piece_order""",
        (cid,))]


def gate_actor_of(actor: str) -> str:
    """The actor the proof's gate window is recorded under."""
    return actor + GATE_WINDOW


def _ledger_rows(conn: psycopg.Connection[Any], run_id: str | None) -> int:
    if not run_id:
        return 0
    row = conn.execute("SELECT count(*) FROM public.dot_iu_command_run WHERE run_id = %s", (run_id,)).fetchone()
    return int(row[0]) if row else 0


def run_proof(
    conn: psycopg.Connection[Any],
    *,
    actor: str = DEFAULT_ACTOR,
    collection_key: str = DEFAULT_COLLECTION,
    approval_id: str | None = None,
    ttl_seconds: int = 600,
    after_step: Callable[[Step], None] | None = None,
    say: Callable[[str], None] | None = None,
) -> ProofResult:
    """Run the seven steps; gates are closed in `finally` whatever happens."""
    rt = OperatorRuntime(conn, actor)
    window = OperatorRuntime(conn, gate_actor_of(actor))
    approval = approval_id or str(uuid.uuid4())
    res = ProofResult(collection_key=collection_key, actor=actor, gate_actor=window.actor)
    t0 = time.perf_counter()
    started = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
    opened: list[str] = []

    def gate(action: str, key: str) -> None:
        params: dict[str, Any] = {"gate_key": key, "reason": f"operator-runtime durable proof ({action})"}
        if action == "open":
            params.update(approval_id=approval, ttl_seconds=ttl_seconds)
        ans = window.apply(f"dot_iu_gate_{action}", params)
        if ans.status != "applied":
            raise Failed(f"gate {action} {key} was {ans.status}: {ans.guidance}")
        if say:
            say(f"gate {action}: {key}")

    try:
        for key in (OPERATOR_RUNTIME, COMPOSER):
            gate("open", key)
            opened.append(key)
        cid = _find_or_compose(conn, rt, res)
        res.collection_id = cid
        res.order_before = _order(conn, cid)
        top = conn.execute(
            "SELECT iu_id::text, piece_order FROM public.iu_collection_member WHERE collection_id = %s"
            " ORDER BY piece_order DESC LIMIT 1", (cid,)).fetchone()
        if top is None:
            raise Failed(f"collection {collection_key} has no pieces to reorder")
        piece, back = top[0], int(top[1])
        reorder = {"collection_id": cid, "iu_id": piece}
        plan = [
            (1, "plan(dot_iu_reorder_piece)", "planned", True, lambda: rt.plan("dot_iu_reorder_piece", {**reorder, "new_order": 0})),
            (2, "apply(dot_iu_reorder_piece, new_order=0)", "applied", True, lambda: rt.apply("dot_iu_reorder_piece", {**reorder, "new_order": 0})),
            (3, "verify(dot_iu_validate_collection)", "verified", False, lambda: rt.verify("dot_iu_validate_collection", {"collection_id": cid})),
            (4, "apply(dot_iu_checkpoint_collection)", "applied", True, lambda: rt.apply("dot_iu_checkpoint_collection", {"collection_id": cid})),
            (5, f"apply(dot_iu_reorder_piece, new_order={back})", "applied", True, lambda: rt.apply("dot_iu_reorder_piece", {**reorder, "new_order": back})),
            (6, "verify(dot_iu_validate_collection)", "verified", False, lambda: rt.verify("dot_iu_validate_collection", {"collection_id": cid})),
            (7, "apply(dot_iu_reorder_piece) gate shut", "refused", True, lambda: rt.apply("dot_iu_reorder_piece", {**reorder, "new_order": 0})),
        ]
        for n, call, expected, mutating, fn in plan:
            if n == 7:  # the composer gate shut, the operator-runtime gate still open
                gate("close", COMPOSER)
                opened.remove(COMPOSER)
            step = Step(n, call, expected, mutating)
            step.answer = fn()
            step.ledger_rows = _ledger_rows(conn, step.answer.run_id)
            res.steps.append(step)
            if say:
                say(f"step {n}: {call} → {step.status}")
            if after_step:
                after_step(step)
        res.closed_gates_step7 = res.steps[-1].answer.closed_gates if res.steps[-1].answer else []
    finally:
        # Guaranteed inert end-state: whatever opened is closed, even on Ctrl-C.
        for key in reversed(opened):
            try:
                gate("close", key)
            except Exception as exc:  # keep closing the others; report below
                res.problems.append(f"could not close {key}: {exc}")
    _judge(conn, window, res, started)
    res.duration_ms = round((time.perf_counter() - t0) * 1000, 1)
    return res


def compose_seed_collection(rt: OperatorRuntime, collection_key: str, title: str) -> str:
    """Mint SEED_PIECES through the birth gate and compose them in order; the collection id.

    Needs the operator-runtime and composer gates open.
    """
    ids, labels = [], []
    for label, piece_title in SEED_PIECES:
        address = f"{collection_key.replace('.', '/')}/{label}-{uuid.uuid4().hex[:8]}"
        ans = rt.apply("dot_iu_clone_piece", {"canonical_address": address, "unit_kind": "section",
                                              "title": piece_title})
        if ans.status != "applied":
            raise Failed(f"could not mint a piece for {collection_key}: {ans.answer}")
        ids.append(ans.answer["iu_id"])
        labels.append(label)
    ans = rt.apply("dot_iu_create_file_from_pieces", {
        "collection_key": collection_key, "collection_kind": "file",
        "title": title, "piece_ids": ids, "labels": labels})
    if ans.status != "applied":
        raise Failed(f"could not compose {collection_key}: {ans.answer}")
    return str(ans.answer["collection_id"])


def _find_or_compose(conn: psycopg.Connection[Any], rt: OperatorRuntime, res: ProofResult) -> str:
    row = conn.execute("SELECT collection_id::text FROM public.iu_collection WHERE collection_key = %s",
                       (res.collection_key,)).fetchone()
    if row:
        return str(row[0])
    cid = compose_seed_collection(rt, res.collection_key, f"{res.collection_key} (operator-runtime proof)")
    res.composed = True
    return cid


def _judge(conn: psycopg.Connection[Any], window: OperatorRuntime, res: ProofResult, started: Any) -> None:
    for s in res.steps:
        if not s.ok:
            res.problems.append(f"step {s.n} {s.call}: {s.status} with {s.ledger_rows} ledger row(s), "
                                f"expected {s.expected} with 1")
    if len(res.steps) != 7:
        res.problems.append(f"only {len(res.steps)} of 7 steps ran")
    if res.steps and len(res.steps) == 7 and res.closed_gates_step7 != [COMPOSER]:
        res.problems.append(f"step 7 closed_gates {res.closed_gates_step7}, expected ['{COMPOSER}']")
    if res.collection_id:
        res.order_after = _order(conn, res.collection_id)
        if res.order_after != res.order_before:
            res.problems.append(f"membership order not restored: {res.order_before} → {res.order_after}")
        rows = conn.execute(
            """SELECT event_type, delivery_lane, count(*), count(DISTINCT event_id)
                 FROM public.event_outbox
                WHERE event_subject_ref = %s AND created_at >= %s
                  AND event_type IN ('piece_reordered', 'collection_rendered')
                GROUP BY 1, 2""", (res.collection_id, started)).fetchall()
        res.events = {f"{r[0]}@{r[1]}": int(r[2]) for r in rows}
        res.events_delayed_distinct = all(r[1] == "delayed" and r[2] == r[3] for r in rows)
        if len(res.steps) == 7 and (res.events != {"piece_reordered@delayed": 2, "collection_rendered@delayed": 1}
                                    or not res.events_delayed_distinct):
            res.problems.append(f"composer events {res.events}, expected 2 piece_reordered + 1 "
                                "collection_rendered on the delayed lane, distinct ids")
    # Through the governed entry point too: the operator role reads no gate table itself.
    # The end-state check closes the window, so it is the window's row.
    v = window.verify("dot_iu_gate_verify_closed", {})
    res.final_gates = v.answer if isinstance(v.answer, dict) else {}
    if not res.final_gates.get("all_safe"):
        res.problems.append(f"gates not all safe at the end: {res.final_gates}")
