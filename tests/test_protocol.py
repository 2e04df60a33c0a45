"""The one inbound schema: what it accepts and how it refuses."""

from __future__ import annotations

import json

import pytest

from signaling.errors import ErrorCode, SignalingError
from signaling.protocol import Join, Offer, Publish, parse_client_message

LIMIT = 64 * 1024


def refuse(raw: str | bytes) -> SignalingError:
    with pytest.raises(SignalingError) as caught:
        parse_client_message(raw, LIMIT)
    return caught.value


def test_join_parses_with_optional_name_and_request_id() -> None:
    message = parse_client_message(
        json.dumps({"type": "join", "token": "t", "room": "r", "name": "Ada", "id": 7}), LIMIT
    )
    assert message == Join(type="join", token="t", room="r", name="Ada", id=7)


def test_publish_defaults_to_camera_unmuted() -> None:
    message = parse_client_message('{"type":"publish","video_mid":"1"}', LIMIT)
    assert isinstance(message, Publish)
    assert (message.video_type, message.audio_mid, message.video_muted) == ("camera", None, False)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("", ErrorCode.MALFORMED),
        (b"\xff\xfe", ErrorCode.MALFORMED),
        ("null", ErrorCode.MALFORMED),
        ('{"type": 5}', ErrorCode.UNKNOWN_TYPE),
        ('{"type": "offer", "pc": "subscriber", "sdp": "v=0"}', ErrorCode.INVALID_MESSAGE),
        ('{"type": "publish", "video_type": "hologram"}', ErrorCode.INVALID_MESSAGE),
        ('{"type": "publish", "video_mid": "a b"}', ErrorCode.INVALID_MESSAGE),
        ('{"type": "join", "token": "", "room": "r"}', ErrorCode.INVALID_MESSAGE),
        ('{"type": "ping", "id": {"nested": 1}}', ErrorCode.INVALID_MESSAGE),
    ],
)
def test_invalid_messages_are_refused_with_a_code(raw: str | bytes, code: ErrorCode) -> None:
    assert refuse(raw).code is code


def test_refusal_echoes_the_request_id_and_names_the_field() -> None:
    error = refuse('{"type": "mute", "id": "m1", "publication_id": "p", "kind": "audio"}')
    assert error.request_id == "m1"
    assert "muted" in error.reason


def test_size_limit_counts_bytes_not_characters() -> None:
    text = json.dumps({"type": "ping", "pad": "é" * (LIMIT // 2)}, ensure_ascii=False)
    assert len(text) < LIMIT < len(text.encode())
    assert refuse(text).code is ErrorCode.MESSAGE_TOO_LARGE


def test_sdp_longer_than_the_limit_is_refused() -> None:
    raw = json.dumps({"type": "offer", "pc": "publisher", "sdp": "v=0\n" + "a" * 61_000})
    error = refuse(raw)
    assert error.code is ErrorCode.INVALID_MESSAGE and "sdp" in error.reason


def test_offer_is_only_for_the_publisher_connection() -> None:
    offer = parse_client_message('{"type":"offer","pc":"publisher","sdp":"v=0"}', LIMIT)
    assert isinstance(offer, Offer)
