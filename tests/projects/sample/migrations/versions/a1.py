"""a1 (example project sample)."""

from __future__ import annotations

from iu_core.revision import sql_revision

revision = "a1"
down_revision = None
branch_labels = None
depends_on = None

upgrade, downgrade = sql_revision(revision)

# What it adds (iu_core.inventory; iu_core.scope watches declared objects).
inventory = {"adds": {"table": ["public.sample_t"]}}
