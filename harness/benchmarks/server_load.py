"""`laneguard bench server-ingest` and `server-fanout`: the store server under a store's load.

The server runs as its own process (`laneguard server run`, SQLite in a temporary folder), as in
a store; the lanes and consoles are asyncio clients in this process.

- ingest: 50 enrolled lanes, each sending its transactions one request per transaction (the
  worst case for the server: no batching) as fast as answers come, for a fixed time. Reports
  transactions stored per second and the request latency percentiles.
- fan-out: 50 signed-in consoles hold the live alert websocket open; one lane delivers alerts at
  a steady pace. Reports, over every (alert, console) pair, the time from the ingest request
  being sent to the alert arriving at that console.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from websockets.asyncio.client import connect

from laneguard.serving import free_port

SERVER_COMMAND = [sys.executable, "-m", "laneguard.cli", "server", "run"]


@contextmanager
def store_process(
    root: Path, lanes: int, settings_env: dict[str, str] | None = None
) -> Iterator[tuple[str, list[str]]]:
    """A store server process with ``lanes`` enrolment tokens and a console user
    (``settings_env``: more LANEGUARD_* settings for it)."""
    from product_db.db import make_engine
    from store_server.auth import create_user
    from store_server.db import migrate
    from store_server.lanes import issue_enrolment_token

    url = f"sqlite:///{root / 'store.sqlite3'}"
    engine = make_engine(url)
    migrate(engine)
    tokens = [issue_enrolment_token(engine, f"lane-{n}", created_by="bench") for n in range(lanes)]
    create_user(engine, "bench", "bench-password", "manager")
    engine.dispose()
    port = free_port()
    env = {
        **os.environ,
        "LANEGUARD_DATA_DIR": str(root / "data"),
        # The benchmarks measure the server's capacity: 50 lanes offering 500 transactions/s
        # is 20 times each lane's quota (store_server.lane_quota), which would measure the 429s.
        "LANEGUARD_LANE_TRANSACTIONS_PER_MINUTE": "1000000",
        "LANEGUARD_LANE_SAMPLES_PER_MINUTE": "1000000",
        # Plain HTTP, so the numbers stay comparable with earlier runs'; lanes keep their
        # connections open, so TLS adds a handshake per lane rather than per request.
        "LANEGUARD_TLS": "false",
        **(settings_env or {}),
    }
    log = (root / "server.log").open("wb")  # a file: a full pipe would stall the server
    process = subprocess.Popen(
        [*SERVER_COMMAND, "--db", url, "--port", str(port), "--no-access-log"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise RuntimeError("store server did not start within 60 s")
        yield base, tokens
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _transaction(lane: str, n: int) -> dict[str, Any]:
    now = datetime.now(timezone.utc).isoformat()
    return {
        "type": "transaction",
        "message_id": f"{lane}:tx:{n}",
        "lane_id": lane,
        "transaction_id": f"{lane}-{n}",
        "started_at": now,
        "ended_at": now,
        "honest": True,
        "seen": [
            {
                "track_id": i,
                "code": "4011",
                "vision_code": "4011",
                "band": "trusted",
                "score": 0.95,
                "crossed_s": float(i),
                "decided_by": "scan (agree)",
            }
            for i in range(8)
        ],
        "scanned": [
            {
                "event_id": f"s{i}",
                "t": float(i),
                "code": "4011",
                "key": "4011",
                "quantity": 1,
                "source": "keypad",
                "weight_g": 400,
            }
            for i in range(8)
        ],
        "alert_ids": [],
    }


def _alert(lane: str, n: int) -> dict[str, Any]:
    return {
        "type": "alert",
        "message_id": f"{lane}:alert:{n}",
        "lane_id": lane,
        "alert_id": f"{lane}-a{n}",
        "transaction_id": f"{lane}-{n}",
        "alert_type": "unscanned_item",
        "severity": "medium",
        "value_minor": 199,
        "status": "open",
        "raised_at": datetime.now(timezone.utc).isoformat(),
    }


async def _enrol(client: httpx.AsyncClient, token: str) -> str:
    reply = await client.post("/api/v1/enrol", json={"token": token})
    reply.raise_for_status()
    credential: str = reply.json()["credential"]
    return credential


def _slowest_at(timeline: list[tuple[float, float]]) -> list[float]:
    """When (seconds into the run) the slowest 1% of requests were sent, rounded: stalls
    show as clusters, warm-up as early times."""
    if not timeline:
        return []
    first = min(t for t, _ in timeline)
    slowest = sorted(timeline, key=lambda entry: entry[1])[-max(1, len(timeline) // 100) :]
    return sorted({round(t - first, 1) for t, _ in slowest})


def _percentiles(values_ms: list[float]) -> dict[str, float]:
    data = np.array(values_ms)
    return {
        "p50": round(float(np.percentile(data, 50)), 1),
        "p99": round(float(np.percentile(data, 99)), 1),
        "max": round(float(data.max()), 1),
        "n": len(values_ms),
    }


class _LaneConnection:
    """One lane's keep-alive HTTP/1.1 connection, written by hand: the load generator shares
    this machine's two cores with the server, and httpx costs ~5 ms of CPU per request, which
    would measure the client rather than the server."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, base: str) -> _LaneConnection:
        host, port = base.removeprefix("http://").split(":")
        return cls(*await asyncio.open_connection(host, int(port)))

    async def post(self, path: str, body: bytes, credential: str) -> tuple[int, bytes]:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: store\r\nAuthorization: Bearer {credential}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def _ingest_load(
    base: str,
    tokens: list[str],
    seconds: float,
    per_request: int = 1,
    rate: float | None = None,
    alert_every: int = 0,
) -> dict[str, Any]:
    """Each lane sends requests back to back, or when ``rate`` (transactions/s for all lanes
    together) is given, on its own schedule: a lane late on its schedule sends at once, so a
    server that cannot keep up shows it in the rate achieved. With ``alert_every`` N, every
    Nth transaction comes with an alert in the same request."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        credentials = [await _enrol(client, t) for t in tokens]
    latencies: list[float] = []
    resets: list[str] = []  # connections the server dropped (counted as errors too)
    timeline: list[tuple[float, float]] = []  # (sent, latency ms), for finding stalls
    errors = 0
    stored = 0
    stop_at = time.monotonic() + seconds

    async def lane(index: int, credential: str) -> None:
        nonlocal errors, stored
        connection = await _LaneConnection.open(base)
        n = 0
        interval = per_request * len(tokens) / rate if rate else 0.0
        due = time.monotonic() + interval * index / len(tokens)  # lanes spread over a period
        while time.monotonic() < stop_at:
            if interval:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                due += interval
            batch = [_transaction(f"lane-{index}", n + i) for i in range(per_request)]
            if alert_every:
                batch += [
                    _alert(f"lane-{index}", n + i)
                    for i in range(per_request)
                    if (n + i + index) % alert_every == 0  # lanes take turns: no bursts
                ]
            body = json.dumps({"messages": batch}).encode()
            started = time.perf_counter()
            try:
                status, reply = await connection.post("/api/v1/ingest", body, credential)
            except (ConnectionError, asyncio.IncompleteReadError) as error:
                resets.append(f"{type(error).__name__}: {error}")
                connection.close()
                connection = await _LaneConnection.open(base)
                status, reply = 0, b""
            latencies.append(1000 * (time.perf_counter() - started))
            timeline.append((started, latencies[-1]))
            if status == 200 and f'"stored":{len(batch)}'.encode() in reply:
                stored += per_request
            else:
                errors += 1
            n += per_request
        connection.close()

    started = time.monotonic()
    await asyncio.gather(*(lane(i, c) for i, c in enumerate(credentials)))
    elapsed = time.monotonic() - started
    return {
        "lanes": len(tokens),
        "seconds": round(elapsed, 1),
        "transactions_stored": stored,
        "errors": errors,
        "connections_dropped": len(resets),
        "transactions_per_s": round(stored / elapsed, 1),
        "latency_ms": _percentiles(latencies),
        "slowest_1pct_at_s": _slowest_at(timeline),
    }


def run_ingest(lanes: int = 50, seconds: float = 20.0) -> dict[str, Any]:
    """Three runs, each on a fresh store: 500 transactions/s spread over the lanes, one per
    request (each lane sending every transaction as it ends: the target); then as fast as the
    server answers, one per request and ten per request (an uploader working off a backlog)."""
    runs = {}
    for name, per_request, rate in (
        ("paced_500_per_s", 1, 500.0),
        ("flat_out_1_per_request", 1, None),
        ("flat_out_10_per_request", 10, None),
    ):
        with (
            tempfile.TemporaryDirectory(prefix="laneguard-ingest-") as tmp,
            store_process(Path(tmp), lanes) as (base, tokens),
        ):
            runs[name] = asyncio.run(_ingest_load(base, tokens, seconds, per_request, rate))
    return {
        "database": "SQLite (WAL), server in its own process, 1 worker",
        "transaction": "8 items seen and 8 scanned",
        **runs,
    }


def _session_cookie(base: str) -> str:
    with httpx.Client(base_url=base, timeout=10) as client:
        form = client.get("/login").text
        match = re.search(r'name="login_csrf" value="([^"]+)"', form)
        assert match is not None
        client.post(
            "/login",
            data={"username": "bench", "password": "bench-password", "login_csrf": match[1]},
        )
        return client.cookies["lg_session"]


async def _fanout(base: str, token: str, consoles: int, alerts: int, pace_s: float) -> Any:
    cookie = await asyncio.to_thread(_session_cookie, base)
    ws_url = base.replace("http://", "ws://") + "/ws/alerts"
    sent_at: dict[str, float] = {}
    delays: list[float] = []
    received = 0

    async def console(ready: asyncio.Event, done: asyncio.Event) -> None:
        nonlocal received
        async with connect(ws_url, additional_headers={"Cookie": f"lg_session={cookie}"}) as ws:
            json.loads(await ws.recv())  # hello
            ready.set()
            got = 0
            while got < alerts:
                event = json.loads(await ws.recv())
                if event.get("type") != "alert":
                    continue
                delays.append(1000 * (time.perf_counter() - sent_at[event["alert_id"]]))
                got += 1
                received += 1
        done.set()

    readies = [asyncio.Event() for _ in range(consoles)]
    dones = [asyncio.Event() for _ in range(consoles)]
    tasks = [asyncio.create_task(console(r, d)) for r, d in zip(readies, dones)]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 30)
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        credential = await _enrol(client, token)
        headers = {"Authorization": f"Bearer {credential}"}
        for n in range(alerts):
            message = _alert("lane-0", n)
            sent_at[message["alert_id"]] = time.perf_counter()
            reply = await client.post(
                "/api/v1/ingest", json={"messages": [message]}, headers=headers
            )
            reply.raise_for_status()
            await asyncio.sleep(pace_s)
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    return delays, received


def run_fanout(consoles: int = 50, alerts: int = 100, pace_s: float = 0.1) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="laneguard-fanout-") as tmp,
        store_process(Path(tmp), 1) as (base, tokens),
    ):
        delays, received = asyncio.run(_fanout(base, tokens[0], consoles, alerts, pace_s))
    return {
        "consoles": consoles,
        "alerts": alerts,
        "deliveries": received,
        "expected_deliveries": consoles * alerts,
        "ingest_to_console_ms": _percentiles(delays),
    }
