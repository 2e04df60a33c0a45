"""The chat fuzz: generated frames on real clients' chat data channels, each relayed or refused with
a documented `chat-error`, the channel still usable after."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections.abc import Collection
from typing import Any

from hypothesis import strategies as st

from signaling.chat import BURST as CHAT_BURST
from signaling.chat import RATE_PER_S as CHAT_RATE_PER_S
from signaling.client import ParloirClient
from signaling.permissions import Role
from signaling.protocol import ChatSend, parse_chat_message
from tests.support.fuzz.documented import CHAT_MESSAGES, ERROR_CODES, SERVER_MESSAGES, Expected
from tests.support.fuzz.hang import HANG_TIMEOUT_AFTER_FIRST_S, REPLY_TIMEOUT_S
from tests.support.fuzz.media_party import TokenFor
from tests.support.fuzz.payloads import Payload, binary_payloads, hostile_json_texts
from tests.support.fuzz.report import FuzzReport
from tests.support.fuzz.schema_values import from_schema, mutated
from tests.support.fuzz.send_budget import SendBudget
from tests.support.fuzz.server_log import LogWatch
from tests.support.fuzz.values import recursion_safe_dumps, repeated, weighted

CHAT_RATE_RETRY_S = 0.06


def chat_payloads(participant_ids: list[str]) -> st.SearchStrategy[Payload]:
    schema = ChatSend.model_json_schema()
    defs = schema.pop("$defs", {})
    semantic: dict[str, st.SearchStrategy[Any]] = {
        "to": st.sampled_from([*participant_ids, "nobody-" + uuid.uuid4().hex[:8]]),
        "text": st.one_of(
            st.text(min_size=1, max_size=60),
            repeated(
                ("x", 8192), ("x", 8193), ("é", 4096), ("é", 4097), ("😀", 2048), ("😀", 2049)
            ),
        ),
    }
    messages = mutated(from_schema(schema, defs, semantic), ["chat", "ping", "join"])
    as_payload = messages.map(
        lambda pair: Payload(
            recursion_safe_dumps(pair[0]),
            ("chat" if pair[0].get("type") == "chat" else "unknown-type")
            + ("" if pair[1] == "valid" else f"/{pair[1]}"),
        )
    )
    texts = hostile_json_texts().filter(lambda p: p.size <= 200_000)
    return weighted((8, as_payload), (1, texts), (1, binary_payloads(as_payload | texts)))


def expect_chat(
    payload: Payload, present: Collection[str], departed: Collection[str] = frozenset()
) -> Expected:
    try:
        message = parse_chat_message(payload.data)
    except Exception as error:
        return Expected.refusal(error)
    if message.to is not None and message.to in departed:
        return Expected()  # still held for a resume, or gone: either answer is right
    if message.to is not None and message.to not in present:
        return Expected(
            errors=frozenset({"unknown-participant", "rate-limited"}), request_id=message.id
        )
    return Expected(reply="chat", reply_id=message.id)


class ChatFuzzer:
    """Sends generated frames on real clients' chat data channels; each must be relayed or
    refused with a `chat-error`, and the channel must stay usable (a probe gets relayed)."""

    def __init__(
        self,
        url: str,
        token_for: TokenFor,
        log: LogWatch,
        report: FuzzReport,
        room: str = "fuzz-chat",
        chatters: int = 3,
    ) -> None:
        self.url = url
        self.token_for = token_for
        self.log = log
        self.report = report
        self.room = room
        self.chatter_count = chatters
        self.chatters: list[ParloirClient] = []
        self.departed: set[str] = set()
        """Chatters replaced after a failure: the server may still hold them (resume grace)."""
        self._budgets: dict[int, SendBudget] = {}
        self.reply_timeout = REPLY_TIMEOUT_S
        """Shortened after the first channel that stops answering (a run stays bounded)."""
        self._turn = itertools.count()
        self._probes = itertools.count()

    async def _chatter(self) -> ParloirClient:
        client = ParloirClient(
            self.url,
            token=self.token_for(self.room, f"chatter-{uuid.uuid4().hex[:6]}", Role.PUBLISHER),
            room=self.room,
        )
        await client.connect()
        await client.wait_for_chat_channel()
        self._budgets[id(client)] = SendBudget(CHAT_RATE_PER_S, CHAT_BURST)
        return client

    async def start(self) -> list[str]:
        self.chatters = [await self._chatter() for _ in range(self.chatter_count)]
        return [c.participant_id for c in self.chatters]

    def present(self) -> set[str]:
        return {c.participant_id for c in self.chatters}

    async def run(self, frames: tuple[Payload, ...]) -> None:
        self.report.examples += 1
        slot = next(self._turn) % len(self.chatters)
        client = self.chatters[slot]
        budget = self._budgets[id(client)]
        await asyncio.sleep(budget.wait_for(2 * len(frames) + 1))
        for payload in frames:
            expected = expect_chat(payload, self.present(), self.departed)
            start = len(client.events.messages)
            try:
                budget.spend(1)
                client.chat_channel.send(payload.data)
            except Exception as exc:  # the client refused to send it (over SCTP's size)
                self.report.notes[f"client could not send: {type(exc).__name__}"] += 1
                continue
            self.report.inputs += 1
            try:
                replies = await self._probe(client, start)
            except Exception as exc:
                self.reply_timeout = HANG_TIMEOUT_AFTER_FIRST_S
                self.report.fail(
                    f"chat channel unusable after a frame [{payload.kind.split('/')[0]}]",
                    repr(exc)[:300],
                    payload.describe(),
                )
                self.departed.add(client.participant_id)
                await client.close()
                client = self.chatters[slot] = await self._chatter()
                break
            for kind, detail in judge_chat(expected, replies, client.participant_id):
                self.report.fail(
                    f"{kind} [{payload.kind.split('/')[0]}]", detail, payload.describe()
                )
        self.report.fail_server_log(
            self.log.new_problems(), " ; ".join(p.describe() for p in frames)
        )

    async def _probe(self, client: ParloirClient, start: int) -> list[dict[str, Any]]:
        """Send a chat and wait for its relay; sent again if it was rate limited (a rate-limited
        chat-error may not say which message it refuses)."""
        deadline = time.monotonic() + self.reply_timeout
        probes: set[str] = set()
        budget = self._budgets[id(client)]
        while True:
            await asyncio.sleep(budget.wait_for(1))
            probe = f"probe-{next(self._probes)}"
            probes.add(probe)
            index = len(client.events.messages)
            if client.chat_channel is None or client.chat_channel.readyState != "open":
                raise RuntimeError("the chat channel closed")
            budget.spend(1)
            client.chat_channel.send(json.dumps({"type": "chat", "text": "probe", "id": probe}))

            def answered(m: dict[str, Any]) -> bool:
                return (
                    m.get("request_id") in probes
                    or m.get("id") in probes
                    or (m.get("type") == "chat-error" and m.get("code") == "rate-limited")
                )

            reply = await client.wait_for(
                answered, timeout=max(deadline - time.monotonic(), 0.1), start=index
            )
            if reply.get("type") == "chat":
                return [
                    m
                    for m in client.events.messages[start:]
                    if m.get("request_id") not in probes and m.get("id") not in probes
                ]
            if reply.get("code") != "rate-limited" or time.monotonic() > deadline:
                raise RuntimeError(f"probe refused: {reply!r}")
            self.report.notes["probe rate-limited"] += 1
            await asyncio.sleep(CHAT_RATE_RETRY_S)

    async def stop(self) -> None:
        await asyncio.gather(*(c.leave() for c in self.chatters), return_exceptions=True)


def judge_chat(
    expected: Expected, replies: list[dict[str, Any]], sender_id: str
) -> list[tuple[str, str]]:
    mine = [
        r
        for r in replies
        if r.get("type") == "chat-error"
        or (r.get("type") == "chat" and (r.get("from") or {}).get("id") == sender_id)
    ]
    problems: list[tuple[str, str]] = []
    for reply in replies:
        if reply.get("type") not in CHAT_MESSAGES and reply.get("type") not in SERVER_MESSAGES:
            problems.append((f"undocumented message {reply.get('type')!r}", repr(reply)[:200]))
        if reply.get("type") == "chat-error" and (
            reply.get("code") not in ERROR_CODES or reply.get("code") == "internal"
        ):
            problems.append(("undocumented or internal chat-error", repr(reply)[:200]))
    seen = ", ".join(f"{r['type']}:{r.get('code', '')}" for r in mine) or "nothing"
    if expected.errors:
        match = [r for r in mine if r["type"] == "chat-error" and r.get("code") in expected.errors]
        if not match:
            problems.append(
                (f"expected chat-error {'/'.join(sorted(expected.errors))}", f"got {seen}")
            )
        elif expected.request_id is not None and not any(
            r.get("id") == expected.request_id for r in match
        ):
            problems.append(("chat-error does not echo the id", repr(match[0])[:200]))
    elif expected.reply == "chat":
        relayed = [
            r for r in mine if r["type"] == "chat" and r.get("request_id") == expected.reply_id
        ]
        limited = [r for r in mine if r.get("code") == "rate-limited"]
        if not relayed and not limited:
            problems.append(("valid chat neither relayed nor rate-limited", f"got {seen}"))
        if (
            limited
            and expected.reply_id is not None
            and not any(r.get("id") == expected.reply_id for r in limited)
        ):
            problems.append(
                ("rate-limited chat-error does not echo the id", repr(limited[0])[:200])
            )
    return problems
