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
through the governed functions, in one transaction.

Files. A collection key becomes a path (`<kind>/<key>.md`), so a key is a
relative path of plain segments: no `..` or `.` or empty segment, no leading
`/`, no backslash, no control character. `read_manifest` reads only a regular
file of at most MAX_MANIFEST_BYTES of UTF-8 text (a FIFO, a device or a
directory is refused before it is read, so nothing hangs). `write_manifest`
never writes outside the directory it is given: see its docstring.
The database refuses such keys too (revision least_privilege's CHECK).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BadInput, Refused
from .runtime import OperatorRuntime, ensure_answer

if TYPE_CHECKING:
    import psycopg

    from .runtime import OperatorRuntime, RunAnswer

UNIT_KINDS = ("design_doc_section", "section", "file", "workflow_step", "piece")
COLLECTION_KINDS = ("file", "workflow", "design_doc")
_ADDRESS = re.compile(r"^[a-z0-9][a-z0-9._/-]*$")
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
# A manifest is a few lines per piece; anything near this size is not one.
MAX_MANIFEST_BYTES = 8 * 1024 * 1024
# NAME_MAX (255 bytes) less the ".md" suffix the last segment gets on disk.
_SEGMENT_MAX_BYTES = 252


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
        check_key(self.collection_key)
        if self.collection_kind not in COLLECTION_KINDS:
            raise BadInput(f"collection kind {self.collection_kind!r} is not one of {', '.join(COLLECTION_KINDS)}")
        return Path("iu-tree") / "_collections" / self.collection_kind / f"{self.collection_key}.md"

    def text(self) -> str:
        lines = ["---", f"collection_key: {self.collection_key}", f"collection_kind: {self.collection_kind}",
                 f"title: {_esc(self.title)}", "---"]
        for p in self.pieces:
            lines.append(" | ".join([str(p.order), _esc(p.label or ""), p.address, p.unit_kind, _esc(p.title)]))
        return "\n".join(lines) + "\n"


def path_problem(value: str) -> str | None:
    """Why VALUE cannot be a relative path of plain segments (None when it can).

    Collection keys become file paths under `dot render --out`, and canonical
    addresses look like paths to every tool downstream: both are checked here.
    """
    if not value:
        return "is empty"
    for i, c in enumerate(value):
        if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0:
            return f"contains the control character U+{ord(c):04X} at position {i + 1}"
        if 0xD800 <= ord(c) < 0xE000:
            return f"contains a lone surrogate U+{ord(c):04X} at position {i + 1} (not UTF-8 text)"
    if "\\" in value:
        return "contains a backslash"
    if value.startswith("/"):
        return "is an absolute path"
    segments = value.split("/")
    for seg in segments:
        if seg == "":
            return "has an empty path segment (// or a / at either end)"
        if seg in (".", ".."):
            return f"has a {seg!r} path segment"
        if len(seg.encode()) > _SEGMENT_MAX_BYTES:
            return f"has a path segment longer than {_SEGMENT_MAX_BYTES} bytes"
    return None


def check_key(key: str) -> None:
    """Refuse (BadInput) a collection key that cannot be a path under the render directory."""
    why = path_problem(key)
    if why is None and not _KEY.match(key):
        why = "may hold only ASCII letters, digits and . _ / - and must start with a letter or digit"
    if why is not None:
        raise BadInput(f"collection key {key!r} {why}; nothing was written", collection_key=key)


def _encodable(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
    for n, line in enumerate(lines, 1):
        if "\x00" in line:
            raise err(n, "a NUL byte: this is a binary file, not a manifest")
        if "\r" in line:
            raise err(n, "a carriage return (CRLF line endings?): a manifest's lines end with LF only")
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
    at: dict[str, int] = {}
    for n in range(1, end):
        key, sep, value = lines[n].partition(": ")
        if not sep or key not in ("collection_key", "collection_kind", "title"):
            raise err(n + 1, f"expected 'collection_key|collection_kind|title: value', got {lines[n]!r}")
        if key in head:
            raise err(n + 1, f"{key} given twice")
        head[key], at[key] = value, n + 1
    for key in ("collection_key", "collection_kind", "title"):
        if key not in head:
            raise err(end + 1, f"front matter lacks {key}")
    why = path_problem(head["collection_key"])
    if why is None and not _KEY.match(head["collection_key"]):
        why = "is not a valid key (ASCII letters, digits and . _ / -, starting with a letter or digit)"
    if why is not None:
        raise err(at["collection_key"], f"collection_key {head['collection_key']!r} {why}")
    if head["collection_kind"] not in COLLECTION_KINDS:
        raise err(at["collection_kind"], f"collection_kind must be one of {', '.join(COLLECTION_KINDS)}")
    m = Manifest(head["collection_key"], head["collection_kind"], _unesc(head["title"]))
    seen: set[str] = set()
    for n in range(end + 1, len(lines)):
        fields = _split(lines[n])
        if len(fields) != 5:
            raise err(n + 1, f"expected 'order | label | address | unit_kind | title' (5 fields), got {len(fields)}")
        order_s, label, address, kind, title = fields
        if not order_s.isdigit() or int(order_s) != len(m.pieces):
            raise err(n + 1, f"order {order_s!r}: expected {len(m.pieces)} (orders run 0, 1, 2, … without gaps)")
        if not _ADDRESS.match(address) or path_problem(address) is not None:
            raise err(n + 1, f"canonical_address {address!r} is not valid: "
                      f"{path_problem(address) or 'use a-z 0-9 . _ / - and start with a-z or 0-9'}")
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


_FILE_TYPES = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket",
               stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFLNK: "a symlink"}


def _kind_of(mode: int) -> str:
    return _FILE_TYPES.get(stat.S_IFMT(mode), "not a regular file")


def read_manifest(path: Path) -> Manifest:
    """Read and parse the manifest at PATH, refusing anything but a regular UTF-8 text file.

    The file type is checked before the file is opened (a FIFO would block
    the open, a device could stream forever) and again on the open
    descriptor; it is opened non-blocking, and read up to MAX_MANIFEST_BYTES.
    """
    source = str(path)

    def refuse(why: str, line: int | None = None) -> ManifestError:
        where = f"{source}:{line}" if line is not None else source
        return ManifestError(f"{where}: {why}; nothing was changed", file=source, line=line)

    try:
        before = os.stat(path)
    except OSError as exc:
        raise refuse(exc.strerror or type(exc).__name__) from None
    if not stat.S_ISREG(before.st_mode):
        raise refuse(f"is {_kind_of(before.st_mode)}, not a manifest file")
    if before.st_size > MAX_MANIFEST_BYTES:
        raise refuse(f"is {before.st_size:,} bytes; a manifest is at most {MAX_MANIFEST_BYTES:,}")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise refuse(exc.strerror or type(exc).__name__) from None
    with os.fdopen(fd, "rb") as fh:
        now = os.fstat(fh.fileno())
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino):
            raise refuse("was replaced while being opened")
        data = fh.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise refuse(f"grew past {MAX_MANIFEST_BYTES:,} bytes while being read")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise refuse(f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})", line) from None
    return parse(text, source)


