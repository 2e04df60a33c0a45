"""The printed form of a forwarding benchmark: one table, ratio lines, targets, what went wrong."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.text_table import format_table, note_lines, verdict

if TYPE_CHECKING:
    from bench.forwarding import ForwardingBenchmark, RunFigures, Targets

OTHER_LOAD_CORES = 0.2
"""Load from outside the benchmark above this is worth a note."""

MEMORY_NOTE_MB = 100.0
STALE_FIRST_FRAME_MS = 1000.0

COLUMNS = (
    ("mode", "<"),
    ("N", ">"),
    ("server CPU-s/s", ">"),
    ("per sub CPU-s/s", ">"),
    ("fps min/med", ">"),
    ("audio pkt/s", ">"),
    ("video kbit/s", ">"),
    ("first frame p50/max s", ">"),
    ("latency p50/p95 ms", ">"),
    ("content", "<"),
    ("pub fps", ">"),
    ("server RSS MB", ">"),
    ("other procs cores", ">"),
)


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pair(a: float | None, b: float | None, digits: int) -> str:
    if a is None and b is None:
        return "-"
    return f"{_num(a, digits)}/{_num(b, digits)}"


def _content(run: RunFigures) -> str:
    if run.content_ok is None:
        return "-"
    if run.content_ok:
        return "ok"
    content = run.content or {}
    problems = [
        f"{k}={v}" for k, v in content.items() if v and k not in ("frames_decoded", "skipped")
    ]
    return "BAD " + (",".join(problems) or "no frames")


def _row(run: RunFigures) -> list[str]:
    receiving = (
        ""
        if run.subscribers == 0 or run.receiving == run.subscribers
        else (f" ({run.receiving} recv)")
    )
    return [
        run.mode,
        str(run.subscribers),
        _num(run.server_cpu_s_per_s, 3),
        _num(run.per_subscriber_cpu_s_per_s, 4),
        _pair(run.fps_min, run.fps_median, 1) + receiving,
        _num(run.audio_pps_median, 1),
        _num(run.video_kbps_median, 0),
        _pair(run.first_frame_s_p50, run.first_frame_s_max, 2),
        _pair(run.latency_ms_p50, run.latency_ms_p95, 0),
        _content(run),
        _num(run.publisher_fps, 1),
        _num(run.server_rss_mb, 0),
        _num(run.other_processes_cores, 2),
    ]


def format_report(result: ForwardingBenchmark) -> str:
    env = result.environment
    lines = [
        f"parloir bench forwarding: {result.codec.upper()} {env['video']} ({_picture(result)}) "
        "+ Opus, "
        f"{result.window_s:g} s windows after {result.warmup_s:g} s warm-up, "
        f"{env['cpus']} CPUs, Python {env['python']}, aiortc {env['aiortc']}, av {env['av']}",
        "server CPU = user+system of the server process over the window; "
        "per sub = (CPU(N) - CPU(0)) / N",
        "",
    ]
    lines += format_table(COLUMNS, [_row(run) for run in result.runs])
    lines.append("")
    for ratio in result.ratios:
        p, r = ratio.passthrough_per_subscriber, ratio.relay_per_subscriber
        times = (
            f" -> {ratio.relay_over_passthrough:.1f}x cheaper"
            if ratio.relay_over_passthrough is not None
            else ""
        )
        lines.append(
            f"N={ratio.subscribers}: passthrough {_num(p, 4)} CPU-s/s per subscriber, "
            f"relay {_num(r, 4)}{times}"
        )
    targets = result.targets
    if targets is not None:
        at = f"N={targets.subscribers}"
        if targets.subscribers != 16:
            at += " (the target is stated at N=16)"
        lines.append(
            f"target: passthrough <= {targets.per_subscriber_max} CPU-s/s per subscriber at {at}: "
            f"{verdict(targets.per_subscriber_met)} ({_num(targets.per_subscriber, 4)})"
        )
        lines.append(
            f"target: passthrough >= {targets.ratio_min:g}x cheaper than relay at {at}: "
            f"{verdict(targets.ratio_met)} {_ratio_basis(targets)}"
        )
    lines += note_lines(_notes(result))
    return "\n".join(lines)


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}x"


def _ratio_basis(targets: Targets) -> str:
    if targets.ratio_basis == "measured":
        return f"({_times(targets.ratio)})"
    if targets.ratio_basis == "relay-held":
        return (
            f"on relay's cost where it held the frame rate (N={targets.relay_held_subscribers}): "
            f"{_times(targets.ratio_vs_relay_held)}; as measured at N={targets.subscribers} "
            f"{_times(targets.ratio)}, but relay's slowest subscriber got only "
            f"{_num(targets.relay_fps_min, 1)} fps there"
        )
    return f"({_times(targets.ratio)})"


def _picture(result: ForwardingBenchmark) -> str:
    picture = (
        "flat painted" if result.video_noise <= 0 else f"painted + noise ±{result.video_noise}"
    )
    if result.video_bitrate is None:
        return f"{picture}, encoder bitrate by REMB"
    return f"{picture}, encoder pinned at {result.video_bitrate / 1e6:g} Mbit/s"


def _notes(result: ForwardingBenchmark) -> list[str]:
    notes = []
    loaded = [run for run in result.runs if run.other_processes_cores > OTHER_LOAD_CORES]
    if loaded:
        where = ", ".join(f"{run.mode} N={run.subscribers}" for run in loaded)
        busiest = max(run.other_processes_cores for run in loaded)
        notes.append(
            f"processes outside the benchmark kept up to {busiest:.2f} cores busy during the "
            f"windows of {where} (see 'other procs cores'): CPU-s/s hold up, fps and latency "
            "may suffer"
        )
    for run in result.runs:
        where = f"{run.mode} N={run.subscribers}"
        if run.subscribers == 0:
            continue
        if run.receiving < run.subscribers:
            notes.append(
                f"{where}: only {run.receiving} of {run.subscribers} subscribers got video"
            )
        if not run.fps_held:
            cause = ""
            if not run.publisher_held:
                cause = f"; the publisher itself only painted {run.publisher_fps:.1f} fps"
            elif run.mode == "relay":
                cause = (
                    "; the relay could not keep up, so its CPU figure is capped and the ratio "
                    "understates the difference"
                )
            notes.append(f"{where}: fps not held (slowest {_num(run.fps_min, 1)}){cause}")
        age = run.first_frame_age_ms
        if age is not None and age > STALE_FIRST_FRAME_MS:
            cause = (
                "the server sent frames it had queued before the subscriber joined"
                if run.publisher_held
                else "the publisher was behind its schedule, and something queued frames"
            )
            notes.append(
                f"{where}: subscriber 0's first frame was due {age / 1000:.1f} s before it "
                f"arrived ({cause}; the 'first frame' time is for a stale frame)"
            )
        if run.content_ok is False:
            notes.append(f"{where}: subscriber 0 saw wrong content: {run.content}")
        notes += [f"{where}: {error}" for error in run.errors]
    notes += _memory_notes(result)
    notes += result.errors
    return notes


def _memory_notes(result: ForwardingBenchmark) -> list[str]:
    """A mode whose server grew far beyond the leanest mode's is worth saying out loud."""
    peaks: dict[str, float] = {}
    for run in result.runs:
        peaks[run.mode] = max(peaks.get(run.mode, 0.0), run.server_rss_mb)
    if len(peaks) < 2:
        return []
    leanest = min(peaks, key=lambda mode: peaks[mode])
    notes = []
    for mode, peak in peaks.items():
        if peak > 2 * peaks[leanest] and peak - peaks[leanest] > MEMORY_NOTE_MB:
            runs = [run for run in result.runs if run.mode == mode]
            rss = " -> ".join(f"{run.server_rss_mb:.0f}" for run in runs)
            at = ",".join(str(run.subscribers) for run in runs)
            notes.append(
                f"{mode}: server RSS {rss} MB at N={at} "
                f"({leanest} peaked at {peaks[leanest]:.0f} MB)"
            )
    return notes
