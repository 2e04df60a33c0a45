"""The full-count fuzz run: `python -m bench.fuzz --inputs 10000`.

Generated hostile input against real `parloir serve` processes, the same generators and judges
as tests/test_fuzz_signaling.py and tests/test_fuzz_api.py (tests/support/fuzz/), at a count
`make test` cannot afford. Prints inputs tried, failures (each kind once, with the smallest
input that showed it) and the duration; `--json` keeps every reproducer whole.

The signaling and chat areas run in a child process while this one runs the REST areas, each
against its own server: two cores, two fuzzers. Needs a checkout with the test extra installed
(hypothesis, schemathesis). Exit status 1 when anything failed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SIGNALING_AREAS = ("signaling", "chat")
REST_AREAS = ("openapi", "edges", "bodies", "vonage", "traversal")
SHARES = {
    "signaling": 0.22,
    "chat": 0.03,
    "openapi": 0.30,
    "edges": 0.15,
    "bodies": 0.05,
    "vonage": 0.22,
    "traversal": 0.03,
}
"""Share of the inputs each area gets: the signaling areas are ~10x slower per input (every
frame waits for its answer, aiortc negotiates), so they get fewer and run alongside the rest."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fuzz", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--inputs", type=int, default=10_000, help="inputs to try in all")
    parser.add_argument("--seed", type=int, help="hypothesis seed (default: random)")
    parser.add_argument("--json", type=Path, help="write every finding, reproducers whole")
    parser.add_argument(
        "--areas",
        default=",".join(SIGNALING_AREAS + REST_AREAS),
        help=f"comma-separated subset of {', '.join(SIGNALING_AREAS + REST_AREAS)}",
    )
    parser.add_argument("--no-child", action="store_true", help="run every area in this process")
    return parser


def quotas(total: int, areas: list[str]) -> dict[str, int]:
    weight = sum(SHARES[a] for a in areas)
    return {a: max(1, round(total * SHARES[a] / weight)) for a in areas}


def until_quota(
    report: Any, quota: int, seed: int | None, run_round: Callable[[int, int | None], None]
) -> None:
    """Explore in rounds (fresh seeds) until the area has sent `quota` inputs."""
    round_index = 0
    while report.inputs < quota:
        per_example = report.inputs / report.examples if report.examples else 2.0
        examples = max(20, min(2_000, int((quota - report.inputs) / max(per_example, 0.5)) + 5))
        run_round(examples, None if seed is None else seed + round_index)
        round_index += 1


def run_signaling_areas(areas: list[str], quota: dict[str, int], seed: int | None) -> list[Any]:
    from hypothesis import strategies as st

    from media.ice import configure_gathering
    from tests.support import fuzz
    from tests.support.server_process import running_server

    configure_gathering(["127.0.0.1"])
    reports = []
    with (
        tempfile.TemporaryDirectory() as directory,
        running_server(Path(directory)) as server,
        fuzz.LoopThread() as loop,
    ):
        log = fuzz.LogWatch(server.log_path)
        if "signaling" in areas:
            report = fuzz.FuzzReport("signaling")
            fuzzer = fuzz.SignalingFuzzer(server.url, server.token, log, report)
            world = loop.run(fuzzer.start(), timeout=120)
            strategy = fuzz.signaling_examples(world)
            started = time.monotonic()
            until_quota(
                report,
                quota["signaling"],
                seed,
                lambda n, s: fuzz.explore(
                    strategy, lambda e: loop.run(fuzzer.run(e), timeout=120), examples=n, seed=s
                ),
            )
            report.seconds = time.monotonic() - started
            for problem in loop.run(fuzzer.final_problems(), timeout=120):
                report.fail("afterwards: " + problem.split(":")[0][:60], problem, "(the whole run)")
            loop.run(fuzzer.stop(), timeout=60)
            reports.append(report)
        if "chat" in areas:
            report = fuzz.FuzzReport("chat")
            chat = fuzz.ChatFuzzer(server.url, server.token, log, report)
            ids = loop.run(chat.start(), timeout=120)
            strategy = st.lists(fuzz.chat_payloads(ids), min_size=1, max_size=3).map(tuple)
            started = time.monotonic()
            until_quota(
                report,
                quota["chat"],
                seed,
                lambda n, s: fuzz.explore(
                    strategy, lambda f: loop.run(chat.run(f), timeout=120), examples=n, seed=s
                ),
            )
            report.seconds = time.monotonic() - started
            for problem in loop.run(
                fuzz.room_problems(server.url, server.token, chat.room), timeout=120
            ):
                report.fail("afterwards: " + problem.split(":")[0][:60], problem, "(the whole run)")
            loop.run(chat.stop(), timeout=60)
            reports.append(report)
        if not server.alive():
            reports[-1].fail("the server died", server.log()[-500:], "(the whole run)")
    return reports


