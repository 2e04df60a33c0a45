"""What the signaling fuzz sends on /rtc: client messages derived from signaling/protocol.py (valid
or broken), hostile JSON, binary and oversized frames, coherent publish scenarios."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st
from pydantic import TypeAdapter

from signaling.permissions import Role
from signaling.protocol import CLIENT_MESSAGE_TYPES, ClientMessage
from tests.support.fuzz.payloads import Payload, binary_payloads, hostile_json_texts
from tests.support.fuzz.schema_values import from_schema, mutated
from tests.support.fuzz.sdp import SdpTemplates, candidates, sdp_texts
from tests.support.fuzz.values import dumps, recursion_safe_dumps, weighted

HARD_FRAME_FACTOR = 16
"""Frames up to 16x the message limit get an error; beyond, the server closes with 1009."""


OWN_PUBLICATION = "$own-publication"
"""Placeholder for the fuzzing participant's latest own publication id, filled in when sent."""


@dataclass
class SignalingWorld:
    """Values that mean something to the server, so that generated messages reach past the
    schema: real tokens, real ids of other people's publications, real SDP."""

    room: str
    tokens: list[str]
    publication_ids: list[str]
    participant_ids: list[str]
    sdps: list[str]
    max_message_bytes: int = 64 * 1024


def _message_schemas(adapter_schema: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    defs = adapter_schema.get("$defs", {})
    options = adapter_schema.get("oneOf") or adapter_schema.get("anyOf") or [adapter_schema]
    return defs, options


def client_messages(world: SignalingWorld) -> st.SearchStrategy[tuple[dict[str, Any], str]]:
    """Every client message type of the schema, valid or broken in one way."""
    semantic: dict[str, st.SearchStrategy[Any]] = {
        "token": st.sampled_from(world.tokens),
        "room": st.sampled_from([world.room, "fuzz-elsewhere", world.room.upper()]),
        "publication_id": st.sampled_from([*world.publication_ids, OWN_PUBLICATION]),
        "sdp": sdp_texts(SdpTemplates(world.sdps)),
        "candidate": candidates(),
        "sdp_mid": st.sampled_from(["0", "1", "2", "video"]),
        "audio_mid": st.sampled_from(["0", "1", "2"]),
        "video_mid": st.sampled_from(["0", "1", "2"]),
        "participant_id": st.sampled_from(world.participant_ids),
    }
    defs, options = _message_schemas(TypeAdapter(ClientMessage).json_schema())
    types = sorted(CLIENT_MESSAGE_TYPES)
    per_type = [mutated(from_schema(option, defs, semantic), types) for option in options]
    return st.one_of(*per_type)


def _message_payload(pair: tuple[dict[str, Any], str], ascii_only: bool) -> Payload:
    message, how = pair
    kind = message.get("type") if isinstance(message.get("type"), str) else "?"
    kind = kind if kind in CLIENT_MESSAGE_TYPES else "unknown-type"
    return Payload(
        recursion_safe_dumps(message) if ascii_only else dumps(message, False),
        f"{kind}" + ("" if how == "valid" else f"/{how}"),
    )


def oversized_payloads(max_bytes: int) -> st.SearchStrategy[Payload]:
    """A ping padded to just below, at and above the message limit and the hard frame limit."""
    hard = max_bytes * HARD_FRAME_FACTOR
    sizes = [max_bytes - 1, max_bytes, max_bytes + 1, 2 * max_bytes, hard, hard + 1, hard + 4096]

    def padded(size: int) -> Payload:
        head = '{"type":"ping","id":"big","pad":"'
        data = head + "x" * max(size - len(head) - 2, 0) + '"}'
        return Payload(
            data,
            "oversized",
            f"'{head}' + 'x' * {max(size - len(head) - 2, 0)} + '\"}}'  # {size} bytes",
        )

    return st.sampled_from(sizes).map(padded)


def signaling_payloads(world: SignalingWorld) -> st.SearchStrategy[Payload]:
    messages = st.tuples(client_messages(world), st.booleans()).map(
        lambda pair: _message_payload(pair[0], pair[1])
    )
    texts = hostile_json_texts()
    return weighted(
        (12, messages),
        (2, texts),
        (2, binary_payloads(messages | texts)),
        (1, oversized_payloads(world.max_message_bytes)),
    )


@st.composite
def scenarios(draw: st.DrawFn, world: SignalingWorld) -> tuple[Payload, ...]:
    """Coherent sequences that reach deep: announce a publication, offer a real (or bent) SDP
    for it, then act on what went live: mute, blur, trickle, renegotiate, unpublish."""
    templates = SdpTemplates(world.sdps)
    audio_mid, video_mid = draw(st.sampled_from([("0", "1"), ("0", None), (None, "1"), ("1", "0")]))
    publish: dict[str, Any] = {"type": "publish", "id": "s-publish"}
    publish["video_type"] = draw(st.sampled_from(["camera", "screen"]))
    if audio_mid:
        publish["audio_mid"] = audio_mid
    if video_mid:
        publish["video_mid"] = video_mid
    real_offer = st.integers(0, 2).map(lambda _: templates[0])
    sdp = draw(real_offer | sdp_texts(templates))
    steps: list[dict[str, Any]] = [
        publish,
        {"type": "offer", "pc": "publisher", "sdp": sdp, "id": "s-offer"},
    ]
    actions = st.one_of(
        st.builds(
            lambda kind, muted: {
                "type": "mute",
                "publication_id": OWN_PUBLICATION,
                "kind": kind,
                "muted": muted,
                "id": "s-mute",
            },
            st.sampled_from(["audio", "video"]),
            st.booleans(),
        ),
        st.builds(
            lambda enabled, strength: {
                "type": "blur",
                "publication_id": OWN_PUBLICATION,
                "enabled": enabled,
                "strength": strength,
                "id": "s-blur",
            },
            st.booleans(),
            st.sampled_from(["low", "high"]),
        ),
        st.builds(
            lambda candidate, mid: {
                "type": "ice",
                "pc": "publisher",
                "candidate": candidate,
                "sdp_mid": mid,
                "id": "s-ice",
            },
            candidates(),
            st.sampled_from(["0", "1", None]),
        ),
        st.builds(
            lambda candidate: {
                "type": "ice",
                "pc": "subscriber",
                "candidate": candidate,
                "id": "s-ice",
            },
            candidates(),
        ),
        st.builds(
            lambda again: {"type": "offer", "pc": "publisher", "sdp": again, "id": "s-reoffer"},
            real_offer | sdp_texts(templates),
        ),
        st.just({"type": "unpublish", "publication_id": OWN_PUBLICATION, "id": "s-unpublish"}),
        st.just({"type": "record", "action": "start", "id": "s-record"}),
    )
    steps += draw(st.lists(actions, max_size=3))
    return tuple(Payload(dumps(step), f"scenario:{step['type']}") for step in steps)


@dataclass(frozen=True)
class SignalingExample:
    """One generated example: frames, and how and where to send them."""

    joined: bool
    """Sent on a socket that has joined the fuzzed room, or on one that has not."""
    burst: bool
    """Sent back to back without waiting for answers (then judged together)."""
    role: str
    """Role of the joined socket's token, when it has to (re)join."""
    frames: tuple[Payload, ...]

    def describe(self) -> str:
        where = "joined" if self.joined else "not joined"
        how = ", back to back" if self.burst else ""
        frames = "; ".join(f.describe() for f in self.frames)
        return f"[{where} as {self.role}{how}] {frames}"


def signaling_examples(world: SignalingWorld) -> st.SearchStrategy[SignalingExample]:
    return st.builds(
        SignalingExample,
        joined=st.sampled_from([True, True, False]),
        burst=st.integers(0, 7).map(lambda n: n == 0),
        role=st.sampled_from(
            [Role.PUBLISHER.value] * 3 + [Role.SUBSCRIBER.value, Role.PUBLISHER_ONLY.value]
        ),
        frames=weighted(
            (3, st.lists(signaling_payloads(world), min_size=1, max_size=4).map(tuple)),
            (1, scenarios(world)),
        ),
    )
