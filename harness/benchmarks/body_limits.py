"""`laneguard bench body-limits`: a 1 GB request body sent to a store server and to a lane, each
running as its own `laneguard ... run` process, and how much memory either grew by while
refusing it (target: under 100 MB above idle).

Each flood is sent three ways where it applies: with a Content-Length that says 1 GB, chunked
with no credential, and chunked with a valid credential (the lane's till token, or a store
lane credential); the multipart catalog upload is sent unauthenticated. Peak resident memory is
the kernel's high-water mark of the process, reset before each flood.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from harness.flood import Flood, flood, memory_growth
from laneguard.serving import free_port

GB = 1 << 30
TILL = "bench-till-token"


def _measure(
    pid: int, url: str, path: str, headers: dict[str, str], declare: bool
) -> dict[str, Any]:
    started = time.perf_counter()
    with memory_growth(pid) as memory:
        result: Flood = flood(url, path, GB, headers, declare_length=declare)
    return {
        "status": result.status,
        "body_bytes_sent_before_answer": result.sent,
        "seconds": round(time.perf_counter() - started, 2),
        "idle_rss_mb": memory.idle_mb,
        "peak_growth_mb": memory.peak_growth_mb,
    }


def _wait(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited ({process.returncode})")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer in 90 s")


def _laneguard(*args: str) -> list[str]:
    return [sys.executable, "-m", "laneguard.cli", *args]


def run() -> dict[str, Any]:
    from product_db.db import make_engine
    from store_server.db import migrate
    from store_server.lanes import issue_enrolment_token

    results: dict[str, Any] = {"body_bytes": GB}
    with tempfile.TemporaryDirectory(prefix="laneguard-body-bench-") as tmp:
        root = Path(tmp)
        database_url = f"sqlite:///{root / 'store' / 'store.sqlite3'}"
        engine = make_engine(database_url)
        migrate(engine)
        token = issue_enrolment_token(engine, "lane-1", created_by="bench")
        engine.dispose()
        store_port, lane_port = free_port(), free_port()
        env = {
            **os.environ,
            "LANEGUARD_DATA_DIR": str(root / "store"),
            "LANEGUARD_DISCOVERY_PORT": "0",
            "LANEGUARD_TLS": "false",  # the probes below post to it over plain HTTP
        }
        store = subprocess.Popen(
            _laneguard("server", "run", "--db", database_url, "--port", str(store_port),
                       "--no-access-log"),
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        config = root / "lane.yaml"
        config.write_text(
            f"camera: /dev/null\ndata_dir: {root / 'lane'}\nhttp_port: {lane_port}\n"
            f'pos_tokens: ["{TILL}"]\n',
            "utf-8",
        )
        lane = subprocess.Popen(
            _laneguard("node", "run", "--config", str(config)),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            store_url, lane_url = f"http://127.0.0.1:{store_port}", f"http://127.0.0.1:{lane_port}"
            _wait(store_url, store)
            _wait(lane_url, lane)
            credential = httpx.post(f"{store_url}/api/v1/enrol", json={"token": token}).json()[
                "credential"
            ]
            json_type = {"Content-Type": "application/json"}
            lane_auth = {**json_type, "Authorization": f"Bearer {credential}"}
            till_auth = {**json_type, "Authorization": f"Bearer {TILL}"}
            multipart = {"Content-Type": "multipart/form-data; boundary=x"}
            cases = [
                ("store", "ingest_declared_length", "/api/v1/ingest", json_type, True),
                ("store", "ingest_chunked_no_credential", "/api/v1/ingest", json_type, False),
                ("store", "ingest_chunked_with_credential", "/api/v1/ingest", lane_auth, False),
                ("store", "catalog_upload_not_signed_in", "/catalog/import", multipart, False),
                ("lane", "pos_declared_length", "/api/pos/events", till_auth, True),
                ("lane", "pos_chunked_no_token", "/api/pos/events", json_type, False),
                ("lane", "pos_chunked_with_token", "/api/pos/events", till_auth, False),
            ]  # fmt: skip
            processes = {"store": (store.pid, store_url), "lane": (lane.pid, lane_url)}
            for side, name, path, headers, declare in cases:
                pid, url = processes[side]
                results.setdefault(side, {})[name] = _measure(pid, url, path, headers, declare)
        finally:
            for process in (lane, store):
                process.terminate()
                process.wait(timeout=30)
    worst = max(
        run["peak_growth_mb"] for side in ("store", "lane") for run in results[side].values()
    )
    results["worst_peak_growth_mb"] = worst
    results["meets_target"] = worst < 100
    return results
