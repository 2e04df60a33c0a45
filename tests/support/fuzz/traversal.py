"""Path traversal: segments that try to climb out, on every route that maps a path segment to a
file or a row, and the judge of what came back."""

from __future__ import annotations

import hashlib
import hmac
import time
import urllib.parse
from collections.abc import Sequence

from hypothesis import strategies as st

from tests.support.fuzz.http_calls import HttpReply, http_request
from tests.support.fuzz.report import FuzzReport
from tests.support.fuzz.server_log import LogWatch
from tests.support.server_process import ServerProcess

LEAK_MARKERS = (b"root:x:0:0", b"SQLite format 3", b"from __future__", b"BEGIN PRIVATE KEY")


def traversal_ids() -> st.SearchStrategy[str]:
    """Path segments that try to climb out: raw, percent-encoded, double-encoded, overlong."""
    ups = st.sampled_from(
        [
            "..",
            "%2e%2e",
            "%2E%2E",
            ".%2e",
            "%252e%252e",
            "%c0%ae%c0%ae",
            "....",
            "..\\",
            "%2e%2e%5c",
        ]
    )
    seps = st.sampled_from(["/", "%2f", "%2F", "%252f", "\\", "%5c", "/./", "//"])
    targets = st.sampled_from(
        [
            "etc/passwd",
            "etc%2fpasswd",
            "server/settings.py",
            "data/parloir.sqlite3",
            "parloir.sqlite3",
            "secret.key",
            "pyproject.toml",
        ]
    )
    return st.builds(
        lambda n, up, sep, target, nul: (up + sep) * n + target + nul,
        st.integers(1, 8),
        ups,
        seps,
        targets,
        st.sampled_from(["", "%00", "%00.mp4", "?x=1"]),
    )


def signed_file_query(secret: str, recording_id: str) -> str:
    """A valid signature for any id: the id must still be a recording, signature or not."""
    expires = int(time.time()) + 600
    signature = hmac.new(
        secret.encode(), f"{recording_id}:{expires}".encode(), hashlib.sha256
    ).hexdigest()
    return f"expires={expires}&sig={signature}"


def traversal_targets(segment: str, secret: str) -> list[tuple[str, str]]:
    """(route, request target) for one climbing segment, on every route that maps a path
    segment to something on disk or in the database."""
    unquoted = urllib.parse.unquote(segment)
    return [
        ("/static/{path}", f"/static/{segment}"),
        ("/static/js/{path}", f"/static/js/{segment}"),
        ("/api/recordings/{id}/download", f"/api/recordings/{segment}/download"),
        (
            "/recordings/{id}/file",
            f"/recordings/{segment}/file?{signed_file_query(secret, unquoted)}",
        ),
        ("/recordings/{id}", f"/recordings/{segment}"),
        ("/room/{room}", f"/room/{segment}"),
    ]


def judge_traversal(reply: HttpReply, secrets_: list[str]) -> list[tuple[str, str]]:
    problems = []
    if reply.status >= 500:
        problems.append((f"{reply.status} server error", reply.body[:200].decode(errors="replace")))
    elif 200 <= reply.status < 300:
        problems.append(
            (
                f"{reply.status}: a climbing path was served",
                reply.body[:120].decode(errors="replace"),
            )
        )
    for marker in (*LEAK_MARKERS, *(s.encode() for s in secrets_)):
        if marker in reply.body:
            problems.append(("file or secret leaked", marker.decode(errors="replace")[:40]))
    return problems


class TraversalFuzzer:
    """Sends each climbing segment to every file route with every credential the server knows,
    and judges each answer: refused, and nothing leaked."""

    def __init__(
        self,
        server: ServerProcess,
        log: LogWatch,
        report: FuzzReport,
        *,
        other_secrets: Sequence[str] = (),
    ) -> None:
        self.server = server
        self.log = log
        self.report = report
        self.secrets = [server.secret, server.api_key, server.staff_token, *other_secrets]
        """Must never appear in an answer (with the markers of leaked files)."""
        self.headers = {
            "Authorization": f"Bearer {server.api_key}",
            "Cookie": f"parloir_staff={server.staff_token}",
        }

    def run(self, segment: str) -> None:
        self.report.examples += 1
        for route, target in traversal_targets(segment, self.server.secret):
            self.report.inputs += 1
            reply = http_request(self.server.url, "GET", target, headers=self.headers)
            for kind, detail in judge_traversal(reply, self.secrets):
                self.report.fail(f"{kind} [{route}]", detail, f"GET {target}")
        self.report.fail_server_log(self.log.new_problems(), segment)
