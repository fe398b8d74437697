"""iucore: guarded, audited, rehearsable PostgreSQL migrations for IU Core."""

from __future__ import annotations

__version__ = "0.1.0"
