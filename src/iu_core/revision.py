"""The import path every revision file uses: `from iu_core.revision import sql_revision`.

Revision files are applied history (DESIGN §3) and each project has its own, so this path
stays where it was when the framework moved to `iu_core.framework`; the code is
`iu_core.framework.revision`.
"""

from __future__ import annotations

from .framework.revision import SQL_REVISION_MARK, sql_revision

__all__ = ["SQL_REVISION_MARK", "sql_revision"]