def write_manifest(m: Manifest, out_dir: Path) -> Path:
    """Write M as OUT_DIR/iu-tree/_collections/<kind>/<key>.md; never outside OUT_DIR.

    - The key must be a relative path of plain segments (`check_key`) and the
      kind one of COLLECTION_KINDS, else BadInput and nothing is written.
    - OUT_DIR is created when missing; it must be a directory.
    - Every directory below OUT_DIR is opened relative to its parent's
      descriptor and its real location checked on that descriptor: a symlink
      that stays inside OUT_DIR is followed, one that leads outside is refused
      (where the real location cannot be read, every symlink is refused).
    - The text goes to a fresh temporary file (O_CREAT|O_EXCL|O_NOFOLLOW) in
      the target directory, fsynced, then renamed over `<key>.md`: an
      existing manifest is replaced atomically, a symlink at that name is
      replaced and never followed, a directory there is refused.
    - On a refusal the directories this call created are removed again.
    """
    check_key(m.collection_key)
    if m.collection_kind not in COLLECTION_KINDS:
        raise BadInput(f"collection kind {m.collection_kind!r} is not one of {', '.join(COLLECTION_KINDS)}; "
                       "nothing was written", collection_kind=m.collection_kind)
    rel = m.path()
    display = out_dir / rel

    def refuse(why: str) -> BadInput:
        return BadInput(f"cannot write {display}: {why}; nothing was written", path=str(display))

    try:
        if not out_dir.exists():
            out_dir.mkdir(parents=True)
        root = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except NotADirectoryError:
        raise refuse(f"{out_dir} is not a directory") from None
    except OSError as exc:
        raise refuse(f"{out_dir}: {exc.strerror or type(exc).__name__}") from None
    root_real = _real_path(root)
    fds = [root]
    created: list[tuple[int, str]] = []
    try:
        for name in rel.parts[:-1]:
            fds.append(_enter(fds[-1], name, root_real, created, refuse))
        _replace_file(fds[-1], rel.parts[-1], m.text().encode("utf-8"), refuse)
    except BaseException:
        for parent, name in reversed(created):
            try:
                os.rmdir(name, dir_fd=parent)
            except OSError:
                break
        raise
    finally:
        for fd in reversed(fds):
            os.close(fd)
    return display


