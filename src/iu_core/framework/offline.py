"""The offline script for change review: `iucore db upgrade A:B --sql`, `alembic upgrade A:B --sql`.

One psql script that `psql -X -v ON_ERROR_STOP=1 -f script.sql` runs to the
same end state as the online run: the bootstrap of schema iucore, the
advisory lock and the timeouts, then per revision one transaction with a
position guard, the revision's SQL file verbatim (preflight, body,
post-check), the alembic_version update and an audit row carrying the same
sha256 checksums an online apply records, so `iucore db verify` passes
afterwards. The files are written as they are, never through Alembic's
op.execute, which doubles every `%` in offline mode.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..config import RunOptions
from ..errors import BadInput, InvalidTarget, UnknownRevision
from ..pg.db import CLIENT_ENCODING, PINNED
from . import audit
from .layout import RevisionFiles, applied_chain, below, script_directory, valid_targets
from .revision import SQL_REVISION_MARK
from .session import LOCK_KEY
from .sqlfiles import MIGRATION_SECTIONS, ROLLBACK_SECTIONS, expand, parse_script

_TAG = "$iucore$"


@dataclass
class OfflineScript:
    direction: str
    start: list[str]
    end: list[str]
    revisions: list[str] = field(default_factory=list)
    text: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"direction": self.direction, "from": self.start, "to": self.end,
                "revisions": self.revisions, "sql": self.text}


def lit(value: str) -> str:
    """A SQL string literal that means the same under any standard_conforming_strings."""
    from psycopg import sql

    return sql.Literal(value).as_string(None)


def _jsonb(value: Any) -> str:
    return lit(json.dumps(value, sort_keys=True)) + "::jsonb"


def _text_array(values: list[str]) -> str:
    return "ARRAY[" + ", ".join(lit(v) for v in sorted(values)) + "]::text[]"


def build(project: Path, direction: str, destination: str, start: str | None = None, *,
          options: RunOptions | None = None) -> OfflineScript:
    """The psql script that takes a database at START (default base) to DESTINATION.

    Raises UnknownRevision / InvalidTarget (exit 2) when the range does not
    resolve, BadInput when a revision is not plain SQL files or the range
    crosses a merge or branch point (the script keeps one linear position).
    """
    from alembic.util import CommandError

    options = options or RunOptions()
    script = script_directory(project)
    start_heads: tuple[str, ...] = ()
    if start not in (None, "", "base"):
        try:
            found = script.get_revisions(start)
        except CommandError:
            found = ()
        if not found:
            raise UnknownRevision(f"unknown start revision {start!r}", revision=start)
        start_heads = tuple(sorted(r.revision for r in found if r))
    try:
        if direction == "upgrade" and below(project, destination, list(start_heads)):
            raise CommandError(f"{destination} is below {start} (that is a downgrade)")
        # Alembic's own step resolution, given the heads as run_migrations gives them
        heads_arg: Any = start_heads
        if direction == "upgrade":
            steps = script._upgrade_revs(destination, heads_arg)
        else:
            steps = script._downgrade_revs(destination, heads_arg)
    except CommandError as exc:
        ups, downs = valid_targets(project, list(start_heads))
        raise InvalidTarget(
            f"{direction} {start or 'base'}:{destination}: {exc}. From {', '.join(start_heads) or 'base'} the "
            f"valid upgrade targets are {', '.join(ups) or 'none'}; downgrade targets {', '.join(downs) or 'none'}",
            revision=destination,
        ) from None

    run_id = str(uuid.uuid4())
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    heads = list(start_heads)
    out = OfflineScript(direction=direction, start=list(start_heads), end=[])
    parts = [_preamble(project, out, destination, generated, options, run_id)]
    if direction == "upgrade" and start_heads:
        parts.append(_checksum_gate(project, list(start_heads)))
    for step in steps:
        sc = step.revision
        rev = sc.revision
        fn = getattr(sc.module, "upgrade" if step.is_upgrade else "downgrade", None)
        if getattr(fn, SQL_REVISION_MARK, None) != rev:
            raise BadInput(f"revision {rev} is not plain SQL files (its module does not call "
                           "iu_core.framework.revision.sql_revision): iucore cannot script it offline")
        downs = list(sc._all_down_revisions)
        if len(downs) > 1 or sc.is_branch_point:
            raise BadInput(f"revision {rev} is a merge or branch point: offline scripts follow a linear chain")
        before = sorted(heads)
        if step.is_upgrade:
            heads = sorted((set(heads) - set(downs)) | {rev})
        else:
            heads = sorted((set(heads) - {rev}) | set(downs))
        parts.append(_revision_block(project, rev, "upgrade" if step.is_upgrade else "downgrade",
                                     before, heads, run_id, options, generated))
        out.revisions.append(rev)
    out.end = heads
    parts.append(f"SELECT pg_advisory_unlock({LOCK_KEY});\n"
                 f"-- iucore: done; the database is at {', '.join(heads) or 'base'}\n")
    out.text = "\n".join(parts)
    return out


def _preamble(project: Path, out: OfflineScript, destination: str, generated: str,
              options: RunOptions, run_id: str) -> str:
    wait_s = options.lock_wait_ms / 1000
    return f"""-- iucore offline script: {out.direction} {', '.join(out.start) or 'base'} -> {destination}
-- generated {generated} by {_comment(options.actor)} from project {_comment(project.name)}
-- run_id {run_id}
--
-- Run it as it is, without -1 (every revision is its own transaction):
--   psql -X -v ON_ERROR_STOP=1 -f THIS_FILE
-- It stops at the first error; the revisions before it stay committed and
-- `iucore db current` / `iucore db history` say where the database is.
\\set ON_ERROR_STOP on
SET application_name = {lit("iucore-offline:" + run_id[:8])};

