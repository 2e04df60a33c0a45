"""The server's log file, read for new tracebacks and ERROR lines since the last look."""

from __future__ import annotations

import re
from pathlib import Path


class LogWatch:
    """New tracebacks and ERROR lines in the server's log since the last look."""

    PATTERN = re.compile(r"Traceback|\bERROR\b|\bCRITICAL\b")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def new_problems(self) -> list[tuple[str, str]]:
        """(what failed, the log line and its exception) for each new ERROR or traceback."""
        with open(self.path, "rb") as log:
            log.seek(self.offset)
            chunk = log.read()
        # Only whole lines; a line still being written is read next time.
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        lines = chunk[:end].decode(errors="replace").splitlines()
        problems: list[tuple[str, str]] = []
        for index, line in enumerate(lines):
            if not self.PATTERN.search(line) or line.startswith("Traceback"):
                continue
            # The exception its traceback ends with names the failure.
            last = next(
                (
                    later
                    for later in lines[index + 1 :]
                    if later and not later.startswith((" ", "Traceback"))
                ),
                "",
            )
            message = re.sub(r"^\S+ \S+ (ERROR|CRITICAL) ", "", line.strip())[:160]
            logger = message.split(":")[0]
            what = re.sub(r"\d+", "N", (last or message)[:80])
            problems.append((f"{what} (logged by {logger})", f"{message} | {last.strip()[:200]}"))
        return problems
