"""`iucore db backup` on a database of more than 1 GB (row 9), against what a DBA runs by hand.

The database is the head template grown to production's shape: IU Core's
event_outbox (1,000,000 events, inserted honouring the registry) and
iu_route_attempt (one attempt per event), beside Directus-like
directus_activity and directus_revisions tables holding wide JSON — four
big tables, so a parallel dump has something to share out — then VACUUM
(ANALYZE). It is built once, measured, and dropped; every dump is deleted as
soon as it has been checked.

- 9a. `iucore --url URL db backup --out DIR` (a process): pg_dump -Fc from a
  snapshot iucore exported, fsync, sha256, `pg_restore -l` by the server's
  pg_restore, a full read of every data block, the sidecar.
  Baseline: the same checks run by hand on a plain dump: `pg_dump -Fc -f FILE`
  (which fsyncs its file), `sha256sum FILE`, `pg_restore -l FILE`,
  `pg_restore -f /dev/null FILE` — the same pg_dump and pg_restore binaries.
- 9b. `iucore db backup --jobs N` (directory format) against
  `pg_dump -Fd -j N -f DIR`, `sha256sum` of its files, `pg_restore -l DIR`,
  `pg_restore -f /dev/null DIR`; N = the machine's cores.

Both sides are checked to hold the same archive: the same number of TOC
entries, every table's data entry present. Target: ratio ≤ 1.1x.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from harness import ATTEMPT_PER_EVENT, BenchServer, Row, Samples, child_env, executable, run_process

from iu_core.framework.backup import choose, restorer

Say = Callable[[str], None]

EVENTS = 1_000_000
DIRECTUS_ROWS = 700_000
MIN_BYTES = 1 << 30
TARGET = 1.1
MAX_REPS = 3  # each sample dumps more than a gigabyte

# Wide text that compresses about as well as real JSON does (hex digests: ~2:1).
_EVENTS = """
INSERT INTO public.event_outbox
    (event_domain, event_type, event_stream, delivery_lane, event_subject_ref, payload, severity, actor, created_at)
SELECT r.event_domain, r.event_type, r.event_stream, r.delivery_lane, 'bench:' || g,
       jsonb_build_object('collection_id', gen_random_uuid(), 'n', g,
                          'note', md5(g::text) || md5((g * 7)::text) || md5((g * 13)::text)),
       r.default_severity, 'bench', now() - interval '30 days' + g * interval '1 millisecond'
  FROM public.event_type_registry r, generate_series(%(lo)s::integer, %(hi)s::integer) AS g
 WHERE r.event_domain = 'iu' AND r.event_type = 'piece_reordered' AND r.delivery_lane = 'delayed'