-- the session settings iucore pins on every connection (docs/security.md)
SET client_encoding = {lit(CLIENT_ENCODING)};
{_pins()}

-- the iucore migration lock: two runs never interleave (held to the end of this session)
SET lock_timeout = {int(options.lock_wait_ms)};
DO {_TAG} BEGIN
  PERFORM pg_advisory_lock({LOCK_KEY});
EXCEPTION WHEN lock_not_available THEN
  RAISE EXCEPTION 'iucore: another migration run holds the iucore lock (waited {wait_s:g}s); nothing was changed';
END {_TAG};
SET lock_timeout = {int(options.lock_timeout_ms)};
SET statement_timeout = {int(options.statement_timeout_ms)};

-- schema iucore and its tables (idempotent)
{audit.BOOTSTRAP};
"""


def _pins() -> str:
    # Unquoted on purpose: a quoted '…' search_path would be ONE schema named
    # "pg_catalog,pg_temp". The values are iucore's own constants, never input.
    assert all(re.fullmatch(r"[A-Za-z_,]+", p.value) for p in PINNED)
    return "\n".join(f"SET {p.name} TO {p.value};" for p in PINNED)


def _comment(text: str) -> str:
    return re.sub(r"[\r\n]+", " ", text)


def _checksum_gate(project: Path, start: list[str]) -> str:
    """Online upgrades refuse when an applied revision's files changed since apply: so does the script."""
    rows = ",\n      ".join(
        f"({lit(rev)}, {_jsonb(RevisionFiles(project, rev).checksums())})" for rev in applied_chain(project, start)
    )
    block = f"""-- checksum gate: the applied revisions' files are the ones recorded at their apply
DO {_TAG}
DECLARE bad text;
BEGIN
  SELECT string_agg(v.revision || CASE WHEN l.checksums IS NULL THEN ' (no checksum recorded at apply)'
                                       ELSE ' (files changed since apply)' END, '; ')
    INTO bad
    FROM (VALUES
      {rows}
    ) AS v(revision, now_sums)
    LEFT JOIN LATERAL (
      SELECT m.checksums FROM iucore.migration_log m
       WHERE m.revision = v.revision AND m.direction = 'upgrade' AND m.mode = 'real' AND m.outcome = 'applied'
       ORDER BY m.log_id DESC LIMIT 1) l ON true
   WHERE l.checksums IS NULL OR NOT (l.checksums <@ v.now_sums);
  IF bad IS NOT NULL THEN
    RAISE EXCEPTION 'iucore checksum gate: the applied revisions'' files do not verify against their apply: %. Nothing was changed', bad;
  END IF;
END {_TAG};
"""
    _check_quoting(block, "checksum gate")
    return block


def _check_quoting(do_block: str, what: str) -> None:
    """Values inside a DO block must not close its dollar quoting."""
    if do_block.count(_TAG) != 2:
        raise BadInput(f"{what}: a value would close the script's {_TAG} quoting")


def _revision_block(project: Path, rev: str, direction: str, before: list[str], after: list[str],
                    run_id: str, options: RunOptions, generated: str) -> str:
    files = RevisionFiles(project, rev)
    path = files.forward if direction == "upgrade" else files.rollback
    parse_script(path, MIGRATION_SECTIONS if direction == "upgrade" else ROLLBACK_SECTIONS, project)  # the conventions hold
    body = expand(path, project).text  # `\ir` includes inlined: the script stands alone
    if not body.endswith("\n"):
        body += "\n"
    if not _ends_with_semicolon(body):
        body += ";\n"
    at_before = ", ".join(before) or "base"
    guard = f"""DO {_TAG} BEGIN
  IF ARRAY(SELECT version_num::text FROM iucore.alembic_version ORDER BY 1) IS DISTINCT FROM {_text_array(before)} THEN
    RAISE EXCEPTION 'iucore: {_sq(rev)} {direction} expects the database at {_sq(at_before)}, but it is at %; nothing of {_sq(rev)} was applied',
      coalesce(nullif(array_to_string(ARRAY(SELECT version_num::text FROM iucore.alembic_version ORDER BY 1), ', '), ''), 'base');
  END IF;
END {_TAG};"""
    version = "DELETE FROM iucore.alembic_version;\n" + "".join(
        f"INSERT INTO iucore.alembic_version (version_num) VALUES ({lit(h)});\n" for h in after
    )
    evidence = {"offline_script": {"run_id": run_id, "generated_at": generated, "generated_by": options.actor,
                                   "from": before, "to": after}}
    row = audit.insert_sql(
        run_id=run_id, revision=rev, direction=direction, mode="real", outcome="applied",
        checksums=files.checksums(), actor=options.actor, message=f"{rev} {direction} applied (offline script)",
        evidence=evidence,
    )
    rel = path.relative_to(project)
    _check_quoting(guard, rev)
    return f"""-- ==== {_comment(rev)} {direction}: {_comment(str(rel))} (sha256 {files.checksums()[str(rel)]}) ====
BEGIN;
{guard}
{body}{version}{row};
COMMIT;
"""


def _sq(text: str) -> str:
    """Text inside a single-quoted RAISE format string: quotes doubled, % escaped."""
    return text.replace("'", "''").replace("%", "%%")


def _ends_with_semicolon(sql: str) -> bool:
    """Whether the last statement is terminated (else the next line would join it)."""
    lines = sql.rstrip().splitlines()
    while lines and (not lines[-1].strip() or lines[-1].lstrip().startswith("--")):
        lines.pop()
    return bool(lines) and lines[-1].rstrip().endswith(";")

