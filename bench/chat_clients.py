"""Chat benchmark worker: several participants in one process, sending and receiving chat.

Run as `python -m bench.chat_clients`; reads a `ChatClientsConfig` line on stdin, then commands
(bench/chat_messages.py). Each seat is a `ParloirClient` (no media) whose chat frames come to its
`on_chat` straight off the data channel: the arrival time is taken there, before any other work,
and the client's own per-message bookkeeping (a list entry and a wake-up task per message) is
left out so that thousands of messages a second do not cost the measuring process more than
they must.

A message's text is `phase|sender|number|sent_at|`, `sent_at` being `time.monotonic()` just
before the send: one clock for every process on the machine, so arrival minus `sent_at` is the
one-way latency through the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter

from bench.chat_messages import (
    COMMAND,
    ChatClientsConfig,
    ChatSeat,
    Finish,
    Join,
    Joined,
    Report,
    SeatPhase,
    SeatReport,
    SendBurst,
    SendSteady,
    Sent,
    Tallied,
    Tally,
)
from bench.processes import describe_error, emit, serve_worker
from signaling.client import ParloirClient

log = logging.getLogger(__name__)

LEAVE_TIMEOUT_S = 10.0


def chat_text(phase: str, sender: int, number: int, sent_at: float) -> str:
    return f"{phase}|{sender}|{number}|{sent_at:.6f}|"


class PacingBucket:
    """The sender's side of the server's token bucket: waits instead of being refused."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate_per_s = rate_per_s
        self.burst = float(burst)
        self.tokens = float(burst)
        self.updated = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate_per_s)
        self.updated = now

    async def take(self) -> None:
        self._refill()
        if self.tokens < 1:
            await asyncio.sleep((1 - self.tokens) / self.rate_per_s)
            self._refill()
        self.tokens -= 1


class ChatSeatProbe:
    """One participant of the benchmark: joins, sends when told, records what arrives."""

    def __init__(self, config: ChatClientsConfig, seat: ChatSeat) -> None:
        self.seat = seat
        self.client = ParloirClient(
            config.url,
            token=seat.token,
            room=config.room,
            name=f"chat-{seat.role}-{seat.index}",
            on_chat=self._frame,
        )
        self.phases: dict[str, SeatPhase] = {}
        self.refused: Counter[str] = Counter()
        self.relayed_bytes: int | None = None
        self.history = asyncio.Event()
        self._last_number: dict[tuple[str, int], int] = {}
        self._last_seq: dict[str, int] = {}

    def _frame(self, raw: str | bytes) -> None:
        arrived = time.monotonic()
        message = json.loads(raw)
        kind = message.get("type")
        if kind == "chat-history":
            self.history.set()
            return
        if kind == "chat-error":
            self.refused[str(message.get("code"))] += 1
            return
        if kind != "chat":
            return
        if self.relayed_bytes is None:
            self.relayed_bytes = len(raw.encode() if isinstance(raw, str) else raw)
        phase, sender_text, number_text, sent_text, _ = message["text"].split("|", 4)
        sender, number = int(sender_text), int(number_text)
        record = self.phases.setdefault(phase, SeatPhase())
        record.received += 1
        record.from_senders[sender] = record.from_senders.get(sender, 0) + 1
        if record.first_at is None:
            record.first_at = arrived
        record.last_at = arrived
        previous = self._last_number.get((phase, sender), -1)
        previous_seq = self._last_seq.get(phase, 0)
        if number != previous + 1 or message["seq"] <= previous_seq:
            record.out_of_order += 1
        self._last_number[(phase, sender)] = number
        self._last_seq[phase] = message["seq"]
        if self.seat.role == "receiver":
            record.latency_ms.append(round((arrived - float(sent_text)) * 1000, 3))

    async def join(self, timeout_s: float) -> None:
        await self.client.connect(timeout=timeout_s)
        await self.client.wait_for_chat_channel(timeout=timeout_s)
        await asyncio.wait_for(self.history.wait(), timeout_s)

    async def send(self, phase: str, number: int) -> float:
        sent_at = time.monotonic()
        await self.client.send_chat(chat_text(phase, self.seat.index, number, sent_at))
        return sent_at

    def report(self) -> SeatReport:
        return SeatReport(
            index=self.seat.index,
            role=self.seat.role,
            phases=self.phases,
            refused=dict(self.refused),
            relayed_bytes=self.relayed_bytes,
        )

    async def leave(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.client.leave(), LEAVE_TIMEOUT_S)


