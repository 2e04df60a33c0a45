"""Derivations from telemetry and the report validation rule, on hand-built timelines."""

from __future__ import annotations

import pytest

from server.report_validation import ReportRuleError, VideoUnusedReason, check_validation
from server.session_metrics import TelemetryEvent, fallback_evidence, session_metrics

M, S = "mentor", "student"


def joined(who: str, at: float, pid: str | None = None) -> TelemetryEvent:
    return TelemetryEvent("call_joined", at, who, pid or f"{who}-1")


def left(
    who: str, at: float, reason: str = "clientDisconnected", pid: str | None = None
) -> TelemetryEvent:
    return TelemetryEvent("call_left", at, who, pid or f"{who}-1", {"reason": reason})


def media(who: str, start: float, stop: float | None, track: str = "cam") -> list[TelemetryEvent]:
    events = [TelemetryEvent("media_started", start, who, f"{who}-1", {"track": f"{who}:{track}"})]
    if stop is not None:
        events.append(
            TelemetryEvent("media_stopped", stop, who, f"{who}-1", {"track": f"{who}:{track}"})
        )
    return events


def test_effective_duration_is_the_overlap_of_both_present_with_media() -> None:
    events = [
        joined(M, 0),
        joined(S, 100),
        *media(M, 10, 900),
        *media(S, 120, 700),
        left(S, 800),
        left(M, 1000),
    ]
    metrics = session_metrics(events, M, S, now=2000)
    # Both present 100..800; media from someone 10..900: overlap 100..800.
    assert metrics.effective_duration_s == 700
    assert metrics.video_used
    assert metrics.time_in_call_s == {M: 1000, S: 700}
    assert (metrics.first_join, metrics.last_leave) == (0, 1000)
    assert metrics.suggested_status == "completed"


def test_reconnect_gap_is_not_counted() -> None:
    events = [
        joined(M, 0),
        joined(S, 0, "s-1"),
        *media(M, 0, 600),
        left(S, 200, "networkDisconnected", "s-1"),
        joined(S, 230, "s-2"),
        left(S, 600, pid="s-2"),
        left(M, 600),
    ]
    metrics = session_metrics(events, M, S, now=1000)
    assert metrics.effective_duration_s == 570
    assert metrics.drops == 1
    assert metrics.time_in_call_s[S] == 570


def test_media_for_three_seconds_then_fallback_counts_as_used() -> None:
    events = [
        joined(M, 0),
        joined(S, 5),
        *media(S, 6, 9),
        left(S, 60, "networkDisconnected"),
        left(M, 61, "networkDisconnected"),
    ]
    metrics = session_metrics(events, M, S, now=100)
    assert metrics.video_used and metrics.effective_duration_s == 3


def test_student_never_came_suggests_student_absent_and_video_unused() -> None:
    metrics = session_metrics([joined(M, 0), *media(M, 1, 50), left(M, 60)], M, S, now=100)
    assert not metrics.video_used
    assert metrics.suggested_status == "student_absent"
    assert session_metrics([], M, S, now=10).suggested_status is None


def test_open_intervals_count_until_now() -> None:
    metrics = session_metrics([joined(M, 0), joined(S, 0), *media(M, 0, None)], M, S, now=42)
    assert metrics.effective_duration_s == 42


def test_fallback_suspected_when_media_stopped_early_and_nobody_hung_up() -> None:
    events = [
        joined(M, 0),
        joined(S, 0),
        *media(M, 0, 300),
        *media(S, 0, 290),
        left(S, 400, "networkDisconnected"),
        left(M, 410, "networkDisconnected"),
    ]
    evidence = fallback_evidence(events, M, S, scheduled_end=3600, now=4000)
    assert any("never resumed" in e for e in evidence)


def test_no_fallback_when_the_call_ended_normally() -> None:
    events = [joined(M, 0), joined(S, 0), *media(M, 0, 1800), left(S, 1800), left(M, 1801)]
    assert fallback_evidence(events, M, S, scheduled_end=3600, now=4000) == []


def test_failures_and_repeated_drops_are_evidence() -> None:
    events = [TelemetryEvent("ice_failed", 5, S, "s-1", {"state": "failed"})]
    events += [left(S, 10 * n, "networkDisconnected", f"s-{n}") for n in range(3)]
    evidence = fallback_evidence(events, M, S, scheduled_end=3600, now=100)
    assert "1 media connection failure(s)" in evidence
    assert "3 dropped connections" in evidence


def test_report_rule_asks_no_reason_when_video_was_used() -> None:
    check_validation(video_used=True, reason=None, details=None, student_has_accommodation=False)


@pytest.mark.parametrize(
    ("reason", "details", "accommodation", "code"),
    [
        (None, None, True, "reason-required"),
        (VideoUnusedReason.ACCOMMODATION_NEED, None, False, "no-accommodation-on-file"),
        (VideoUnusedReason.OTHER, "  ", False, "details-required"),
    ],
)
def test_report_rule_refusals(reason, details, accommodation, code) -> None:
    with pytest.raises(ReportRuleError) as refused:
        check_validation(
            video_used=False,
            reason=reason,
            details=details,
            student_has_accommodation=accommodation,
        )
    assert refused.value.code == code


def test_report_rule_accepts_a_valid_reason() -> None:
    check_validation(
        video_used=False,
        reason=VideoUnusedReason.ACCOMMODATION_NEED,
        details=None,
        student_has_accommodation=True,
    )
    check_validation(
        video_used=False,
        reason=VideoUnusedReason.OTHER,
        details="the student called from a train",
        student_has_accommodation=False,
    )
