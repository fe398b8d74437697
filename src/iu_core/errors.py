"""One exception hierarchy; each error carries its data; the CLI maps the base
class to the exit codes of DESIGN.md §7."""

from __future__ import annotations

from typing import Any


class IUCoreError(Exception):
    """Base of every error iucore raises on purpose."""

    exit_code = 1
    outcome = "failed"

    def __init__(self, message: str, **data: Any) -> None:
        super().__init__(message)
        self.message = message
        self.data = data

    def __str__(self) -> str:
        return self.message

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": type(self).__name__, "message": self.message}
        out.update({k: v for k, v in self.data.items() if _jsonable(v)})
        return out


def _jsonable(v: Any) -> bool:
    return isinstance(v, str | int | float | bool | list | dict | type(None))


# exit 2: usage or bad input -------------------------------------------------
class BadInput(IUCoreError):
    """The caller asked for something malformed or unknown. Nothing ran."""

    exit_code = 2


class ConfigError(BadInput):
    """Bad URL, project not found, bad timeout value…"""


class ConnectionFailed(BadInput):
    """The server could not be reached."""


class UnknownRevision(BadInput):
    """A revision id that is not in the script directory."""


# exit 3: refused -- a guard or gate said no; nothing changed -----------------
class Refused(IUCoreError):
    exit_code = 3
    outcome = "refused"


class LockBusy(Refused):
    """Another run holds the migration advisory lock past the wait bound."""


class ChecksumGate(Refused):
    """Upgrade refused: applied revisions' files cannot be verified against their apply."""


class RevisionRefused(Refused):
    """A revision's preflight (upgrade) or guard (downgrade) refused."""


class AdoptRefused(Refused):
    """`db adopt`: the database is not exactly the chain at the revision (or is managed already)."""


class NotEmbedded(Refused):
    """Demo or proof data would land on a database that is not the embedded server."""


# exit 1: failed ---------------------------------------------------------------
class Failed(IUCoreError):
    exit_code = 1


class RevisionFailed(Failed):
    """A statement of a revision's body or post-check failed; it was rolled back."""


class RehearsalLeak(Failed):
    """A rehearsal changed the database (it must not)."""


class ServerError(Failed):
    """The embedded PostgreSQL could not be started or stopped."""


# exit 4: a check found a difference ------------------------------------------
class CheckFailed(IUCoreError):
    exit_code = 4
    outcome = "drift"


class InventoryDrift(CheckFailed):
    """Live objects differ from what the applied revisions declare."""


class ChecksumDrift(CheckFailed):
    """An applied revision's SQL file differs from what was recorded at apply."""


class SqlFileError(BadInput):
    """A SQL file breaks the conventions (docs/sql-conventions.md)."""


class UnpinnedSession(Refused):
    """A connection came up without the session settings iucore pins at startup."""
