"""Connections to the target database, with errors a DBA can act on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import Target, redact_url
from .errors import ConnectionFailed

if TYPE_CHECKING:
    import psycopg


def connect(target: Target, *, autocommit: bool = True, app: str = "iucore") -> psycopg.Connection[Any]:
    import psycopg

    try:
        return psycopg.connect(
            target.libpq, autocommit=autocommit, application_name=app, connect_timeout=10
        )
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConnectionFailed(
            f"cannot connect to {target.display}: {redact_url(reason)}", url=target.display
        ) from None
