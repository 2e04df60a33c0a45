"""The CPU and memory of a Parloir server under load, from wherever they can be read.

1. `GET {url}/metrics`, if it answers with Prometheus text that has
   `process_cpu_seconds_total` and `process_resident_memory_bytes` (parsed with
   prometheus_client's text parser, when installed);
2. otherwise, for a server on this machine (a loopback URL, or a pid given), that process's
   CPU time and RSS through psutil; the pid is found as the process listening on the URL's port;
3. otherwise nothing: the figures are left out and the report says why.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import psutil

METRICS_TIMEOUT_S = 3.0


@dataclass
class ServerSample:
    at: float
    """time.monotonic() of the reading."""
    cpu_seconds: float | None
    rss_bytes: float | None


def is_local_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listening_pid(port: int) -> int | None:
    """The process listening on TCP `port` on this machine (ours to see), if any."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.Error:
        return None
    for connection in connections:
        if (
            connection.status == psutil.CONN_LISTEN
            and connection.laddr
            and connection.laddr.port == port
            and connection.pid is not None
        ):
            return connection.pid
    return None


def parse_process_metrics(text: str) -> tuple[float | None, float | None]:
    """(process_cpu_seconds_total, process_resident_memory_bytes) from Prometheus text; summed
    over the processes of a multi-worker server (one sample per `worker` label)."""
    from prometheus_client.parser import text_string_to_metric_families

    cpu: float | None = None
    rss: float | None = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "process_cpu_seconds_total":
                cpu = (cpu or 0.0) + float(sample.value)
            elif sample.name == "process_resident_memory_bytes":
                rss = (rss or 0.0) + float(sample.value)
    return cpu, rss


class ServerProbe:
    """Reads the server's CPU seconds and RSS; `source` says how (or why not)."""

    def __init__(
        self,
        source: str,
        *,
        metrics_url: str | None = None,
        pid: int | None = None,
        ssl: bool = True,
    ) -> None:
        self.source = source
        self.metrics_url = metrics_url
        self.ssl = ssl
        self.pid = pid
        self._process = psutil.Process(pid) if pid is not None else None

    @property
    def available(self) -> bool:
        return self.metrics_url is not None or self._process is not None

    @classmethod
    async def discover(cls, url: str, pid: int | None = None, ssl: bool = True) -> ServerProbe:
        metrics_url = url.rstrip("/") + "/metrics"
        why_not_metrics = await _try_metrics(metrics_url, ssl)
        if why_not_metrics is None:
            return cls(f"{metrics_url} (process_* metrics)", metrics_url=metrics_url, ssl=ssl)
        parts = urlsplit(url)
        if pid is None and parts.hostname and is_local_host(parts.hostname):
            port = parts.port or (443 if parts.scheme == "https" else 80)
            pid = listening_pid(port)
        if pid is not None:
            try:
                return cls(
                    f"psutil on the local server process (pid {pid}); {why_not_metrics}", pid=pid
                )
            except psutil.Error as exc:
                return cls(f"unavailable: pid {pid}: {exc}; {why_not_metrics}")
        return cls(f"unavailable: {why_not_metrics}, and the server is not on this machine")

    async def sample(self) -> ServerSample:
        now = time.monotonic()
        if self._process is not None:
            try:
                times = self._process.cpu_times()
                memory = self._process.memory_info()
                return ServerSample(now, float(times.user + times.system), float(memory.rss))
            except psutil.Error:
                return ServerSample(now, None, None)
        if self.metrics_url is not None:
            try:
                async with aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=METRICS_TIMEOUT_S)
                ) as session:
                    async with session.get(self.metrics_url, ssl=self.ssl) as response:
                        return ServerSample(now, *parse_process_metrics(await response.text()))
            except (aiohttp.ClientError, TimeoutError, ValueError):
                return ServerSample(now, None, None)
        return ServerSample(now, None, None)


async def _try_metrics(metrics_url: str, ssl: bool) -> str | None:
    """None if the endpoint gives process CPU and memory; otherwise why not."""
    try:
        import prometheus_client.parser  # noqa: F401
    except ImportError:
        return "prometheus_client is not installed to read /metrics"
    try:
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=METRICS_TIMEOUT_S)
        ) as session:
            async with session.get(metrics_url, ssl=ssl) as response:
                if response.status != 200:
                    return f"GET /metrics answered {response.status}"
                cpu, rss = parse_process_metrics(await response.text())
    except (aiohttp.ClientError, TimeoutError) as exc:
        return f"GET /metrics failed ({type(exc).__name__})"
    except ValueError as exc:
        return f"/metrics is not Prometheus text ({exc})"
    if cpu is None or rss is None:
        return "/metrics has no process_cpu_seconds_total / process_resident_memory_bytes"
    return None
