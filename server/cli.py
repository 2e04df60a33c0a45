"""`parloir`: run the server, mint join tokens, run benchmarks."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from server.settings import (
    SettingsError,
    check_data_dir,
    load_settings,
    parse_workers,
    resolve_credentials,
)
from signaling.permissions import Role

DESCRIPTION = """\
Parloir: a self-hosted real-time video server (signaling + passthrough SFU).

commands:
  serve    run the HTTP/WebSocket server (browser client at /, call page at /room/<room>)
  token    print a join token for a room, an identity and a role
  bench    run a benchmark (e.g. `parloir bench forwarding`) and print measured ratios

Settings come from flags and PARLOIR_* environment variables (PARLOIR_HOST, PARLOIR_PORT,
PARLOIR_DATA_DIR, PARLOIR_SECRET, PARLOIR_ICE_ADDRESSES, PARLOIR_ICE_SERVERS,
PARLOIR_VIDEO_CODEC, PARLOIR_MAX_MESSAGE_BYTES, PARLOIR_LOG_JSON, PARLOIR_WORKERS, PARLOIR_ENV);
flags win. See README.md for the full table.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parloir",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default 8080; 0 = any free port)")
    serve.add_argument(
        "--public-url",
        help="base of the links the server hands out, e.g. https://video.example.org",
    )
    serve.add_argument(
        "--data-dir", type=Path, help="SQLite file, recordings, secret (default ./data)"
    )
    serve.add_argument(
        "--ice-address",
        action="append",
        dest="ice_addresses",
        help="address to gather ICE candidates on (repeatable; default: all)",
    )
    serve.add_argument("--video-codec", choices=["h264", "vp8"], help="preferred room codec")
    serve.add_argument(
        "--forwarding",
        choices=["passthrough", "relay"],
        help="passthrough (default) or relay (decode+re-encode baseline)",
    )
    serve.add_argument("--tls-cert", type=Path, help="PEM certificate: serve HTTPS/WSS directly")
    serve.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    serve.add_argument(
        "--workers",
        type=parse_workers,
        help="media worker processes, rooms placed on one each (default 1; auto = one per core)",
    )
    serve.add_argument(
        "--production",
        action="store_const",
        const=True,
        help="refuse generated credentials: PARLOIR_SECRET, _API_KEY, _STAFF_TOKEN must be set"
        " (also PARLOIR_ENV=production)",
    )

    token = commands.add_parser("token", help="print a join token")
    token.add_argument("--room", required=True, help="room id")
    token.add_argument("--identity", required=True, help="who joins (platform user id)")
    token.add_argument("--role", default="publisher", choices=[r.value for r in Role])
    token.add_argument("--name", help="display name (default: the identity)")
    token.add_argument("--ttl", type=int, default=3600, help="seconds the token is valid")
    token.add_argument("--data-dir", type=Path, help="where the generated secret lives")
    token.add_argument("--url", help="also print the call page URL on this base URL")

    bench = commands.add_parser("bench", help="run a benchmark")
    bench_kinds = bench.add_subparsers(dest="bench", metavar="BENCHMARK")
    forwarding = bench_kinds.add_parser(
        "forwarding", help="server CPU per subscriber: passthrough vs decode+re-encode relay"
    )
    forwarding.add_argument("--subscribers", default="1,4,16", help="comma-separated N values")
    forwarding.add_argument("--codec", choices=["h264", "vp8"], default="vp8")
    forwarding.add_argument("--seconds", type=float, default=10.0, help="measurement window")
    forwarding.add_argument("--modes", default="passthrough,relay")
    forwarding.add_argument("--json", type=Path, help="also write the figures here")

    blur = bench_kinds.add_parser(
        "blur", help="background blur: fps, CPU and added latency vs passthrough, 1 and 4 streams"
    )
    blur.add_argument("--codec", choices=["h264", "vp8"], default="h264")
    blur.add_argument("--strength", choices=["low", "high"], default="low")
    blur.add_argument("--seconds", type=float, default=10.0, help="measurement window")
    blur.add_argument("--warmup", type=float, default=3.0)
    blur.add_argument("--json", type=Path, help="also write the figures here")

    recording = bench_kinds.add_parser(
        "recording", help="CPU of individual (copy) and composed recording vs none"
    )
    recording.add_argument("--seconds", type=float, default=15.0, help="measurement window")
    recording.add_argument("--json", type=Path, help="also write the figures here")

    chat = bench_kinds.add_parser(
        "chat", help="chat over the data channel: latency at 20 msg/s, relay throughput, CPU"
    )
    chat.add_argument("--receivers", default="1,4,16", help="comma-separated N values")
    chat.add_argument("--seconds", type=float, default=10.0, help="steady window (20 msg/s)")
    chat.add_argument("--burst-messages", type=int, default=3000, help="messages in the burst")
    chat.add_argument(
        "--burst-senders",
        type=int,
        default=16,
        help="senders sharing the burst (the server allows each 20 msg/s)",
    )
    chat.add_argument("--json", type=Path, help="also write the figures here")

    loadtest = commands.add_parser(
        "loadtest",
        help="rooms of synthetic participants against a server: joins, media, server CPU",
        description="R rooms x P participants (each publishing audio+video and receiving the "
        "others) or R rooms x 1 publisher + S viewers, against a Parloir URL. Prints a live "
        "line and a table; writes JSON, and with --ramp a PNG of CPU and loss against "
        "participants. Exits 1 if a join failed or a room got another room's media.",
    )
    target = loadtest.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="the server under test, e.g. https://video.example.org")
    target.add_argument("--local", action="store_true", help="start a local server for the run")
    loadtest.add_argument(
        "--secret", help="the server's PARLOIR_SECRET, to mint tokens (default: $PARLOIR_SECRET)"
    )
    loadtest.add_argument("--rooms", type=int, default=2)
    shape = loadtest.add_mutually_exclusive_group()
    shape.add_argument(
        "--participants", type=int, default=3, help="per room, each publishing (default 3)"
    )
    shape.add_argument("--viewers", type=int, help="per room: 1 publisher + this many viewers")
    loadtest.add_argument("--seconds", type=float, default=20.0, help="window (per ramp step)")
    loadtest.add_argument("--warmup", type=float, default=3.0)
    loadtest.add_argument("--ramp", action="store_true", help="add one room per step, 1..R")
    loadtest.add_argument("--codec", choices=["h264", "vp8"], default="h264")
    loadtest.add_argument("--resolution", default="640x480", help="WIDTHxHEIGHT")
    loadtest.add_argument("--fps", type=int, default=30)
    loadtest.add_argument("--video-kbps", type=int, default=500)
    loadtest.add_argument("--processes", type=int, help="load processes (default: one per CPU)")
    loadtest.add_argument("--insecure", action="store_true", help="skip TLS verification")
    loadtest.add_argument("--server-pid", type=int, help="local server process to read CPU of")
    loadtest.add_argument(
        "--workers",
        type=parse_workers,
        default=1,
        help="with --local: the local server's worker processes (default 1; auto = cores)",
    )
    loadtest.add_argument("--json", type=Path, help="default loadtest-<time>.json")
    loadtest.add_argument("--chart", type=Path, help="with --ramp; default loadtest-<time>.png")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "token":
            return _token(args)
        if args.command == "bench":
            return _bench(args, parser)
        if args.command == "loadtest":
            return _loadtest(args)
    except SettingsError as exc:
        print(f"parloir: bad setting: {exc}", file=sys.stderr)
        return 2
    return 2


