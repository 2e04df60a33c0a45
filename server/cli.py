"""`parloir`: run the server, mint join tokens, run benchmarks."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path

from server.settings import SettingsError, load_settings, resolve_credentials
from signaling.permissions import Role

DESCRIPTION = """\
Parloir: a self-hosted real-time video server (signaling + passthrough SFU).

commands:
  serve    run the HTTP/WebSocket server (browser client at /, call page at /room/<room>)
  token    print a join token for a room, an identity and a role
  bench    run a benchmark (e.g. `parloir bench forwarding`) and print measured ratios

Settings come from flags and PARLOIR_* environment variables (PARLOIR_HOST, PARLOIR_PORT,
PARLOIR_DATA_DIR, PARLOIR_SECRET, PARLOIR_ICE_ADDRESSES, PARLOIR_ICE_SERVERS,
PARLOIR_VIDEO_CODEC, PARLOIR_MAX_MESSAGE_BYTES, PARLOIR_LOG_JSON); flags win.
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
    except SettingsError as exc:
        print(f"parloir: bad setting: {exc}", file=sys.stderr)
        return 2
    return 2


def _serve(args: argparse.Namespace) -> int:
    from server.runner import serve

    settings = load_settings(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        ice_addresses=tuple(args.ice_addresses) if args.ice_addresses else None,
        video_codec=args.video_codec,
        forwarding=args.forwarding,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
    )
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
    else:
        parser.parse_args(["bench", "--help"])
        return 2
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
