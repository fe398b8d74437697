"""b2 (example project broken_postcheck)."""

from __future__ import annotations

from iu_core.revision import sql_revision

revision = "b2"
down_revision = "b1"
branch_labels = None
depends_on = None

upgrade, downgrade = sql_revision(revision)
