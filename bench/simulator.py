"""Benchmark: asyncsend_v2 calls per second the simulator sustains on loopback.

Starts ``python -m dingtalk.simulator`` in a subprocess with limits off, then drives it from
client processes, each with several threads holding a keep-alive ``http.client`` connection
and sending asyncsend_v2 with 100 userids per call. The last line printed is one JSON object.

    .venv/bin/python bench/simulator.py [--seconds 5] [--processes 2] [--threads 4]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
APP_KEY, APP_SECRET, AGENT_ID = "ding-demo-hko", "demo-secret-hko", 3000101
MSG = json.dumps({"msgtype": "text", "text": {"content": "Amber rainstorm warning 黃色暴雨警告"}})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), or 0.0 where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_ready(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/_sim/health")
            if connection.getresponse().status == 200:
                connection.close()
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("simulator did not start")


def get_token(port: int) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request(
        "GET", "/gettoken?" + urlencode({"appkey": APP_KEY, "appsecret": APP_SECRET})
    )
    token = json.loads(connection.getresponse().read())["access_token"]
    connection.close()
    return str(token)


def worker_thread(
    port: int,
    token: str,
    offset: int,
    window: tuple[float, float],
    out: list[float],
    errors: list[int],
) -> None:
    start_at, stop_at = window
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    path = "/topapi/message/corpconversation/asyncsend_v2?" + urlencode({"access_token": token})
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    # Bodies are encoded up front so the load generator spends its CPU on HTTP, not urlencode.
    bodies = [
        urlencode(
            {
                "agent_id": AGENT_ID,
                "userid_list": ",".join(f"hko{i:07d}" for i in range(first, first + 100)),
                "msg": MSG,
            }
        ).encode()
        for first in range(offset % 19 * 100, 1900, 100)
    ]
    connection.connect()
    time.sleep(max(0.0, start_at - time.monotonic()))
    call = 0
    while True:
        start = time.monotonic()
        if start >= stop_at:
            break
        connection.request("POST", path, body=bodies[call % len(bodies)], headers=headers)
        reply = json.loads(connection.getresponse().read())
        end = time.monotonic()
        if reply.get("errcode") != 0:
            errors.append(int(reply.get("errcode", -999)))
        if end <= stop_at:  # only calls completed inside the measured window count
            out.append(end - start)
        call += 1
    connection.close()


def client_process(
    port: int,
    token: str,
    index: int,
    threads: int,
    window: tuple[float, float],
    queue: multiprocessing.Queue[tuple[list[float], list[int]]],
) -> None:
    latencies: list[float] = []
    errors: list[int] = []
    workers = [
        threading.Thread(
            target=worker_thread,
            args=(port, token, index * threads + i, window, latencies, errors),
        )
        for i in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    queue.put((latencies, errors))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dingtalk.simulator",
            "--port",
            str(port),
            "--limits",
            "off",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(port, time.monotonic() + 10)
        token = get_token(port)
        # CLOCK_MONOTONIC is shared by all processes, so every client measures the same window.
        start_at = time.monotonic() + 0.5
        window = (start_at, start_at + args.seconds)
        queue: multiprocessing.Queue[tuple[list[float], list[int]]] = multiprocessing.Queue()
        processes = [
            multiprocessing.Process(
                target=client_process, args=(port, token, i, args.threads, window, queue)
            )
            for i in range(args.processes)
        ]
        for process in processes:
            process.start()
        time.sleep(max(0.0, start_at - time.monotonic()))
        cpu_before = cpu_seconds(server.pid)
        results = [queue.get() for _ in processes]
        server_cpu = cpu_seconds(server.pid) - cpu_before
        for process in processes:
            process.join()
    finally:
        server.terminate()
        server.wait(5)
    latencies = sorted(lat for lats, _ in results for lat in lats)
    errors = [e for _, errs in results for e in errs]
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    print(
        json.dumps(
            {
                "simulator_calls_per_s": round(len(latencies) / args.seconds, 1),
                "calls": len(latencies),
                "errors": len(errors),
                "userids_per_call": 100,
                "client_processes": args.processes,
                "client_threads": args.processes * args.threads,
                "duration_s": args.seconds,
                "p50_ms": round(quantiles[49] * 1000, 2),
                "p99_ms": round(quantiles[98] * 1000, 2),
                "limits": "off",
                # Share of one core the simulator used: below 1.0 it was not the bottleneck.
                "simulator_cpu_cores": round(server_cpu / args.seconds, 2),
                "simulator_cpu_us_per_call": round(server_cpu / max(1, len(latencies)) * 1e6),
            }
        )
    )


if __name__ == "__main__":
    main()
