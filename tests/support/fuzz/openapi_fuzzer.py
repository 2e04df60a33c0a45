"""schemathesis over the server's own /openapi.json: every operation, positive and negative data."""

from __future__ import annotations

import time
from typing import Any

from hypothesis import strategies as st

from tests.support.fuzz.hang import REPLY_TIMEOUT_S
from tests.support.fuzz.http_calls import RESPONSE_TIME_BOUND_S, path_parameters
from tests.support.fuzz.platform_world import PlatformWorld, security_schemes
from tests.support.fuzz.report import FuzzReport
from tests.support.fuzz.server_log import LogWatch
from tests.support.fuzz.values import weighted


class OpenApiFuzzer:
    """schemathesis over the server's own /openapi.json, every operation, positive and negative
    data, with the right credential for its auth kind (and, sometimes, a wrong one)."""

    def __init__(self, world: PlatformWorld, log: LogWatch, report: FuzzReport) -> None:
        import requests
        import schemathesis
        from schemathesis.core.result import Err

        self.world = world
        self.log = log
        self.report = report
        self.schema = schemathesis.openapi.from_url(f"{world.url}/openapi.json")
        self.operations = []
        for result in self.schema.get_all_operations():
            if isinstance(result, Err):
                raise result.err()  # the server's own document does not parse
            self.operations.append(result.ok())
        self.session = requests.Session()

    def strategy(self) -> st.SearchStrategy[tuple[Any, str, dict[str, str]]]:
        from schemathesis import GenerationMode

        pins = self.world.pins()
        choices = []
        for operation in self.operations:
            names = path_parameters(operation.path)
            pinned = {n: pins[n] for n in names if n in pins}
            schemes = security_schemes(operation.definition.raw)
            right = [(f"with {s}", self.world.credentials(s)) for s in schemes] or [
                ("no credential", {})
            ]
            auth = weighted(
                (3, st.sampled_from(right)),
                (1, st.sampled_from(self.world.wrong_credentials())),
            )
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                strategies = [operation.as_strategy(generation_mode=mode)]
                if pinned:
                    strategies.append(
                        operation.as_strategy(generation_mode=mode, path_parameters=pinned)
                    )
                for cases in strategies:
                    choices.append(st.tuples(cases, auth))
        return st.one_of(*choices).map(lambda pair: (pair[0], pair[1][0], pair[1][1]))

    def run(self, drawn: tuple[Any, str, dict[str, str]]) -> None:
        from schemathesis.checks import not_a_server_error

        case, auth_name, headers = drawn
        self.report.examples += 1
        label = f"{case.method.upper()} {case.path}"
        reproducer = f"{auth_name}: " + case.as_curl_command(
            headers=headers, base_url=self.world.url
        )
        self.report.inputs += 1
        started = time.monotonic()
        try:
            response = case.call(
                base_url=self.world.url,
                session=self.session,
                headers=headers,
                timeout=REPLY_TIMEOUT_S,
            )
        except Exception as exc:
            self.report.fail(f"no answer [{label}]", repr(exc)[:300], reproducer)
            return
        elapsed = time.monotonic() - started
        try:
            case.validate_response(response, checks=[not_a_server_error], headers=headers)
        except Exception as exc:
            first = str(exc).strip().splitlines()
            self.report.fail(
                f"{response.status_code} server error [{label}]",
                " ".join(first[:3])[:300],
                reproducer,
            )
        if elapsed > RESPONSE_TIME_BOUND_S:
            self.report.fail(f"slow answer [{label}]", f"{elapsed:.1f} s", reproducer)
        if 400 <= response.status_code < 500 and case.path.startswith("/api/"):
            try:
                body = response.json()
            except ValueError:
                body = None
            if not (isinstance(body, dict) and "error" in body and "message" in body):
                self.report.fail(
                    f"{response.status_code} error not JSON {{error, message}} [{label}]",
                    response.text[:200],
                    reproducer,
                )
        # A recording a generated request started is stopped at once (two cores).
        if self.world.stop_started_recording(
            case.method, case.path, response.status_code, response.json
        ):
            self.report.notes["recording started (then stopped)"] += 1
        self.report.fail_server_log(self.log.new_problems(), reproducer)
