"""iucore benchmark suite: one entry point, every number a ratio against a baseline
measured in the same run on the same server.

    python bench/run.py                 # all benchmarks, writes bench/RESULTS.md
    IUCORE_PG_MAJOR=18 python bench/run.py --no-write
    python bench/run.py --only worker,dot --reps 3

It starts its own embedded PostgreSQL (IUCORE_PG_MAJOR, default 16) in a
temporary IUCORE_HOME with the default durability settings (fsync,
synchronous_commit and full_page_writes on), and stops and deletes it at the
end. See bench/README.md for what each benchmark measures and why its baseline
is the right one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import backups
import cases
import harness
import live
import scale
from harness import ROOT, BenchServer, Row, load_average, machine_facts, markdown_table

from iu_core.pg.server import default_major

GROUPS = ("migrations", "startup", "worker", "dot", "inventory", "scale", "backup", "live")
RESULTS = ROOT / "bench" / "RESULTS.md"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions per benchmark [5]")
    ap.add_argument("--stat", choices=("best", "median"), default="best",
                    help="what the table reports of the repetitions [best]; the run log keeps both")
    ap.add_argument("--only", help=f"comma-separated subset of {','.join(GROUPS)}")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where to write the results [bench/RESULTS.md]")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write the results file")
    ap.add_argument("--scenarios", help="live: comma-separated subset of "
                    + ",".join(s.key for s in live.SCENARIOS))
    args = ap.parse_args(argv)
    groups = GROUPS if not args.only else tuple(g.strip() for g in args.only.split(","))
    unknown = set(groups) - set(GROUPS)
    if unknown:
        ap.error(f"unknown group(s) {sorted(unknown)}; choose from {GROUPS}")
    if args.reps < 1:
        ap.error("--reps must be at least 1")
    harness.STATISTIC = args.stat
    if args.scenarios:
        wanted = [k.strip() for k in args.scenarios.split(",")]
        bad = sorted(set(wanted) - {s.key for s in live.SCENARIOS})
        if bad:
            ap.error(f"unknown scenario(s) {bad}")
        live.SCENARIOS = tuple(s for s in live.SCENARIOS if s.key in wanted)

    log: list[str] = []

    def say(line: str) -> None:
        log.append(line)
        print(line, flush=True)

    major = default_major()
    started = time.perf_counter()
    load_before = load_average()
    bs = BenchServer(major)
    say(f"bench: starting an embedded PostgreSQL {major} in {bs.home} (default durability settings)")
    rows: list[Row] = []
    verdicts: list[live.Verdict] = []
    try:
        bs.start()
        durability = {k: bs.setting(k) for k in ("fsync", "synchronous_commit", "full_page_writes")}
        if durability["fsync"] != "on":
            raise SystemExit("bench: fsync is off on the benchmark server; refusing to measure")
        facts = machine_facts(bs.version())
        say(f"bench: {facts['PostgreSQL']}; " + ", ".join(f"{k}={v}" for k, v in durability.items()))
        head_db = bs.create("head")
        if groups != ("migrations",):
            bs.migrate_to_head(head_db)  # a template for the benchmarks that start at head
        runners = {
            "migrations": lambda: cases.migrations(bs, args.reps, say),
            "startup": lambda: cases.startup(bs, args.reps, head_db, say),
            "worker": lambda: cases.route_worker(bs, args.reps, head_db, say),
            "dot": lambda: cases.dot_apply(bs, args.reps, head_db, say),
            "inventory": lambda: cases.inventory(bs, args.reps, head_db, say),
            "scale": lambda: scale.scale(bs, args.reps, head_db, say),
            "backup": lambda: backups.backups(bs, args.reps, head_db, say),
            "live": lambda: verdicts.extend(live.live(bs, args.reps, say)) or [],
        }
        for g in GROUPS:
            if g in groups:
                t0 = time.perf_counter()
                say(f"== {g}")
                rows += runners[g]()
                say(f"   ({time.perf_counter() - t0:.1f} s)")
    finally:
        bs.stop()
    elapsed = time.perf_counter() - started
    load_after = load_average()

    table = markdown_table(rows)
    misses = [r.benchmark for r in rows if not r.passed]
    targets = [r for r in rows if r.kind != "info"]
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# iucore benchmark results",
        "",
        f"Measured {when} by `python bench/run.py` (`nox -s bench`), PostgreSQL {major}; "
        f"whole run {elapsed:.0f} s. Every number is the **{args.stat} of {args.reps}** timed repetitions "
        "after one untimed warm-up (the run log below keeps every sample, the median and the worst); every baseline was measured in the same run, on the same server, "
        "interleaved with the iucore side. The server ran with its default durability settings "
        "(fsync, synchronous_commit and full_page_writes on: nothing turned off for speed). "
        "Rows 1-4 and 9 time real subprocesses (interpreter start-up included); rows 5-8 time "
        "the library in-process (the route worker and the inventory queries inside the "
        "server session, `dot apply` through OperatorRuntime); row 9 takes at most 3 repetitions "
        "(each dumps more than a gigabyte). "
        "What each row measures and why its baseline is the right one: bench/README.md.",
        "",
        table,
        "",
        f"{len(targets) - len(misses)}/{len(targets)} targets met"
        + (f"; missed: {'; '.join(misses)}." if misses else "."),
        "",
        *(["## Live traffic (`--only live`)", "", live.LEGEND, "", live.table(verdicts), ""] if verdicts else []),
        "## Machine",
        "",
        *(f"- {k}: {v}" for k, v in facts.items()),
        f"- load average (1/5/15 min) before: {load_before}; after: {load_after}",
        "",
    ]
    run_log = ["## Run log (every sample, in ms)", "", "```text", *log, "```", ""]
    print("\n" + "\n".join(lines), flush=True)
    if not args.no_write and set(groups) == set(GROUPS):
        args.out.write_text("\n".join(lines + run_log), encoding="utf-8")
        say(f"bench: wrote {os.path.relpath(args.out, Path.cwd())}")
    elif not args.no_write:
        say("bench: a partial run (--only) does not overwrite the results file")
    return 0


if __name__ == "__main__":
    sys.exit(main())
