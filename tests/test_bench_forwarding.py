"""`parloir bench forwarding` end to end, tiny: one passthrough subscriber, a 2 s window.

No timing is asserted (this machine's load is not ours to control); what is pinned is that the
benchmark runs real processes, the figures come out well-formed, the decoding subscriber saw the
publisher's painted frames, and no child process is left behind.
"""

from __future__ import annotations

import io
import json
import math

import psutil

from bench.forwarding import run_forwarding_benchmark


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


async def test_forwarding_benchmark_reports_figures_and_a_correct_picture_for_one_subscriber() -> (
    None
):
    before = _children()
    printed = io.StringIO()

    figures = await run_forwarding_benchmark(
        subscriber_counts=[1],
        codec="vp8",
        window_s=2.0,
        modes=["passthrough"],
        warmup_s=1.0,
        out=printed,
        progress=None,
    )

    assert figures["errors"] == []
    json.dumps(figures, allow_nan=False)  # what --json writes must be strict JSON
    runs = {(run["mode"], run["subscribers"]): run for run in figures["runs"]}
    assert set(runs) == {("passthrough", 0), ("passthrough", 1)}
    baseline, one = runs["passthrough", 0], runs["passthrough", 1]
    for run in (baseline, one):
        assert math.isfinite(run["server_cpu_s_per_s"]) and run["server_cpu_s_per_s"] >= 0
        assert run["publisher_fps"] > 0
        assert run["errors"] == []
    assert baseline["per_subscriber_cpu_s_per_s"] is None
    assert isinstance(one["per_subscriber_cpu_s_per_s"], float)

    assert one["receiving"] == 1
    assert one["fps_min"] > 0 and one["fps_median"] > 0
    assert one["audio_pps_median"] > 0
    assert 0 < one["first_frame_s_p50"] <= one["first_frame_s_max"]
    assert one["content_ok"] is True, one["content"]
    assert one["content"]["frames_decoded"] > 0
    assert one["latency_ms_p50"] is not None and one["latency_ms_p50"] > 0

    assert figures["ratios"] == [
        {
            "subscribers": 1,
            "passthrough_per_subscriber": one["per_subscriber_cpu_s_per_s"],
            "relay_per_subscriber": None,
            "relay_over_passthrough": None,
        }
    ]
    table = printed.getvalue()
    assert "passthrough" in table and "per sub CPU-s/s" in table
    assert "N=1: passthrough" in table

    assert _children() - before == set(), "the benchmark left child processes running"
