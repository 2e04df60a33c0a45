"""When an unanswered input counts as a hang, and the exception that says so."""

from __future__ import annotations

REPLY_TIMEOUT_S = 10.0
"""A frame or request not answered within this is a hang."""
HANG_TIMEOUT_AFTER_FIRST_S = 2.0
"""Once one hang is found, later ones are called after this (a run stays bounded)."""


class Hang(Exception):
    """The server did not answer in time."""
