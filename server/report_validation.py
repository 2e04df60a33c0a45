"""The session report's validation rule: a session whose video was never used needs a reason."""

from __future__ import annotations

from enum import StrEnum


class VideoUnusedReason(StrEnum):
    ACCOMMODATION_NEED = "accommodation_need"
    """The student has an accommodation (RQTH) on file that rules out video."""
    OTHER = "other"
    """Any other reason, explained in text."""


class ReportRuleError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def check_validation(
    *,
    video_used: bool,
    reason: VideoUnusedReason | None,
    details: str | None,
    student_has_accommodation: bool,
) -> None:
    """Raise ReportRuleError unless the report may be validated as given.

    If the video was used at all (even if the call then moved elsewhere) no reason is asked: the
    bug-report path covers that case.
    """
    if video_used:
        return
    if reason is None:
        raise ReportRuleError(
            "reason-required",
            "the built-in video was never used in this session: give a reason "
            "(accommodation_need or other)",
        )
    if reason is VideoUnusedReason.ACCOMMODATION_NEED and not student_has_accommodation:
        raise ReportRuleError(
            "no-accommodation-on-file",
            "the student's profile lists no accommodation need: choose 'other' and explain",
        )
    if reason is VideoUnusedReason.OTHER and not (details and details.strip()):
        raise ReportRuleError("details-required", "reason 'other' needs an explanation")
