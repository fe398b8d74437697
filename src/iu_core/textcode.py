"""Text as code: a collection as a manifest file, and back (seed 001 §6, seed 003 §9).

    ---
    collection_key: iu_core.runtime290.file-001
    collection_kind: file
    title: The title
    ---
    0 | intro | iu_core/runtime290/intro | section | Introduction

One line per piece: order | label | canonical_address | unit_kind | title, with
`\\`, `|` and newlines escaped. Export → import → export is byte-identical.
Import validates the whole file (naming the line at fault) and the database
state before it writes, then re-creates missing pieces and the collection
through the governed functions, in one transaction. A collection key becomes a
path under the render root, so a key that could leave it (a '.' or '..'
segment, an empty segment, a leading '/', a backslash, a control character) is
refused on import and on render; the database refuses it too (revision
least_privilege's CHECK).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import BadInput, Refused

if TYPE_CHECKING:
    import psycopg

    from .operator import OperatorRuntime, RunAnswer

UNIT_KINDS = ("design_doc_section", "section", "file", "workflow_step", "piece")
COLLECTION_KINDS = ("file", "workflow", "design_doc")
_ADDRESS = re.compile(r"^[a-z0-9][a-z0-9._/-]*$")
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")


class ManifestError(BadInput):
    """A malformed manifest: the line at fault and why."""


@dataclass
class Piece:
    order: int
    label: str | None
    address: str
    unit_kind: str
    title: str


@dataclass
class Manifest:
    collection_key: str
    collection_kind: str
    title: str
    pieces: list[Piece] = field(default_factory=list)

    def path(self) -> Path:
        """iu-tree/_collections/<kind>/<key>.md, relative; refused for a key that could leave the root."""
        why = unsafe_key(self.collection_key)
        if why:
            raise BadInput(f"collection key {self.collection_key!r} cannot be a file path ({why}); "
                           "nothing was written", collection_key=self.collection_key)
        if self.collection_kind not in COLLECTION_KINDS:
            raise BadInput(f"collection kind {self.collection_kind!r} is not one of {', '.join(COLLECTION_KINDS)}")
        return Path("iu-tree") / "_collections" / self.collection_kind / f"{self.collection_key}.md"

    def text(self) -> str:
        lines = ["---", f"collection_key: {self.collection_key}", f"collection_kind: {self.collection_kind}",
                 f"title: {_esc(self.title)}", "---"]
        for p in self.pieces:
            lines.append(" | ".join([str(p.order), _esc(p.label or ""), p.address, p.unit_kind, _esc(p.title)]))
        return "\n".join(lines) + "\n"


def unsafe_key(key: str) -> str | None:
    """Why a collection key cannot be a relative path inside the render root, or None."""
    if not key:
        return "empty"
    if key.startswith("/"):
        return "absolute"
    if "\\" in key:
        return "a backslash"
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        return "a control character"
    for seg in key.split("/"):
        if seg in ("", ".", ".."):
            return f"a {seg!r} segment" if seg else "an empty segment"
    return None


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace("|", "\\|").replace("\n", "\\n").replace("\r", "\\r")


def _unesc(s: str) -> str:
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            out.append({"n": "\n", "r": "\r"}.get(s[i + 1], s[i + 1]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _split(line: str) -> list[str]:
    """Split on ' | ' that is not escaped."""
    parts, cur, i = [], [], 0
    while i < len(line):
        if line[i] == "\\" and i + 1 < len(line):
            cur.append(line[i : i + 2])
            i += 2
        elif line.startswith(" | ", i):
            parts.append("".join(cur))
            cur = []
            i += 3
        else:
            cur.append(line[i])
            i += 1
    parts.append("".join(cur))
    return parts


def parse(text: str, source: str = "<manifest>") -> Manifest:
    def err(n: int, why: str) -> ManifestError:
        return ManifestError(f"{source}:{n}: {why}", file=source, line=n)

    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    else:
        raise err(len(lines), "the file must end with a newline")
    if not lines or lines[0] != "---":
        raise err(1, "expected '---' (front matter)")
    try:
        end = lines.index("---", 1)
    except ValueError:
        raise err(len(lines), "front matter is not closed with '---'") from None
    head: dict[str, str] = {}
    for n in range(1, end):
        key, sep, value = lines[n].partition(": ")
        if not sep or key not in ("collection_key", "collection_kind", "title"):
            raise err(n + 1, f"expected 'collection_key|collection_kind|title: value', got {lines[n]!r}")
        if key in head:
            raise err(n + 1, f"{key} given twice")
        head[key] = value
    for key in ("collection_key", "collection_kind", "title"):
        if key not in head:
            raise err(end + 1, f"front matter lacks {key}")
    if not _KEY.match(head["collection_key"]) or unsafe_key(head["collection_key"]):
        why = unsafe_key(head["collection_key"]) or "letters, digits and . _ / - only, starting with a letter or digit"
        raise err(2, f"collection_key {head['collection_key']!r} is not a valid key ({why})")
    if head["collection_kind"] not in COLLECTION_KINDS:
        raise err(3, f"collection_kind must be one of {', '.join(COLLECTION_KINDS)}")
    m = Manifest(head["collection_key"], head["collection_kind"], _unesc(head["title"]))
    seen: set[str] = set()
    for n in range(end + 1, len(lines)):
        fields = _split(lines[n])
        if len(fields) != 5:
            raise err(n + 1, f"expected 'order | label | address | unit_kind | title' (5 fields), got {len(fields)}")
        order_s, label, address, kind, title = fields
        if not order_s.isdigit() or int(order_s) != len(m.pieces):
            raise err(n + 1, f"order {order_s!r}: expected {len(m.pieces)} (orders run 0, 1, 2, … without gaps)")
        if not _ADDRESS.match(address):
            raise err(n + 1, f"canonical_address {address!r} is not valid")
        if address in seen:
            raise err(n + 1, f"canonical_address {address} appears twice")
        if kind not in UNIT_KINDS:
            raise err(n + 1, f"unit_kind {kind!r} is not one of {', '.join(UNIT_KINDS)}")
        if not title.strip():
            raise err(n + 1, "empty title")
        seen.add(address)
        m.pieces.append(Piece(int(order_s), _unesc(label) or None, address, kind, _unesc(title)))
    if not m.pieces:
        raise err(len(lines), "a collection needs at least one piece")
    return m


def export(conn: psycopg.Connection[Any], collection_key: str) -> Manifest:
    row = conn.execute(
        "SELECT collection_id, collection_kind, title FROM public.iu_collection WHERE collection_key = %s",
        (collection_key,)).fetchone()
    if row is None:
        raise BadInput(f"no collection {collection_key!r}")
    m = Manifest(collection_key, row[1], row[2])
    for order, label, address, kind, title in conn.execute(
        """SELECT m.piece_order, m.label, u.canonical_address, u.unit_kind, u.title
             FROM public.iu_collection_member m JOIN public.information_unit u USING (iu_id)
            WHERE m.collection_id = %s ORDER BY m.piece_order""", (row[0],)):
        m.pieces.append(Piece(order, label, address, kind, title))
    return m


def import_manifest(conn: psycopg.Connection[Any], m: Manifest, actor: str) -> dict[str, Any]:
    """Re-create the manifest's collection through the governed functions; conflicts change nothing.

    A refusal leaves nothing of the import but its ledger row (see _keep_refusal).
    """
    import psycopg

    from .operator import OperatorRuntime, ensure_answer

    existing = conn.execute("SELECT 1 FROM public.iu_collection WHERE collection_key = %s",
                            (m.collection_key,)).fetchone()
    if existing:
        now = export(conn, m.collection_key)
        if now.text() == m.text():
            return {"status": "in_sync", "collection_key": m.collection_key, "created_pieces": 0}
        raise Refused(f"collection {m.collection_key} exists and differs from the manifest; "
                      "nothing was changed (retire or rename it first)", collection_key=m.collection_key)
    units = {r[0]: r for r in conn.execute(
        "SELECT canonical_address, iu_id::text, unit_kind, title, lifecycle_status FROM public.information_unit"
        " WHERE canonical_address = ANY(%s)", ([p.address for p in m.pieces],))}
    for p in m.pieces:
        u = units.get(p.address)
        if u and (u[2] != p.unit_kind or u[3] != p.title or u[4] != "active"):
            raise Refused(f"piece {p.address} exists as {u[2]} {u[3]!r} ({u[4]}), the manifest says "
                          f"{p.unit_kind} {p.title!r}; nothing was changed", address=p.address)
    rt = OperatorRuntime(conn, actor)
    created = 0
    refused: tuple[str, dict[str, Any], RunAnswer] | None = None
    with conn.transaction():
        ids: list[str] = []
        for p in m.pieces:
            if p.address in units:
                ids.append(units[p.address][1])
                continue
            call: tuple[str, dict[str, Any]] = (
                "dot_iu_clone_piece", {"canonical_address": p.address, "unit_kind": p.unit_kind, "title": p.title})
            ans = rt.apply(*call)
            if ans.status != "applied":
                refused = (*call, ans)
                raise psycopg.Rollback()
            ids.append(ans.answer["iu_id"])
            created += 1
        labels = [p.label or "" for p in m.pieces]
        call = ("dot_iu_create_file_from_pieces", {
            "collection_key": m.collection_key, "collection_kind": m.collection_kind, "title": m.title,
            "piece_ids": ids, "labels": labels})
        ans = rt.apply(*call)
        if ans.status != "applied":
            refused = (*call, ans)
            raise psycopg.Rollback()
    if refused is not None:
        name, params, ans = refused
        _keep_refusal(conn, rt, name, params)
        ensure_answer(ans)
    return {"status": "imported", "collection_key": m.collection_key, "created_pieces": created,
            "pieces": len(m.pieces)}


def _keep_refusal(conn: psycopg.Connection[Any], rt: OperatorRuntime, name: str,
                  params: dict[str, Any]) -> RunAnswer | None:
    """After the import rolled back (its refusal row with it), put the refusal in the ledger.

    The database has no autonomous transaction, so the refused call is made
    again, alone, in its own transaction: the dispatcher undoes a refused call
    itself, so a refusal again changes nothing but its ledger row, which is
    kept; should the call now succeed (its refusal depended on the import's
    own writes), that transaction is rolled back and nothing is kept.
    """
    import psycopg

    kept: RunAnswer | None = None
    with conn.transaction():
        again = rt.apply(name, params)
        if again.status not in ("refused", "failed"):
            raise psycopg.Rollback()
        kept = again
    return kept