def _real_path(fd: int) -> str | None:
    """Where an open directory really is (Linux /proc), or None where that cannot be read."""
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None
    return real if real.startswith("/") else None


def _enter(parent: int, name: str, root_real: str | None, created: list[tuple[int, str]],
           refuse: Any) -> int:
    """Open (creating if missing) directory NAME under PARENT, refusing to leave the root."""
    try:
        os.mkdir(name, dir_fd=parent)
        created.append((parent, name))
    except FileExistsError:
        pass
    except OSError as exc:
        raise refuse(f"cannot create directory {name!r}: {exc.strerror or type(exc).__name__}") from None
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    if root_real is None:
        flags |= os.O_NOFOLLOW  # containment cannot be checked: follow no symlink at all
    try:
        fd = os.open(name, flags, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise refuse(f"{name!r} below the output directory is a symlink or not a directory") from None
        raise refuse(f"cannot open directory {name!r}: {exc.strerror or type(exc).__name__}") from None
    if root_real is not None:
        real = _real_path(fd)
        if real is None or os.path.commonpath([real, root_real]) != root_real:
            os.close(fd)
            raise refuse(f"{name!r} is a symlink to {real}, outside the output directory {root_real}")
    return fd


def _replace_file(dir_fd: int, name: str, data: bytes, refuse: Any) -> None:
    tmp = f".iucore-render-{secrets.token_hex(8)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666,
                     dir_fd=dir_fd)
    except OSError as exc:
        raise refuse(exc.strerror or type(exc).__name__) from None
    try:
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except IsADirectoryError:
            raise refuse(f"{name!r} exists and is a directory") from None
        except OSError as exc:
            raise refuse(exc.strerror or type(exc).__name__) from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


def export(conn: psycopg.Connection[Any], collection_key: str) -> Manifest:
    """The collection COLLECTION_KEY as a manifest (BadInput when there is none)."""
    if "\x00" in collection_key or not _encodable(collection_key):
        raise BadInput(f"no collection {collection_key!r}: a key holds no NUL byte or lone surrogate",
                       collection_key=collection_key)
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

    rt = OperatorRuntime(conn, actor)
    existing = conn.execute("SELECT collection_id::text FROM public.iu_collection WHERE collection_key = %s",
                            (m.collection_key,)).fetchone()
    if existing:
        now = export(conn, m.collection_key)
        if now.text() == m.text():
            return {"status": "in_sync", "collection_key": m.collection_key, "created_pieces": 0}
        # The refusal is the governed function's own (fn_iu_compose answers
        # 'duplicate' for a key that exists, before it looks at the pieces), so
        # it is in the ledger like any other.
        members = [r[0] for r in conn.execute(
            "SELECT iu_id::text FROM public.iu_collection_member WHERE collection_id = %s ORDER BY piece_order",
            (existing[0],))]
        kept = _keep_refusal(conn, rt, "dot_iu_create_file_from_pieces", {
            "collection_key": m.collection_key, "collection_kind": m.collection_kind, "title": m.title,
            "piece_ids": members or [existing[0]]})
        raise Refused(f"collection {m.collection_key} exists and differs from the manifest; "
                      "nothing was changed (retire or rename it first)", collection_key=m.collection_key,
                      run_id=kept.run_id if kept else None)
    units = {r[0]: r for r in conn.execute(
        "SELECT canonical_address, iu_id::text, unit_kind, title, lifecycle_status FROM public.information_unit"
        " WHERE canonical_address = ANY(%s)", ([p.address for p in m.pieces],))}
    for p in m.pieces:
        u = units.get(p.address)
        if u and (u[2] != p.unit_kind or u[3] != p.title or u[4] != "active"):
            # fn_iu_create refuses an address that exists: its refusal row is the audit.
            kept = _keep_refusal(conn, rt, "dot_iu_clone_piece", {
                "canonical_address": p.address, "unit_kind": p.unit_kind, "title": p.title})
            raise Refused(f"piece {p.address} exists as {u[2]} {u[3]!r} ({u[4]}), the manifest says "
                          f"{p.unit_kind} {p.title!r}; nothing was changed", address=p.address,
                          run_id=kept.run_id if kept else None)
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
