"""The dot_iu_* command registry: the single source of truth for governed commands.

Each governed command is one row of `public.dot_iu_command_catalog`, inserted
by the revision named in `revision`; a test checks, at every revision of the
chain, that the catalog equals this registry row for row (seed 004's SSOT
pinning). A command's parameters are its target function's arguments, in
order; `fixed` parameters are set by the command, not by the operator.
"""

from __future__ import annotations

from dataclasses import dataclass, field

COMPOSER = "iu_core.composer_enabled"
STRUCTURE_OPS = "iu_core.structure_ops_enabled"
THREE_AXIS = "iu_core.three_axis_auto_refresh_enabled"
OPERATOR_RUNTIME = "iu_core.operator_runtime_enabled"
AUTO_INSTANTIATE = "iu_core.auto_instantiate_enabled"

PARAM_TYPES = ("text", "uuid", "integer", "boolean", "jsonb", "uuid[]", "text[]")


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    required: bool = True
    default: object = None
    fixed: object = None  # set by the command itself (e.g. the surface of a read command)
    doc: str = ""


@dataclass(frozen=True)
class Command:
    name: str
    category: str  # collection | piece | lifecycle | read | health
    mutating: bool
    reversible: bool
    targets: tuple[str, ...]
    revision: str  # the revision whose SQL inserts the catalog row
    params: tuple[Param, ...] = ()
    # Gates the target function itself checks; apply also requires
    # iu_core.operator_runtime_enabled for every mutating command (seed 000 §4).
    gates: tuple[str, ...] = ()
    mode: str = "apply"  # the run_mode of a successful run: apply | verify
    doc: str = ""
    governed: bool = field(default=True)
    # Gates a parameter value adds (seed 004: live auto-instantiation needs
    # auto_instantiate_enabled as well): ((param, value, gates), …)
    gates_when: tuple[tuple[str, object, tuple[str, ...]], ...] = ()
    # The target function writes its own ledger row (the gate protocol): the
    # catalog's logs_itself from revision least_privilege on.
    logs_itself: bool = False


def _p(name: str, type_: str, **kw: object) -> Param:
    return Param(name, type_, **kw)  # type: ignore[arg-type]


ACTOR = _p("actor", "text", doc="who acts (recorded)")

_READS = {
    "dot_iu_command_registry": ("command_registry", "operator command registry + run aggregates"),
    "dot_iu_command_run_health": ("command_run_health", "operator-runtime run health"),
    "dot_iu_collection_health": ("collection_health", "collection health"),
    "dot_iu_collection_manifest": ("collection_manifest", "collection manifests"),
    "dot_iu_composer_event_backlog": ("composer_event_backlog", "composer event backlog"),
    "dot_iu_route_attempt_summary": ("route_attempt_summary", "route attempt summary"),
    "dot_iu_route_dead_letter_open": ("route_dead_letter_open", "open dead letters"),
}

