"""worker_pick: the route worker's pick in its index's order, so a run can stop at its limit.

fn_iu_route_worker_run ordered its pick by (created_at, event_id) over an
index on created_at alone; the incremental sort that put under the LIMIT
reads at least 32 rows, so with fewer than 32 events pending a run read the
whole outbox however small its limit. Replaced in place (CREATE OR REPLACE,
grants and owner kept) with the pick ordered by created_at alone; nothing
else of the function changes. The rollback restores the substrate's
definition from the very file the substrate ran (\\ir), with
least_privilege's search_path pin.

SQL: migrations/sql/worker_pick.sql (+ functions/worker_pick/*.sql),
rollbacks/worker_pick.sql, selftests/worker_pick.sql
"""

from __future__ import annotations

from iu_core.revision import sql_revision

revision = "worker_pick"
down_revision = "least_privilege"
branch_labels = None
depends_on = None

upgrade, downgrade = sql_revision(revision)

# Replaced in place: fn_iu_route_worker_run(text, integer), same name and
# signature, so nothing enters or leaves the inventory.
inventory: dict[str, dict[str, list[str]]] = {"adds": {}, "removes": {}}

# `db adopt worker_pick` runs the post-check above on the hand-migrated
# database: the worker's name and signature are the substrate's, so only its
# body and settings tell whether this revision was applied.
adopt_runs_postcheck = True