def run_rest_areas(areas: list[str], quota: dict[str, int], seed: int | None) -> list[Any]:
    from media.ice import configure_gathering
    from server.tokens import issue_token
    from signaling.permissions import Role
    from tests.support import fuzz
    from tests.support.server_process import running_server
    from tests.support.vonage_fixtures import API_KEY, API_SECRET

    configure_gathering(["127.0.0.1"])
    reports = []
    env = {"PARLOIR_VONAGE_API_KEY": API_KEY, "PARLOIR_VONAGE_API_SECRET": API_SECRET}
    with (
        tempfile.TemporaryDirectory() as directory,
        running_server(Path(directory), **env) as server,
        fuzz.LoopThread() as loop,
    ):
        log = fuzz.LogWatch(server.log_path)
        platform = fuzz.PlatformWorld(server.url, server.api_key, server.staff_token)
        expired = issue_token(
            server.secret, room="gone", identity="x", role=Role.PUBLISHER, ttl_s=60, now=10**6
        )
        loop.run(platform.start(server.token, expired_token=expired), timeout=120)
        vonage = fuzz.LiveVonageSession(server.url, API_KEY, API_SECRET)
        loop.run(vonage.start(), timeout=120)
        document = fuzz.http_request(server.url, "GET", "/openapi.json").json()
        for area in areas:
            report = fuzz.FuzzReport(area)
            if area == "openapi":
                fuzzer: Any = fuzz.OpenApiFuzzer(platform, log, report)
                strategy, run_one = fuzzer.strategy(), fuzzer.run
            elif area == "edges":
                fuzzer = fuzz.PlatformFuzzer(platform, log, report)
                strategy, run_one = fuzz.edge_calls(document, platform), fuzzer.run
            elif area == "bodies":
                fuzzer = fuzz.PlatformFuzzer(platform, log, report)
                strategy, run_one = fuzz.hostile_body_calls(document, platform), fuzzer.run
            elif area == "vonage":
                fuzzer = fuzz.VonageFuzzer(vonage, loop, log, report)
                strategy, run_one = fuzz.vonage_calls(API_KEY, API_SECRET), fuzzer.run
            else:
                fuzzer = fuzz.TraversalFuzzer(server, log, report, other_secrets=[API_SECRET])
                strategy, run_one = fuzz.traversal_ids(), fuzzer.run
            started = time.monotonic()
            until_quota(
                report,
                quota[area],
                seed,
                lambda n, s, strategy=strategy, run_one=run_one: fuzz.explore(
                    strategy, run_one, examples=n, seed=s
                ),
            )
            report.seconds = time.monotonic() - started
            reports.append(report)
        afterwards = [] if server.alive() else ["the server died"]
        afterwards += loop.run(fuzz.server_health_problems(server.url))
        afterwards += loop.run(
            fuzz.room_problems(server.url, server.token, fuzz.random_room_id()), timeout=120
        )
        for problem in afterwards:
            reports[-1].fail("afterwards: " + problem[:60], problem, "(the whole run)")
        loop.run(vonage.stop(), timeout=60)
        loop.run(platform.stop(), timeout=60)
    return reports


def summary(reports: list[Any], seconds: float, seed: int | None) -> str:
    inputs = sum(r.inputs for r in reports)
    failures = sum(r.failures for r in reports)
    kinds = sum(len(r.findings) for r in reports)
    lines = [
        f"parloir fuzz: {inputs} inputs tried, {failures} failures of {kinds} kinds,"
        f" {seconds:.1f} s (seed {seed if seed is not None else 'random'})",
        "",
        f"  {'area':<12} {'inputs':>7} {'examples':>9} {'failures':>9} {'kinds':>6} {'seconds':>8}",
    ]
    for r in reports:
        lines.append(
            f"  {r.area:<12} {r.inputs:>7} {r.examples:>9} {r.failures:>9}"
            f" {len(r.findings):>6} {r.seconds:>8.1f}"
        )
    for r in reports:
        if r.findings or r.notes:
            lines += ["", r.describe(width=400)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    areas = [a for a in args.areas.split(",") if a]
    unknown = set(areas) - set(SHARES)
    if unknown:
        print(f"unknown areas: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    quota = quotas(args.inputs, areas)
    signaling = [a for a in areas if a in SIGNALING_AREAS]
    rest = [a for a in areas if a in REST_AREAS]
    started = time.monotonic()
    reports: list[Any] = []
    child = None
    child_json = Path(tempfile.mkstemp(suffix=".json")[1])
    if signaling and rest and not args.no_child:
        child_inputs = sum(quota[a] for a in signaling)
        command = [sys.executable, "-m", "bench.fuzz", "--no-child", "--inputs", str(child_inputs)]
        command += ["--areas", ",".join(signaling), "--json", str(child_json)]
        if args.seed is not None:
            command += ["--seed", str(args.seed)]
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        signaling = []
    if rest:
        reports += run_rest_areas(rest, quota, args.seed)
    if signaling:
        reports += run_signaling_areas(signaling, quota, args.seed)
    if child is not None:
        from tests.support.fuzz import FuzzReport

        if child.wait() not in (0, 1):
            crashed = FuzzReport("signaling")
            crashed.fail("the signaling fuzz process failed", f"exit {child.returncode}", "")
            reports.insert(0, crashed)
        for entry in reversed(json.loads(child_json.read_text() or "[]")):
            reports.insert(0, FuzzReport.from_json(entry))
    child_json.unlink(missing_ok=True)
    seconds = time.monotonic() - started
    print(summary(reports, seconds, args.seed))
    if args.json:
        args.json.write_text(json.dumps([r.as_json() for r in reports], indent=2))
    return 1 if any(r.findings for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
