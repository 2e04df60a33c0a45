"""Whatever a deployment's logs collect, they never hold a credential: not the server's own,
not a participant's join token, not the wrong ones attackers try."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import jwt
import pytest

from media.synthetic import PaintedVideoTrack
from server.tokens import issue_token
from signaling.client import ParloirClient, ServerError
from signaling.permissions import Role
from tests.support.server_process import running_server


async def test_credentials_right_and_wrong_never_reach_the_log(tmp_path: Path) -> None:
    with running_server(tmp_path, PARLOIR_LOG_JSON="1") as server:
        good_join = server.token("logged", "ada")
        expired = issue_token(
            server.secret, room="logged", identity="old", role=Role.PUBLISHER, ttl_s=60, now=1e6
        )
        forged = jwt.encode(
            {"room": "logged", "sub": "eve", "role": "moderator", "exp": time.time() + 60},
            "not-the-secret-" + "x" * 40,
            algorithm="HS256",
        )
        wrong_api_key = "wrong-api-key-" + "y" * 40
        wrong_staff = "wrong-staff-" + "z" * 40

        ada = ParloirClient(server.url, token=good_join, room="logged")
        await ada.connect()
        await ada.publish(video=PaintedVideoTrack(160, 120, 15))
        for bad in (expired, forged):
            intruder = ParloirClient(server.url, token=bad, room="logged")
            with pytest.raises(ServerError):
                await intruder.connect()
            await intruder.close()
        async with aiohttp.ClientSession() as http:
            for key, expect in ((wrong_api_key, 401), (server.api_key, 200)):
                async with http.get(
                    f"{server.url}/api/sessions", headers={"Authorization": f"Bearer {key}"}
                ) as response:
                    assert response.status == expect
            for staff, expect in ((wrong_staff, 401), (server.staff_token, 200)):
                async with http.post(
                    f"{server.url}/api/staff/login", json={"token": staff}
                ) as response:
                    assert response.status == expect
            # Tokens in a page URL's query string: the call page and a recording download.
            async with http.get(f"{server.url}/room/logged?token={good_join}") as response:
                assert response.status == 200
            async with http.get(f"{server.url}/api/recordings/x/download?token={forged}") as r:
                assert r.status in (401, 403, 404)
        await ada.leave()
        await asyncio.sleep(0.5)
        log = server.log()
        secrets = {
            "server secret": server.secret,
            "API key": server.api_key,
            "staff token": server.staff_token,
            "join token": good_join,
            "expired token": expired,
            "forged token": forged,
            "wrong API key": wrong_api_key,
            "wrong staff token": wrong_staff,
        }
    # A token's signature alone is as good as the token for a replay: look for that too.
    secrets |= {
        f"{name} signature": t.rsplit(".", 1)[-1]
        for name, t in list(secrets.items())
        if t.count(".") == 2
    }
    leaked = [name for name, value in secrets.items() if value in log]
    assert leaked == [], leaked
    # The log is JSON lines and keeps an audit trail of the refusals, so the check above read
    # a log that talks about exactly these credentials.
    messages = [json.loads(line)["msg"] for line in log.splitlines() if line.startswith("{")]
    assert sum(m.startswith("refused a join: token-") for m in messages) == 2, messages
    assert any(m.startswith("refused GET /api/sessions: 401") for m in messages), messages
    assert any(m.startswith("refused POST /api/staff/login: 401") for m in messages), messages