"""
_DIRECTUS = [
    """CREATE TABLE public.directus_activity (
        id serial PRIMARY KEY, action varchar(45) NOT NULL, "user" uuid,
        "timestamp" timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP, ip varchar(50), user_agent text,
        collection varchar(64) NOT NULL, item varchar(255) NOT NULL, comment text)""",
    """CREATE TABLE public.directus_revisions (
        id serial PRIMARY KEY, activity integer NOT NULL REFERENCES public.directus_activity (id) ON DELETE CASCADE,
        collection varchar(64) NOT NULL, item varchar(255) NOT NULL, data json, delta json, parent integer)""",
    """INSERT INTO public.directus_activity (action, "user", ip, user_agent, collection, item, comment)
       SELECT 'update', gen_random_uuid(), '10.0.' || (g % 250) || '.' || (g % 200),
              'Mozilla/5.0 (X11; Linux x86_64) directus/10.' || (g % 13), 'articles', g::text,
              md5(g::text) || md5((g + 1)::text)
         FROM generate_series(1, {n}) g""",
    """INSERT INTO public.directus_revisions (activity, collection, item, data, delta)
       SELECT g, 'articles', g::text,
              json_build_object('id', g, 'title', 'Article ' || g, 'body', repeat(md5(g::text), 8),
                                'status', 'published'),
              json_build_object('body', repeat(md5((g * 3)::text), 4))
         FROM generate_series(1, {n}) g""",
]


def build_big(bs: BenchServer, head_db: str, say: Say) -> str:
    db = bs.create("big", head_db)
    with bs.connect(db) as conn:
        step = 250_000
        for lo in range(1, EVENTS + 1, step):
            conn.execute(_EVENTS, {"lo": lo, "hi": min(lo + step - 1, EVENTS)})
        conn.execute(ATTEMPT_PER_EVENT)
        for stmt in _DIRECTUS:
            conn.execute(stmt.format(n=DIRECTUS_ROWS).encode())
        conn.execute("VACUUM (ANALYZE)")
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    assert size is not None
    if size[0] < MIN_BYTES:
        raise RuntimeError(f"bench: the big database is {size[0]:,} bytes, less than 1 GiB")
    say(f"  big database: {size[0] / (1 << 30):.2f} GiB ({EVENTS:,} events and attempts, "
        f"{DIRECTUS_ROWS:,} Directus activity and revision rows)")
    return db


def _toc_entries(pg_restore: str, path: Path) -> list[str]:
    _, proc = run_process([pg_restore, "-l", str(path)])
    return [ln for ln in proc.stdout.decode().splitlines() if ln and not ln.startswith(";")]


def backups(bs: BenchServer, reps: int, head_db: str, say: Say) -> list[Row]:
    df = shutil.disk_usage(tempfile.gettempdir())
    if df.free < 8 * MIN_BYTES:
        raise RuntimeError(f"bench: only {df.free / (1 << 30):.1f} GiB free in {tempfile.gettempdir()}; "
                           "the backup benchmark needs 8 GiB")
    db = build_big(bs, head_db, say)
    out = Path(tempfile.mkdtemp(prefix="iucore-bench-dumps-"))
    jobs = max(2, os.cpu_count() or 2)
    iucore = executable("iucore")
    pg_dump, pg_restore = choose("pg_dump", bs.major), restorer(bs.major)
    url, env = bs.url(db), child_env()
    say(f"  pg_dump {pg_dump}; pg_restore {pg_restore}; dumps in {out}; --jobs {jobs}")

    def clean() -> None:
        for p in out.iterdir():
            shutil.rmtree(p) if p.is_dir() else p.unlink()

    def iucore_backup(j: int | None) -> tuple[float, Path]:
        argv = [iucore, "--json", "--url", url, "db", "backup", "--out", str(out)] + (["--jobs", str(j)] if j else [])
        t, proc = run_process(argv, env)
        made = json.loads(proc.stdout)
        return t, Path(made["path"])

    def by_hand(j: int | None) -> tuple[float, Path]:
        path = out / ("plain.dir" if j else "plain.dump")
        fmt = ["-Fd", "-j", str(j)] if j else ["-Fc"]
        steps = [[pg_dump, "--no-password", *fmt, "-f", str(path), "-d", url]]
        if j:  # sha256sum of every file of the directory, as `cd DIR && sha256sum *`
            steps.append(["sh", "-c", 'cd "$1" && LC_ALL=C sha256sum * >/dev/null', "sh", str(path)])
        else:
            steps.append(["sha256sum", str(path)])
        steps += [[pg_restore, "-l", str(path)], [pg_restore, "-f", os.devnull, str(path)]]
        return sum(run_process(s, env)[0] for s in steps), path

    reps = min(reps, MAX_REPS)
    rows: list[Row] = []
    try:
        for label, j in (("custom", None), ("directory", jobs)):
            samples = {"iucore": Samples(f"iucore db backup ({label})"), "plain": Samples(f"by hand ({label})")}
            for rnd in range(reps + 1):
                for k in (["iucore", "plain"] if rnd % 2 == 0 else ["plain", "iucore"]):
                    t, path = (iucore_backup if k == "iucore" else by_hand)(j)
                    if rnd == 0 and k == "iucore":
                        mine = _toc_entries(pg_restore, path)
                    elif rnd == 0:
                        theirs = _toc_entries(pg_restore, path)
                    if rnd:
                        samples[k].add(t)
                    clean()
                if rnd == 0:
                    # The same archive: the same TOC entries (ids and dump ids aside), every table's data there.
                    strip = [sorted(e.split(" ", 1)[1] for e in x) for x in (mine, theirs)]
                    if strip[0] != strip[1]:
                        raise RuntimeError(f"bench: the {label} dumps differ: {len(mine)} vs {len(theirs)} TOC entries")
                    data = sum(" TABLE DATA " in e for e in mine)
                    say(f"  {label}: both archives list the same {len(mine)} TOC entries ({data} of table data)")
            for s in samples.values():
                say("  " + s.summary(scale=1.0, unit="s"))
            if label == "custom":
                rows.append(Row("9a. `iucore db backup` (-Fc, verified), database of > 1 GiB, whole process",
                                samples["iucore"].value, samples["plain"].value,
                                "`pg_dump -Fc` + `sha256sum` + `pg_restore -l` + `pg_restore -f /dev/null`",
                                TARGET, "ratio"))
            else:
                rows.append(Row(f"9b. `iucore db backup --jobs {jobs}` (-Fd, verified), same database",
                                samples["iucore"].value, samples["plain"].value,
                                f"`pg_dump -Fd -j {jobs}` + `sha256sum *` + `pg_restore -l` + "
                                "`pg_restore -f /dev/null`", TARGET, "ratio"))
    finally:
        shutil.rmtree(out, ignore_errors=True)
        bs.drop(db)
    return rows
