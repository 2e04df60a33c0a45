"""The body of a platform `POST /api/sessions`, as tests schedule their sessions."""

from __future__ import annotations

import time
from typing import Any

MENTOR = {"identity": "mentor-7", "name": "Ada Mentor"}
STUDENT = {"identity": "student-9", "name": "Sam Student"}


def schedule(
    start_offset_s: float = -60,
    length_s: float = 3600,
    type_: str = "mentoring",
    *,
    mentor: dict[str, str] = MENTOR,
    student: dict[str, str] = STUDENT,
) -> dict[str, Any]:
    now = time.time()
    return {
        "type": type_,
        "scheduled_start": now + start_offset_s,
        "scheduled_end": now + start_offset_s + length_s,
        "mentor": dict(mentor),
        "student": dict(student),
    }
