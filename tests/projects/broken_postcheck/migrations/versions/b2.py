"""b2 (example project broken_postcheck)."""

from __future__ import annotations

from iu_core.revision import sql_revision

revision = "b2"
down_revision = "b1"
branch_labels = None
depends_on = None

upgrade, downgrade = sql_revision(revision)

# What it adds (iu_core.inventory; iu_core.scope watches declared objects).
inventory = {"adds": {"table": ["public.b2_table"]}}
