"""`parloir bench chat` end to end, tiny: one receiver, a 2 s steady window, a small burst.

No timing is asserted (the machine's load is not ours to control): what is pinned is that the
benchmark runs a real server and real client processes, the figures come out well-formed,
every message reached every participant complete and in order, and no child process is left.
"""

from __future__ import annotations

import io
import json
import math

import psutil

from bench.chat import run_chat_benchmark


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


async def test_chat_benchmark_delivers_every_message_in_order_and_reports_figures() -> None:
    before = _children()
    printed = io.StringIO()

    figures = await run_chat_benchmark(
        receiver_counts=[1],
        seconds=2.0,
        burst_messages=120,
        burst_senders=3,
        out=printed,
        progress=None,
    )

    assert figures["errors"] == []
    json.dumps(figures, allow_nan=False)  # what --json writes must be strict JSON
    (run,) = figures["runs"]
    assert run["receivers"] == 1
    assert run["steady_messages"] == 40, "20 msg/s for 2 s"
    assert run["burst_senders"] == 3 and run["burst_messages"] == 120
    assert run["burst_deliveries"] == 120 * (1 + 3), "every participant gets every message"
    assert run["lost"] == 0 and run["out_of_order"] == 0 and run["refused"] == {}
    assert run["complete_and_in_order"] is True
    for key in ("latency_ms_p50", "latency_ms_p95", "latency_ms_max"):
        assert math.isfinite(run[key]) and run[key] > 0
    assert run["latency_ms_p50"] <= run["latency_ms_p95"] <= run["latency_ms_max"]
    for key in ("steady_server_cpu_s_per_s", "burst_server_cpu_s_per_s", "deliveries_per_s"):
        assert math.isfinite(run[key]) and run[key] >= 0
    assert run["burst_seconds"] > 0 and run["relayed_frame_bytes"] > 0
    assert figures["targets"]["receivers"] == 1

    table = printed.getvalue()
    assert "latency p50/p95/max ms" in table and "deliveries per CPU-s" in table
    assert "target: latency p95 <= 5 ms" in table
    assert "target: >= 10,000 deliveries/s per core" in table
    assert _children() - before == set(), "the benchmark left child processes running"