def _serve(args: argparse.Namespace) -> int:
    from server.runner import serve

    settings = load_settings(
        host=args.host,
        port=args.port,
        public_url=args.public_url,
        data_dir=args.data_dir,
        ice_addresses=tuple(args.ice_addresses) if args.ice_addresses else None,
        video_codec=args.video_codec,
        forwarding=args.forwarding,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        workers=args.workers,
        production=args.production,
    )
    check_data_dir(settings)
    serve(resolve_credentials(settings))
    return 0


def _token(args: argparse.Namespace) -> int:
    from server.tokens import issue_token

    settings = resolve_credentials(load_settings(data_dir=args.data_dir))
    try:
        token = issue_token(
            settings.secret,
            room=args.room,
            identity=args.identity,
            role=Role(args.role),
            name=args.name,
            ttl_s=args.ttl,
        )
    except ValueError as exc:
        print(f"parloir: {exc}", file=sys.stderr)
        return 2
    print(token)
    if args.url:
        print(f"{args.url.rstrip('/')}/room/{args.room}?token={token}")
    return 0


def _bench(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    logging.basicConfig(level=logging.WARNING)
    if args.bench == "forwarding":
        from bench.forwarding import run_forwarding_benchmark

        figures = asyncio.run(
            run_forwarding_benchmark(
                subscriber_counts=[int(n) for n in args.subscribers.split(",")],
                codec=args.codec,
                window_s=args.seconds,
                modes=args.modes.split(","),
            )
        )
    elif args.bench == "blur":
        from bench.blur import run_blur_benchmark

        figures = asyncio.run(
            run_blur_benchmark(
                codec=args.codec,
                strength=args.strength,
                duration_s=args.seconds,
                warmup_s=args.warmup,
            )
        )
    elif args.bench == "recording":
        from bench.recording import run_recording_benchmark

        figures = asyncio.run(run_recording_benchmark(args.seconds))
    elif args.bench == "chat":
        from bench.chat import run_chat_benchmark

        figures = asyncio.run(
            run_chat_benchmark(
                receiver_counts=[int(n) for n in args.receivers.split(",")],
                seconds=args.seconds,
                burst_messages=args.burst_messages,
                burst_senders=args.burst_senders,
            )
        )
    else:
        parser.parse_args(["bench", "--help"])
        return 2
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


def _loadtest(args: argparse.Namespace) -> int:
    import os

    from bench.loadtest import LoadPlan, default_output_paths, run_loadtest

    logging.basicConfig(level=logging.WARNING)
    json_path, chart_path = default_output_paths()
    try:
        width, height = (int(v) for v in args.resolution.lower().split("x"))
        plan = LoadPlan(
            url=args.url,
            secret=args.secret or os.environ.get("PARLOIR_SECRET") or None,
            rooms=args.rooms,
            participants=args.participants,
            viewers=args.viewers,
            seconds=args.seconds,
            warmup_s=args.warmup,
            ramp=args.ramp,
            codec=args.codec,
            width=width,
            height=height,
            fps=args.fps,
            video_kbps=args.video_kbps,
            processes=args.processes,
            insecure=args.insecure,
            server_pid=args.server_pid,
            server_workers=args.workers,
            json_path=args.json or json_path,
            chart_path=args.chart or chart_path,
        )
        plan.validate()
    except ValueError as exc:
        print(f"parloir loadtest: {exc}", file=sys.stderr)
        return 2
    figures = asyncio.run(run_loadtest(plan))
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