class ChatClients:
    """The seats of one worker process and the commands they obey."""

    def __init__(self, config: ChatClientsConfig) -> None:
        self.config = config
        self.probes: list[ChatSeatProbe] = []

    async def join(self, command: Join) -> Joined:
        limit = asyncio.Semaphore(max(1, self.config.join_concurrency))
        fresh = [ChatSeatProbe(self.config, seat) for seat in command.seats]
        self.probes += fresh

        async def join(probe: ChatSeatProbe) -> str | None:
            async with limit:
                try:
                    await probe.join(self.config.join_timeout_s)
                except Exception as exc:
                    return f"{probe.seat.role} {probe.seat.index}: {describe_error(exc)}"
            return None

        results = await asyncio.gather(*(join(p) for p in fresh))
        return Joined(
            seats=[p.seat.index for p, error in zip(fresh, results, strict=True) if error is None],
            errors=[error for error in results if error is not None],
        )

    def senders(self) -> list[ChatSeatProbe]:
        return [p for p in self.probes if p.seat.role == "sender"]

    async def send_steady(self, command: SendSteady) -> Sent:
        probe = next(p for p in self.senders() if p.seat.index == command.sender)
        start = time.monotonic()
        stamps = []
        for number in range(command.count):
            delay = start + number / command.rate_per_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            stamps.append(await probe.send(command.phase, number))
        return Sent(
            phase=command.phase,
            messages=len(stamps),
            first_at=stamps[0] if stamps else None,
            last_at=stamps[-1] if stamps else None,
        )

    async def send_burst(self, command: SendBurst) -> Sent:
        async def one_sender(probe: ChatSeatProbe) -> list[float]:
            stamps = []
            bucket = PacingBucket(command.rate_per_s, command.burst)
            for number in range(command.count):
                await bucket.take()
                stamps.append(await probe.send(command.phase, number))
            return stamps

        per_sender = await asyncio.gather(*(one_sender(p) for p in self.senders()))
        stamps = sorted(s for sent in per_sender for s in sent)
        return Sent(
            phase=command.phase,
            messages=len(stamps),
            first_at=stamps[0] if stamps else None,
            last_at=stamps[-1] if stamps else None,
        )

    def tally(self, command: Tally) -> Tallied:
        records = [p.phases[command.phase] for p in self.probes if command.phase in p.phases]
        lasts = [r.last_at for r in records if r.last_at is not None]
        return Tallied(
            phase=command.phase,
            received=sum(r.received for r in records),
            last_at=max(lasts) if lasts else None,
        )

    async def leave(self) -> None:
        await asyncio.gather(*(p.leave() for p in self.probes))


async def serve(config: ChatClientsConfig, commands: asyncio.StreamReader) -> None:
    clients = ChatClients(config)
    try:
        while line := await commands.readline():
            command = COMMAND.validate_json(line)
            if isinstance(command, Join):
                emit(await clients.join(command))
            elif isinstance(command, SendSteady):
                emit(await clients.send_steady(command))
            elif isinstance(command, SendBurst):
                emit(await clients.send_burst(command))
            elif isinstance(command, Tally):
                emit(clients.tally(command))
            elif isinstance(command, Finish):
                emit(Report(seats=[p.report() for p in clients.probes]))
                break
    finally:
        await clients.leave()


async def main() -> None:
    from media.ice import configure_gathering

    configure_gathering(["127.0.0.1"])
    await serve_worker(ChatClientsConfig, serve)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main())
