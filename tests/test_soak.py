"""The soak, CI-sized: ``rubrickit score`` against the loopback server with ~20% injected faults, ``kill -9`` in the
middle, ``--resume``, then ``--resume`` once more; nothing lost, nothing duplicated, no verdict flipped.

The harness is ``tests/soak.py`` (the fault table is in its docstring); ``bench/bench_soak.py`` runs the same soak
with 10,000 criterion tasks and reports the numbers. Here: 100 items × 6 criteria = 600 tasks, 32 calls in flight,
a 1 s client time-out, 8 retries; about 15 s on 2 cores.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from soak import FAULT_KINDS, FaultScript, Workload, run_soak, soak_server, verify

CONCURRENCY = 32


@pytest.fixture(scope="module")
def soak_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    workload = Workload(items=100, criteria=6, seed=11, hopeless=2)
    script = FaultScript(workload, fault_rate=0.2, client_timeout=1.0, latency=0.02, stubborn_rate=0.01)
    folder: Path = tmp_path_factory.mktemp("soak")
    with soak_server(script) as server:
        run = run_soak(script, server, folder, concurrency=CONCURRENCY, timeout=1.0, max_retries=8,
                       kill_fraction=0.4, time_limit=75.0)
    report = verify(script, run, concurrency=CONCURRENCY)
    report["_stderr"] = run.resume_stderr[-3000:]
    return report


@pytest.mark.slow
def test_soak_kill_lands_mid_run(soak_report: dict) -> None:
    assert soak_report["killed_mid_run"], "the scoring process finished before the kill; the soak tested nothing"
    assert soak_report["first_rc"] == -signal.SIGKILL
    assert 0 < soak_report["records_at_kill"] < soak_report["items"]
    assert soak_report["in_flight_at_kill"] > 0


@pytest.mark.slow
def test_soak_injects_every_fault_kind(soak_report: dict) -> None:
    assert soak_report["unknown_requests"] == 0
    assert all(soak_report["faults_by_kind"][kind] > 0 for kind in FAULT_KINDS), soak_report["faults_by_kind"]
    assert 0.1 < soak_report["faults_injected"] / soak_report["calls"] < 0.35


@pytest.mark.slow
def test_soak_output_has_exactly_one_record_per_item(soak_report: dict) -> None:
    for stage in (soak_report, soak_report["after_resume"]):
        assert stage["records"] == soak_report["items"], soak_report["_stderr"]
        assert stage["lost_items"] == 0
        assert stage["duplicated_records"] == 0
    assert soak_report["unparseable_lines"] == 0
    assert soak_report["torn_last_line"] == 0
    assert soak_report["unknown_items"] == 0


@pytest.mark.slow
def test_soak_every_verdict_is_right_or_an_explicit_error(soak_report: dict) -> None:
    assert soak_report["flipped"] == 0, soak_report["flips"]
    assert soak_report["after_resume"]["flipped"] == 0
    assert soak_report["missing_verdicts"] == 0
    assert soak_report["right"] + soak_report["error_verdicts"] == soak_report["tasks"]
    assert soak_report["errors_without_reason"] == 0
    assert soak_report["wrong_rewards"] == 0
    # Errors only where the server made them unavoidable: hopeless tasks (garbage forever, so they must be
    # errors: anything else counts as flipped) and stubborn ones (garbage on the first three attempts).
    assert soak_report["error_verdicts"] >= soak_report["hopeless_tasks"]
    assert soak_report["errors_unexplained"] == 0


@pytest.mark.slow
def test_soak_exit_status_reports_error_verdicts(soak_report: dict) -> None:
    # --max-error-rate defaults to 0 and the hopeless tasks always end as errors: exit status 3, both resumes.
    assert soak_report["resume_rc"] == 3, soak_report["_stderr"]
    assert soak_report["rejudge_rc"] == 3


@pytest.mark.slow
def test_soak_resume_repeats_only_calls_in_flight_at_the_kill(soak_report: dict) -> None:
    # Asked again after the resume: only tasks without a record and without a verdict sent well before the kill.
    assert soak_report["unexpected_repeats"] == 0
    assert soak_report["repeated_tasks"] > 0


@pytest.mark.slow
def test_soak_second_resume_rejudges_only_error_verdicts_and_recovers_them(soak_report: dict) -> None:
    assert soak_report["rejudged_without_error"] == 0
    # Unreadable replies are not kept in the cache, so the re-judge asks again: the stubborn tasks (garbage on the
    # first three attempts only) get their verdicts; only the hopeless tasks stay errors.
    assert soak_report["rejudge_calls"] >= 3 * soak_report["hopeless_tasks"]
    assert soak_report["error_verdicts"] == soak_report["hopeless_tasks"]
    assert soak_report["errors_recovered_by_rejudge"] == (soak_report["errors_before_rejudge"]
                                                          - soak_report["hopeless_tasks"])
