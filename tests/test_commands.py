"""The verdicts of the library verbs' reports (iu_core.commands and the db reports), without a server.

The CLI renders a report and then calls its `raise_for_outcome()`: which error
(and so which exit code) a report means is decided here, in the library. The
CLI tests drive the same verdicts end to end against a real PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from iu_core.commands.db import RunReport
from iu_core.commands.verbs import GateStatus, LintReport, SelftestReport
from iu_core.domain.runtime import RunAnswer
from iu_core.errors import CheckFailed, ChecksumDrift, IUCoreError, Refused
from iu_core.framework.checksums import FileCheck, VerifyReport
from iu_core.framework.migrate import History, Position
from iu_core.framework.selftest import SelftestResult
from iu_core.release.lint import Finding
from iu_core.release.preflight import Check, PreflightReport
from iu_core.release.ssot import SsotReport


def _exit_code(report: object) -> int:
    try:
        report.raise_for_outcome()  # type: ignore[attr-defined]
    except IUCoreError as exc:
        return exc.exit_code
    return 0


@pytest.mark.parametrize(("statuses", "exit_code"), [
    (["passed", "skipped", "recorded"], 0),
    (["passed", "mismatch"], 4),
    (["mismatch", "refused"], 3),  # a self-test that never got its locks outranks a transcript difference
    (["refused", "failed", "mismatch"], 1),  # one that raised or persisted outranks both
])
def test_a_selftest_report_exits_with_its_worst_result(statuses: list[str], exit_code: int) -> None:
    rep = SelftestReport([SelftestResult(f"t{i}", s, reason=f"why {i}") for i, s in enumerate(statuses)])
    assert _exit_code(rep) == exit_code
    assert rep.to_json() == [r.to_json() for r in rep.results]


def _verify_answer(status: str, all_safe: bool) -> RunAnswer:
    return RunAnswer("dot_iu_gate_verify_closed", "verify", status, [], answer={"all_safe": all_safe})


def test_gate_status_fails_the_check_only_when_the_verify_answered_not_all_safe() -> None:
    assert _exit_code(GateStatus(_verify_answer("verified", True))) == 0
    with pytest.raises(CheckFailed, match="gates not all safe"):
        GateStatus(_verify_answer("verified", False)).raise_for_outcome()
    # a refused verify is a refusal (exit 3), whatever its answer says
    assert _exit_code(GateStatus(_verify_answer("refused", False))) == 3
    assert GateStatus(_verify_answer("verified", True)).to_json()["answer"] == {"all_safe": True}


def test_verify_report_names_changed_files_first_then_the_ssot() -> None:
    changed = FileCheck("034", "migrations/sql/034.sql", recorded="a" * 64, current="b" * 64)
    ssot = SsotReport(applied=["034"], error="catalog unreadable")
    with pytest.raises(ChecksumDrift) as drift:
        VerifyReport(["034"], [changed], ssot).raise_for_outcome()
    assert "034.sql (revision 034) changed since apply" in drift.value.message
    assert "SSOT check could not run: catalog unreadable" in drift.value.message
    ok_file = FileCheck("034", "migrations/sql/034.sql", recorded="a" * 64, current="a" * 64)
    with pytest.raises(CheckFailed, match=r"^SSOT check failed") as only_ssot:
        VerifyReport(["034"], [ok_file], ssot).raise_for_outcome()
    assert not isinstance(only_ssot.value, ChecksumDrift)
    assert _exit_code(VerifyReport(["034"], [ok_file], SsotReport(applied=["034"]))) == 0


def test_a_failing_preflight_gate_is_a_refusal_naming_it() -> None:
    rep = PreflightReport(checks=[Check("server", True, "16.4"), Check("backup", False, "none in /b")])
    with pytest.raises(Refused) as exc:
        rep.raise_for_outcome()
    assert exc.value.message == "preflight failed: backup: none in /b"
    assert exc.value.data["failed"] == ["backup"]
    assert _exit_code(PreflightReport(checks=[Check("server", True, "16.4")])) == 0
    assert _exit_code(PreflightReport()) == 3  # no check ran: nothing was proven


def test_lint_findings_fail_the_check() -> None:
    finding = Finding("hardcode", "migrations/sql/x.sql", 3, "an address")
    assert _exit_code(LintReport([])) == 0
    assert _exit_code(LintReport([finding])) == 4
    assert LintReport([finding]).to_json() == [{"rule": "hardcode", "file": "migrations/sql/x.sql", "line": 3,
                                                "message": "an address"}]


def test_db_current_is_at_head_only_when_its_heads_are_the_scripts_heads() -> None:
    behind = Position(target="db", current=["a1"], head=["a2"], pending=["a2"])
    assert behind.to_json() == {"target": "db", "current": ["a1"], "head": ["a2"], "at_head": False,
                                "pending": ["a2"]}
    assert Position(target="db", current=["a2"], head=["a2"], pending=[]).at_head
    assert not Position(target="db", current=[], head=["a2"], pending=["a1", "a2"]).at_head


def test_db_history_gives_start_times_with_their_utc_offset() -> None:
    started = datetime(2025, 5, 1, 9, 30, 12, 345678, tzinfo=timezone(timedelta(hours=2)))
    hist = History([{"log_id": 7, "revision": "a1", "started_at": started}])
    assert hist.to_json() == [{"log_id": 7, "revision": "a1", "started_at": "2025-05-01T09:30:12.345678+02:00"}]
    assert hist.rows[0]["started_at"] is started  # the text rendering keeps the datetime


def test_db_report_carries_the_recorded_run() -> None:
    rep = RunReport({"run_id": "r-1", "kind": "upgrade"})
    assert rep.run_id == "r-1"
    assert rep.to_json() == {"run_id": "r-1", "kind": "upgrade"}
