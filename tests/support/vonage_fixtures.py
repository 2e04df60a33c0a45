"""Keys, a self-signed certificate and a webhook receiver for the Vonage SDK tests."""

from __future__ import annotations

import datetime
import ipaddress
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from server.webhooks import verify_signature

API_KEY = "47123456"
API_SECRET = "0123456789abcdef0123456789abcdef01234567"
APPLICATION_ID = "5e8a1c2b-0d6f-4c3a-9b7e-1f2a3b4c5d6e"
SIGNATURE_SECRET = "webhook-signature-secret-0123456789abcdef"


@dataclass
class KeyFiles:
    private_key_pem: str
    public_key_path: Path
    cert_path: Path
    cert_key_path: Path


def make_keys(directory: Path) -> KeyFiles:
    """An RSA application key pair, and a self-signed TLS certificate for 127.0.0.1."""
    app_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = app_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public_path = directory / "application.pub.pem"
    public_path.write_bytes(
        app_key.public_key().public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
    )
    tls_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(tls_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(tls_key, hashes.SHA256())
    )
    cert_path = directory / "tls.pem"
    cert_key_path = directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    cert_key_path.write_bytes(
        tls_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return KeyFiles(private_pem, public_path, cert_path, cert_key_path)


@dataclass
class WebhookReceiver:
    """Records every webhook; answers 500 to the first `fail_first` deliveries."""

    fail_first: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    signatures_ok: list[bool] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_post("/events", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/events"
        return self

    async def _handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        body = await request.read()
        if self.attempts <= self.fail_first:
            return web.Response(status=500)
        self.signatures_ok.append(
            verify_signature(body, request.headers.get("Authorization", ""), SIGNATURE_SECRET)
        )
        self.received.append(json.loads(body))
        return web.Response(status=200)

    def events(self, session_id: str) -> list[tuple[str, str | None]]:
        return [
            (e["event"], e.get("reason")) for e in self.received if e.get("sessionId") == session_id
        ]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