COMMANDS: tuple[Command, ...] = (
    # ------------------------------------------------------------ revision 280
    Command("dot_iu_healthcheck", "health", False, True, ("fn_iu_healthcheck",), "280",
            mode="verify", doc="counts and gates"),
    Command("dot_iu_create_file_from_pieces", "collection", True, True, ("fn_iu_compose",), "280",
            (_p("collection_key", "text"), _p("collection_kind", "text"), _p("title", "text"),
             _p("piece_ids", "uuid[]"), ACTOR, _p("labels", "text[]", required=False)),
            gates=(COMPOSER,), doc="compose a collection from pieces, in order"),
    Command("dot_iu_add_piece", "collection", True, True, ("fn_iu_collection_add_piece",), "280",
            (_p("collection_id", "uuid"), _p("iu_id", "uuid"), ACTOR,
             _p("position", "integer", required=False), _p("label", "text", required=False)),
            gates=(COMPOSER,), doc="add a piece to a collection (append or at a position)"),
    Command("dot_iu_remove_piece", "collection", True, True, ("fn_iu_collection_remove_piece",), "280",
            (_p("collection_id", "uuid"), _p("iu_id", "uuid"), ACTOR),
            gates=(COMPOSER,), doc="remove a piece from a collection (the piece stays)"),
    Command("dot_iu_reorder_piece", "collection", True, True, ("fn_iu_collection_reorder_piece",), "280",
            (_p("collection_id", "uuid"), _p("iu_id", "uuid"), _p("new_order", "integer"), ACTOR),
            gates=(COMPOSER,), doc="move a piece to a new position"),
    Command("dot_iu_validate_collection", "collection", False, True, ("fn_iu_collection_validate",), "280",
            (_p("collection_id", "uuid"),), mode="verify", doc="validate a collection, fail-closed"),
    Command("dot_iu_checkpoint_collection", "collection", True, True, ("fn_iu_collection_checkpoint",), "280",
            (_p("collection_id", "uuid"), ACTOR),
            gates=(COMPOSER,), doc="render + record + emit collection_rendered"),
    Command("dot_iu_render_collection", "read", False, True, ("fn_iu_collection_render",), "280",
            (_p("collection_id", "uuid"),), mode="verify", doc="render a collection's manifest"),
    Command("dot_iu_retire_piece", "lifecycle", True, False, ("fn_iu_retire",), "280",
            (_p("iu_id", "uuid"), _p("reason", "text"), ACTOR),
            gates=(STRUCTURE_OPS,), doc="retire a piece globally (not reversible)"),
    Command("dot_iu_soft_delete_piece", "lifecycle", True, True, ("fn_iu_piece_soft_delete",), "280",
            (_p("iu_id", "uuid"), _p("reason", "text"), ACTOR),
            gates=(STRUCTURE_OPS,), doc="soft-delete a piece (restorable)"),
    Command("dot_iu_restore_piece", "lifecycle", True, True, ("fn_iu_piece_restore",), "280",
            (_p("iu_id", "uuid"), ACTOR),
            gates=(STRUCTURE_OPS,), doc="restore a soft-deleted piece"),
    Command("dot_iu_clone_piece", "piece", True, True, ("fn_iu_create",), "280",
            (_p("canonical_address", "text"), _p("unit_kind", "text"), _p("title", "text"), ACTOR,
             _p("body", "text", required=False)),
            gates=(COMPOSER,), doc="author a new piece through the fn_iu_create birth gate"),
    Command("dot_iu_workflow_from_steps", "collection", True, True, ("fn_iu_workflow_from_steps",), "280",
            (_p("collection_key", "text"), _p("title", "text"), _p("steps", "jsonb"), ACTOR),
            gates=(COMPOSER,), doc="a workflow collection from a list of steps"),
    Command("dot_iu_refresh_metadata_axes", "piece", True, True, ("fn_iu_refresh_metadata_axes",), "280",
            (_p("iu_id", "uuid"), ACTOR),
            gates=(THREE_AXIS,), doc="recompute a piece's metadata axes"),
    Command("dot_iu_split_piece", "piece", True, False, ("fn_iu_piece_split",), "280",
            (_p("iu_id", "uuid"), _p("parts", "jsonb"), _p("review_decision_id", "uuid"), ACTOR,
             _p("dry_run", "boolean", required=False, default=True)),
            gates=(STRUCTURE_OPS,), doc="split a piece (review decision required)"),
    Command("dot_iu_merge_pieces", "piece", True, False, ("fn_iu_piece_merge",), "280",
            (_p("iu_ids", "uuid[]"), _p("merged_address", "text"), _p("review_decision_id", "uuid"), ACTOR,
             _p("dry_run", "boolean", required=False, default=True)),
            gates=(STRUCTURE_OPS,), doc="merge pieces (review decision required)"),
    Command("dot_iu_route_worker_run", "health", True, True, ("fn_iu_route_worker_run",), "280",
            (_p("route_code", "text"), _p("limit", "integer")),
            doc="run the route worker once (dry-run delivery unless gated live)"),
    *(
        Command(name, "read", False, True, ("fn_iu_observe",), "280",
                (_p("surface", "text", fixed=surface), _p("limit", "integer", required=False, default=100)),
                mode="verify", doc=doc)
        for name, (surface, doc) in _READS.items()
    ),
    # ------------------------------------------------------------ revision 034
    Command("dot_iu_auto_instantiate_from_event", "collection", True, True,
            ("fn_iu_auto_instantiate_from_event",), "034",
            (_p("event_id", "uuid"), _p("event_type", "text"), _p("template_collection_id", "uuid"),
             _p("instance_key_suffix", "text"), _p("emit_mode", "text"), ACTOR, _p("note", "text")),
            gates=(COMPOSER,), gates_when=(("emit_mode", "live", (AUTO_INSTANTIATE,)),),
            doc="instantiate a template collection from an event (dry_run | live)"),
    Command("dot_iu_auto_instantiate_rollback_by_actor", "lifecycle", True, True,
            ("fn_iu_auto_instantiate_rollback_by_actor",), "034",
            (ACTOR, _p("dry_run", "boolean")),
            gates=(COMPOSER,), gates_when=(("dry_run", False, (AUTO_INSTANTIATE,)),),
            doc="roll back every auto-instantiated collection of an actor"),
    # ------------------------------------------------------------ revision gate_protocol
    Command("dot_iu_gate_open", "health", True, True, ("fn_iu_gate_open",), "gate_protocol",
            (_p("gate_key", "text"), _p("approval_id", "uuid"), _p("reason", "text"), ACTOR,
             _p("ttl_seconds", "integer")),
            logs_itself=True, doc="open a governable gate with an approval id and a TTL in (0, 3600] s"),
    Command("dot_iu_gate_close", "health", True, True, ("fn_iu_gate_close",), "gate_protocol",
            (_p("gate_key", "text"), _p("reason", "text"), ACTOR), logs_itself=True, doc="close a gate"),
    Command("dot_iu_gate_watchdog", "health", True, True, ("fn_iu_gate_watchdog",), "gate_protocol",
            (ACTOR,), logs_itself=True, doc="close every governable gate whose open has expired"),
    Command("dot_iu_gate_verify_closed", "read", False, True, ("fn_iu_gate_verify_closed",), "gate_protocol",
            (_p("gate_key", "text", required=False),), mode="verify",
            doc="the 9-gate verify: all_safe, all_governed_closed, never_flip_intact"),
)

BY_NAME = {c.name: c for c in COMMANDS}


def governed() -> list[Command]:
    return [c for c in COMMANDS if c.governed]


def catalog_row(c: Command) -> tuple[str, str, bool, bool, tuple[str, ...]]:
    """The command as a dot_iu_command_catalog row (name, category, mutating, reversible, targets)."""
    return (c.name, c.category, c.mutating, c.reversible, c.targets)
