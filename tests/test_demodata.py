"""Demo and proof data never land on a database by accident, and come out again by actor.

The test databases are not the embedded server (the harness names them with
--url), exactly like production: so the guard is exercised for real.
"""

from __future__ import annotations

import json

from .conftest import connect, dbname, head, snap


def counts(target) -> dict[str, str]:
    """Every IU Core table's row count, plus the catalog and the configuration rows."""
    catalog = snap(target)
    return {**catalog["count"], **{f"rows {k}": v for k, v in catalog["rows"].items()}}


def test_proof_refuses_a_database_that_is_not_the_embedded_server(new_db, run_cli) -> None:
    target = new_db(head())
    before = counts(target)
    res = run_cli(target, "proof", "operator-runtime")
    assert res.exit_code == 3, res.output
    name = dbname(target)
    assert f"pass --yes-on-this-database {name}" in res.stderr and "nothing was written" in res.stderr
    wrong = run_cli(target, "proof", "operator-runtime", "--yes-on-this-database", "directus")
    assert wrong.exit_code == 3
    assert f"--yes-on-this-database 'directus' does not name the connected database '{name}'" in wrong.stderr
    assert counts(target) == before


def test_demo_refuses_before_writing_anything(empty_db, run_cli) -> None:
    res = run_cli(empty_db, "demo")
    assert res.exit_code == 3, res.output
    assert f"--yes-on-this-database {dbname(empty_db)}" in res.stderr
    with connect(empty_db) as c:  # not even a migration ran
        assert c.execute("SELECT to_regnamespace('iucore')").fetchone() == (None,)
        assert c.execute("SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace").fetchone() == (0,)


def test_proof_data_written_on_purpose_is_removed_by_actor(new_db, run_cli) -> None:
    target = new_db(head())
    name = dbname(target)
    before = counts(target)
    res = run_cli(target, "--json", "proof", "operator-runtime", "--yes-on-this-database", name)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["composed"] is True
    written = counts(target)
    assert written != before
    grew = {t for t in before if written[t] != before[t]}
    assert {"public.information_unit", "public.iu_collection", "public.iu_collection_member",
            "public.event_outbox", "public.dot_iu_command_run", "public.iu_gate_transition"} <= grew

    # without the confirmation the removal is refused too
    assert run_cli(target, "proof", "remove", "--written-by", "runtime_500x_op_proof").exit_code == 3
    dry = run_cli(target, "proof", "remove", "--written-by", "runtime_500x_op_proof", "--dry-run",
                  "--yes-on-this-database", name)
    assert dry.exit_code == 0, dry.output
    assert "DELETE FROM public.dot_iu_command_run WHERE actor = ANY(ARRAY['runtime_500x_op_proof']);" in dry.stdout
    assert "would delete" in dry.stdout
    assert counts(target) == written
    # the seven steps and the composition are the proof's rows; its gate window has its own actor
    done = run_cli(target, "--json", "proof", "remove", "--written-by", "runtime_500x_op_proof",
                   "--written-by", "runtime_500x_op_proof.gate_window", "--yes-on-this-database", name)
    assert done.exit_code == 0, done.output
    out = json.loads(done.stdout)
    assert out["deleted"]["public.information_unit"] == 3 and out["deleted"]["public.iu_collection"] == 1
    assert counts(target) == before


def test_removal_refuses_when_another_actor_depends_on_the_rows(new_db, run_cli) -> None:
    target = new_db(head())
    name = dbname(target)
    assert run_cli(target, "proof", "operator-runtime", "--yes-on-this-database", name).exit_code == 0
    with connect(target) as c:  # someone else's piece joins the proof's collection
        c.execute("""INSERT INTO public.information_unit (canonical_address, unit_kind, title, created_by)
                     VALUES ('other/piece', 'section', 'Theirs', 'someone_else')""")
        c.execute("""INSERT INTO public.iu_collection_member (collection_id, iu_id, piece_order, added_by)
                     SELECT c.collection_id, u.iu_id, 3, 'someone_else'
                       FROM public.iu_collection c, public.information_unit u
                      WHERE c.created_by = 'runtime_500x_op_proof' AND u.created_by = 'someone_else'""")
    before = counts(target)
    res = run_cli(target, "proof", "remove", "--written-by", "runtime_500x_op_proof", "--yes-on-this-database", name)
    assert res.exit_code == 3, res.output
    assert "1 row(s) of other actors in public.iu_collection_member depend on" in res.stderr
    assert counts(target) == before
