"""Benchmark the resilient service against a bare sse-starlette + Redis broadcast app.

Prints one JSON document. For each app (each in its own uvicorn process on
loopback), first ``publish_only`` (the top rate, to topics nobody streams: the
server's CPU per publish alone), then two cases, each with STREAMS concurrent
streams held by one asyncio load generator (publishes go out on keep-alive
connections of the same process, see :class:`Publisher`):

* ``fanout``: USERS users, STREAMS / USERS streams each; publishes stepped up
  through RATES (events per second, each for STEP_S seconds);
* ``broadcast``: every stream on one topic; publishes stepped through
  BROADCAST_RATES (each event is STREAMS deliveries).

Each case starts 2 s after its streams are open (their opening frames written), so
no step carries the cost of opening, and first holds them 5 s without publishing
(``*_idle_cpu_share``: what holding 1,000 streams costs, heartbeats included). Per
step: deliveries per second, the p50/p99 publish-to-receive latency, the server's
CPU share, **deliveries per CPU-second** (the cost of a delivery, whatever the
machine's other load) and the machine's load average. The resilient app runs every
fix; the ratio of the bare app's deliveries per CPU-second to its own is the price
of resilience (``cpu_per_delivery_ratio``: 1.0 costs nothing). Then a reconnect
storm on the resilient app: every stream drops and reconnects at once with a stale
cursor; the replay rows read (total and per replay, from /metrics) and
/health/live's answer time during the storm.

``--repeat N`` runs N such pairs, every other one with the bare app first; each
ratio is then the median over the pairs (``pairs`` lists each), because the same
app's CPU per delivery drifts by a fifth or more between runs minutes apart.

First of all, ``interleaved_fanout`` (``--interleave-rounds``, default 6; 0 skips
it): both apps up at once with their 1,000 streams each, the top rate published to
one app for ``--window-s`` seconds, then to the other, the order flipping every
round, each app's CPU read only over its own windows. Drift then lands on both
apps alike, so its ``cpu_per_delivery_ratio`` is the steadiest figure of the run
(``cpu_per_delivery_ratio_per_round`` shows the spread).

Usage: ``python benchmarks/service.py [--streams N] [--users U] [--rates 50,100,200]
[--broadcast-rates 1,2] [--step-s S] [--repeat N] [--interleave-rounds R] [--window-s W]``
(Redis and Postgres as for the integration tests).
``BENCH_PROFILE=/tmp/prefix`` runs each app under ``benchmarks/profiled_app.py`` and
writes one profile per case (fanout, broadcast) of each app; its figures are then
not the apps' own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.auth import issue_token  # noqa: E402
from service.testing.stack import drop_schema  # noqa: E402

SECRET = "benchmark-secret-" + "b" * 24
#: An event's ``data:`` line with the publish time ``t``, and an ``id:`` line.
T_LINE = re.compile(rb'^data: [^\r\n]*?"t":\s*([0-9.]+)', re.MULTILINE)
ID_LINE = re.compile(rb"^id: ([^\r\n]*)", re.MULTILINE)


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(app: str, env: dict[str, str], app_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start an app factory under uvicorn on a free port; wait until it answers."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", app, "--app-dir", str(app_dir),
         "--port", str(port), "--no-access-log", "--log-level", "warning",
         "--timeout-graceful-shutdown", "1", "--backlog", "4096"],
        cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=1).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{app} did not start")


class Reader:
    """One raw SSE stream: counts events and records publish-to-receive latency."""

    def __init__(self, port: int, user: str, tok: str, sink: list[float],
                 last_event_id: str | None = None) -> None:
        self.port, self.tok, self.sink, self.last_event_id = port, tok, sink, last_event_id
        self.user = user
        self.received = 0
        self.refused = 0  #: 429 / 503 answers before the stream opened
        self.last_id: str | None = None
        self.task: asyncio.Task[None] | None = None
        self.ok = asyncio.Event()

    async def run(self) -> None:
        """Open the stream (retrying after a 429 or 503 as a client would) and count its events."""
        while True:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port, limit=2**20)
            extra = f"Last-Event-ID: {self.last_event_id}\r\n" if self.last_event_id else ""
            writer.write((f"GET /stream HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer "
                          f"{self.tok}\r\nAccept: text/event-stream\r\n{extra}\r\n").encode())
            await writer.drain()
            try:
                status = await reader.readline()
                if b" 429 " in status or b" 503 " in status:
                    self.refused += 1
                    head = await reader.readuntil(b"\r\n\r\n")
                    match = re.search(rb"retry-after: (\d+)", head, re.IGNORECASE)
                    await asyncio.sleep(float(match.group(1)) if match else 1.0)
                    continue
                if b" 200 " not in status:
                    raise RuntimeError(status.decode())
                self.ok.set()
                # Whole chunks, not line by line: a thousand readers in one process must
                # not be what limits the rate (its CPU share is in each step's result).
                rest = b""
                while True:
                    chunk = await reader.read(1 << 16)
                    if not chunk:
                        return
                    now = time.time()
                    cut = chunk.rfind(b"\n") + 1
                    if not cut:
                        rest += chunk
                        continue
                    block, rest = rest + chunk[:cut], chunk[cut:]
                    ids = ID_LINE.findall(block)
                    if ids:
                        self.last_id = ids[-1].decode()
                    for stamp in T_LINE.findall(block):
                        self.received += 1
                        self.sink.append(now - float(stamp))
            finally:
                writer.close()


async def open_streams(port: int, users: list[str], per_user: int, sink: list[float],
                       cursors: dict[str, str] | None = None, *, batch: int = 200
                       ) -> list[Reader]:
    """Open ``per_user`` streams per user (resuming from ``cursors``), ``batch`` at a time."""
    readers = []
    for user in users:
        for _ in range(per_user):  # one token per stream: the per-token cap counts streams
            tok = issue_token(SECRET, user, ttl=3600)
            readers.append(Reader(port, user, tok, sink, (cursors or {}).get(user)))
    for i in range(0, len(readers), batch):
        for r in readers[i:i + batch]:
            r.task = asyncio.create_task(r.run())
        await asyncio.wait_for(asyncio.gather(*(r.ok.wait() for r in readers[i:i + batch])), 120)
    return readers


class Publisher:
    """Keep-alive HTTP/1.1 connections that POST events: a load generator, not a client library.

    httpx costs the load generator a few hundred microseconds per request, and its
    pool grows slower as requests queue: at 200 publishes/s beside 1,000 readers the
    generator itself saturated and its backlog grew without end (the latency it then
    reported was its own). Raw requests on ``WORKERS`` connections cost a few tens.
    """

    WORKERS = 16
    #: A connection idle this long is replaced (uvicorn closes idle ones after 5 s).
    IDLE_S = 4.0

    def __init__(self, port: int) -> None:
        self.port = port
        self.token = issue_token(SECRET, "bench-publisher", role="publisher", ttl=3600,
                                 topics=["*"])
        self.queue: asyncio.Queue[tuple[str, float] | None] = asyncio.Queue()
        self.sent = self.failed = 0
        self.tasks = [asyncio.create_task(self._work()) for _ in range(self.WORKERS)]

    async def _work(self) -> None:
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        used = 0.0
        while (item := await self.queue.get()) is not None:
            user, due = item  # the latency counts from when the event was due, queueing included
            body = json.dumps({"user": user, "type": "bench", "data": {"t": due}}).encode()
            request = (f"POST /events HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer "
                       f"{self.token}\r\nContent-Type: application/json\r\nContent-Length: "
                       f"{len(body)}\r\n\r\n").encode() + body
            try:
                if writer is not None and time.monotonic() - used > self.IDLE_S:
                    writer.close()  # the server is about to close it: never send on it
                    reader = writer = None
                if writer is None or reader is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                used = time.monotonic()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
                await reader.readexactly(int(length.group(1)) if length else 0)
                if head.startswith(b"HTTP/1.1 201"):
                    self.sent += 1
                else:
                    self.failed += 1
                if b"connection: close" in head.lower():
                    writer.close()
                    reader = writer = None
            except (OSError, asyncio.IncompleteReadError):
                self.failed += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    async def close(self, timeout: float = 10.0) -> None:
        """Finish what is queued (within ``timeout``), then close the connections."""
        for _ in self.tasks:
            self.queue.put_nowait(None)
        _, pending = await asyncio.wait(self.tasks, timeout=timeout)
        for task in pending:
            task.cancel()


async def publish_at(publisher: Publisher, users: list[str], rate: float,
                     seconds: float) -> tuple[int, int]:
    """Publish round-robin to users at ``rate``/s for ``seconds``; return (sent, failed)."""
    sent0, failed0 = publisher.sent, publisher.failed
    start_t = time.monotonic()
    n = 0
    while (elapsed := time.monotonic() - start_t) < seconds:
        due = int(elapsed * rate) + 1
        while n < due:
            publisher.queue.put_nowait((users[n % len(users)], time.time()))
            n += 1
        await asyncio.sleep(0.005)
    deadline = time.monotonic() + 10
    while publisher.sent + publisher.failed - sent0 - failed0 < n and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return publisher.sent - sent0, publisher.failed - failed0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float | None:
    """The ``q`` quantile of ``values``, in milliseconds."""
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 2)


async def load(port: int, pid: int, users: list[str], per_user: int, rates: list[float],
               step_s: float, settle_s: float = 2.0, idle_s: float = 5.0
               ) -> tuple[list[dict[str, Any]], list[Reader], float]:
    """Hold the streams idle, then step the publish rate up: the steps, readers, idle CPU share."""
    sink: list[float] = []
    readers = await open_streams(port, users, per_user, sink)
    # A stream counts as open at its status line; its opening frames (retry, head) and
    # timers are still being written then. Let that finish: opening is not delivering
    # (the storm prices opens), and the first step would otherwise carry it.
    await asyncio.sleep(settle_s)
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(idle_s)  # the cost of holding the streams: heartbeats, probes
    idle = round((cpu_seconds(pid) - cpu0) / (time.monotonic() - t0), 3)
    steps: list[dict[str, Any]] = []
    profiled = bool(os.environ.get("BENCH_PROFILE"))
    if profiled:
        os.kill(pid, signal.SIGUSR1)  # benchmarks/profiled_app.py: profile from here on
    publisher = Publisher(port)
    try:
        for rate in rates:
            sink.clear()
            before = sum(r.received for r in readers)
            cpu0 = cpu_seconds(pid)
            gen0 = time.process_time()
            t0 = time.monotonic()
            sent, failed = await publish_at(publisher, users, rate, step_s)
            await asyncio.sleep(1.0)  # let deliveries drain
            took = time.monotonic() - t0
            delivered = sum(r.received for r in readers) - before
            expected = sent * per_user
            cpu = cpu_seconds(pid) - cpu0
            steps.append({"publish_rate": rate, "published": sent, "publish_failed": failed,
                          "deliveries": delivered, "expected_deliveries": expected,
                          "deliveries_per_s": round(delivered / (took - 1.0), 1),
                          "p50_ms": pct(sink, 0.5), "p99_ms": pct(sink, 0.99),
                          "server_cpu_share": round(cpu / took, 2),
                          # this load generator's own share: near 1.0, it is the bottleneck
                          "loadgen_cpu_share": round((time.process_time() - gen0) / took, 2),
                          "deliveries_per_cpu_s": round(delivered / cpu) if cpu > 0 else None,
                          # the machine is shared: the 1/5/15-minute load when the step ended
                          "loadavg": [round(x, 2) for x in os.getloadavg()]})
    finally:
        await publisher.close()
    if profiled:
        os.kill(pid, signal.SIGUSR2)
        await asyncio.sleep(2.0)
    return steps, readers, idle


async def publish_only(port: int, pid: int, users: list[str], rate: float, step_s: float
                       ) -> dict[str, Any]:
    """Publish at ``rate`` to topics nobody streams: the server's CPU per publish alone."""
    publisher = Publisher(port)
    try:
        await publish_at(publisher, users, 20, 1.0)  # warm: connections, topic rows
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        sent, failed = await publish_at(publisher, users, rate, step_s)
        cpu, took = cpu_seconds(pid) - cpu0, time.monotonic() - t0
    finally:
        await publisher.close()
    return {"publish_rate": rate, "published": sent, "publish_failed": failed,
            "server_cpu_share": round(cpu / took, 2),
            "cpu_us_per_publish": round(cpu / sent * 1e6) if sent else None,
            "loadavg": [round(x, 2) for x in os.getloadavg()]}


def metric(port: int, name: str) -> float:
    """One unlabelled sample of /metrics."""
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


async def storm(port: int, readers: list[Reader], users: list[str], per_user: int,
                stale_back: int) -> dict[str, Any]:
    """Drop every stream, then reconnect all at once ``stale_back`` events behind."""
    cursors = {}
    for r in readers:
        if r.last_id:
            epoch, seq = r.last_id.split("-")
            cursors.setdefault(r.user, f"{epoch}-{max(0, int(seq) - stale_back)}")
    for r in readers:
        assert r.task is not None
        r.task.cancel()
    await asyncio.gather(*(r.task for r in readers if r.task), return_exceptions=True)
    rows0, replays0 = metric(port, "sselab_replay_rows_total"), _replays(port)
    health: list[float] = []

    async def probe() -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            for _ in range(20):
                t0 = time.monotonic()
                await http.get(f"http://127.0.0.1:{port}/health/live")
                health.append(time.monotonic() - t0)
                await asyncio.sleep(0.1)

    t0 = time.monotonic()
    sink: list[float] = []
    prober = asyncio.create_task(probe())
    again = await open_streams(port, users, per_user, sink, cursors, batch=len(readers))
    reconnected = time.monotonic() - t0
    await prober
    deadline = time.monotonic() + 60  # wait (bounded) until every replay has finished
    while _replays(port) - replays0 < len(again) and time.monotonic() < deadline:
        await asyncio.sleep(0.25)
    replays_done = time.monotonic() - t0
    rows, replays = metric(port, "sselab_replay_rows_total") - rows0, _replays(port) - replays0
    for r in again:
        assert r.task is not None
        r.task.cancel()
    await asyncio.gather(*(r.task for r in again if r.task), return_exceptions=True)
    return {"streams": len(again), "cursor_events_behind": stale_back,
            "all_reconnected_s": round(reconnected, 2), "replay_queries": replays,
            "refused_then_retried": sum(r.refused for r in again),
            "all_replays_done_s": round(replays_done, 2),
            "replay_rows_total": rows, "rows_per_replay": round(rows / replays, 2) if replays else 0,
            "health_live_max_ms": round(max(health) * 1000, 1),
            "health_live_answered": len(health)}


def _replays(port: int) -> float:
    total = 0.0
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines():
        if line.startswith("sselab_replays_total{"):
            total += float(line.split()[-1])
    return total


async def run_app(app: str, env: dict[str, str], app_dir: Path, users: list[str],
                  per_user: int, rates: list[float], broadcast_rates: list[float],
                  step_s: float, streams: int, storm_stale: int | None
                  ) -> dict[str, Any]:
    """One app: the fanout steps, the broadcast steps and (resilient only) the storm."""
    out: dict[str, Any] = {}
    if os.environ.get("BENCH_PROFILE"):  # BENCH_PROFILE=/tmp/prefix: see profiled_app.py
        env = {**env, "BENCH_PROFILE_APP": app, "BENCH_PROFILE_OUT":
               f"{os.environ['BENCH_PROFILE']}-{app.split(':')[0].replace('.', '_')}"}
        app, app_dir = "profiled_app:create_app", ROOT / "benchmarks"
    proc, port = start(app, env, app_dir)
    try:
        out["publish_only"] = await publish_only(port, proc.pid, [u + "-nobody" for u in users],
                                                 max(rates), step_s)
        steps, readers, idle = await load(port, proc.pid, users, per_user, rates, step_s)
        out["fanout"], out["fanout_idle_cpu_share"] = steps, idle
        if storm_stale is not None:
            publisher = Publisher(port)
            try:
                await publish_at(publisher, users, 400, 2.0)  # cursors can be stale
            finally:
                await publisher.close()
            await asyncio.sleep(1.0)
            out["reconnect_storm"] = await storm(port, readers, users, per_user, storm_stale)
        else:
            await close_all(readers)
        one = [users[0] + "-all"]
        steps, readers, idle = await load(port, proc.pid, one, streams, broadcast_rates, step_s)
        out["broadcast"], out["broadcast_idle_cpu_share"] = steps, idle
        await close_all(readers)
    finally:
        proc.kill()
    return out


async def close_all(readers: list[Reader]) -> None:
    """Cancel every reader's task."""
    for r in readers:
        assert r.task is not None
        r.task.cancel()
    await asyncio.gather(*(r.task for r in readers if r.task), return_exceptions=True)


async def interleaved(apps: dict[str, tuple[int, int]], users: list[str], per_user: int,
                      rate: float, window_s: float, rounds: int) -> dict[str, Any]:
    """Fan-out to every app at once, in alternating windows: CPU per delivery without drift.

    Both apps hold their streams from the start; each round publishes ``window_s``
    seconds to one app, then the other (the order flips every round), and each app's
    CPU is read only over its own windows. The machine's drift, which moves a whole
    run by a fifth, then lands on both apps alike.
    """
    sinks: dict[str, list[float]] = {name: [] for name in apps}
    readers = {name: await open_streams(port, users, per_user, sinks[name])
               for name, (port, _) in apps.items()}
    publishers = {name: Publisher(port) for name, (port, _) in apps.items()}
    totals = {name: {"cpu": 0.0, "seconds": 0.0, "sent": 0, "failed": 0, "delivered": 0}
              for name in apps}
    per_round: dict[str, list[float | None]] = {name: [] for name in apps}
    try:
        await asyncio.sleep(2.0)  # opening frames written (see load)
        order = list(apps)
        for n in range(rounds):
            for name in order if n % 2 == 0 else order[::-1]:
                _, pid = apps[name]
                before = sum(r.received for r in readers[name])
                cpu0, t0 = cpu_seconds(pid), time.monotonic()
                sent, failed = await publish_at(publishers[name], users, rate, window_s)
                await asyncio.sleep(0.5)  # let deliveries drain
                cpu = cpu_seconds(pid) - cpu0
                delivered = sum(r.received for r in readers[name]) - before
                total = totals[name]
                total["cpu"] += cpu
                total["seconds"] += time.monotonic() - t0
                total["sent"] += sent
                total["failed"] += failed
                total["delivered"] += delivered
                per_round[name].append(round(delivered / cpu) if cpu > 0 else None)
    finally:
        for publisher in publishers.values():
            await publisher.close()
        for group in readers.values():
            await close_all(group)
    out: dict[str, Any] = {"publish_rate": rate, "window_s": window_s, "rounds": rounds}
    for name, total in totals.items():
        out[name] = {"published": total["sent"], "publish_failed": total["failed"],
                     "deliveries": total["delivered"],
                     "expected_deliveries": total["sent"] * per_user,
                     "p50_ms": pct(sinks[name], 0.5), "p99_ms": pct(sinks[name], 0.99),
                     "server_cpu_share": round(total["cpu"] / total["seconds"], 2),
                     "deliveries_per_cpu_s": round(total["delivered"] / total["cpu"])
                     if total["cpu"] > 0 else None,
                     "deliveries_per_cpu_s_per_round": per_round[name]}
    if {"resilient", "bare"} <= set(totals):
        a, b = out["resilient"]["deliveries_per_cpu_s"], out["bare"]["deliveries_per_cpu_s"]
        out["cpu_per_delivery_ratio"] = round(b / a, 3) if a and b else None
        out["cpu_per_delivery_ratio_per_round"] = [
            round(y / x, 3) if x and y else None
            for x, y in zip(per_round["resilient"], per_round["bare"], strict=True)]
    out["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    return out


def _ratio(resilient: list[dict[str, Any]], bare: list[dict[str, Any]], key: str
           ) -> list[float | None]:
    return [round(b[key] / a[key], 3) if a.get(key) and b.get(key) else None
            for a, b in zip(resilient, bare, strict=True)]


def sustained(steps: list[dict[str, Any]]) -> float | None:
    """The highest rate whose step delivered everything with p99 under 100 ms."""
    ok = [s for s in steps if s["deliveries"] >= 0.99 * s["expected_deliveries"]
          and (s["p99_ms"] or 1e9) < 100]
    return ok[-1]["publish_rate"] if ok else None


def compare(resilient: dict[str, Any], bare: dict[str, Any]) -> dict[str, Any]:
    """The price of resilience in one pair of runs: ratios of the bare app's figures to ours."""
    out: dict[str, Any] = {"publish_only_cpu_ratio": round(
        resilient["publish_only"]["cpu_us_per_publish"]
        / bare["publish_only"]["cpu_us_per_publish"], 3)}
    for case in ("fanout", "broadcast"):
        out[f"{case}_throughput_ratio"] = _ratio(bare[case], resilient[case], "deliveries_per_s")
        out[f"{case}_cpu_per_delivery_ratio"] = _ratio(resilient[case], bare[case],
                                                       "deliveries_per_cpu_s")
    out["top_rate_p99_ms"] = {"resilient": resilient["fanout"][-1]["p99_ms"],
                              "bare": bare["fanout"][-1]["p99_ms"]}
    out["sustained_rate_p99_under_100ms"] = {"resilient": sustained(resilient["fanout"]),
                                             "bare": sustained(bare["fanout"])}
    return out


def _median(values: list[float | None]) -> float | None:
    known = sorted(v for v in values if v is not None)
    return round(statistics.median(known), 3) if known else None


async def _run_resilient(env: dict[str, str], schema: str, users: list[str], per_user: int,
                         rates: list[float], broadcast_rates: list[float], step_s: float,
                         streams: int, storm_stale: int | None) -> dict[str, Any]:
    """The resilient app's run; its schema is dropped after."""
    try:
        return await run_app("service.app:create_app", env, ROOT, users, per_user, rates,
                             broadcast_rates, step_s, streams, storm_stale)
    finally:
        drop_schema(schema)


def _env(args: argparse.Namespace, schema: str, streams: int) -> dict[str, str]:
    """The resilient app's environment for one run (its own schema and namespace)."""
    return {"SSELAB_SECRET": SECRET, "SSELAB_DB_SCHEMA": schema, "SSELAB_NAMESPACE": schema,
            "SSELAB_LOG_LEVEL": "ERROR", "SSELAB_HEARTBEAT_S": str(args.heartbeat_s),
            # one load generator on one address holds every stream (both apps, interleaved)
            "SSELAB_MAX_STREAMS_PER_ADDRESS": str(4 * streams + 100)}


async def _interleaved_run(args: argparse.Namespace, per_user: int, rate: float
                           ) -> dict[str, Any]:
    """Both apps up at once, fan-out at ``rate`` in alternating windows (see interleaved)."""
    run_id = secrets.token_hex(3)
    users = [f"bench-{run_id}-{i}" for i in range(args.users)]
    schema = f"sselab_bench_{run_id}"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        resilient, r_port = start("service.app:create_app", _env(args, schema, per_user
                                                                  * args.users), ROOT)
        procs.append(resilient)
        bare, b_port = start("bare_sse_app:create_app", {"BARE_CHANNEL": f"bare:{run_id}"},
                             ROOT / "benchmarks")
        procs.append(bare)
        warm = {name: Publisher(port) for name, port in (("resilient", r_port), ("bare", b_port))}
        for publisher in warm.values():  # connections, topic rows, the first prepares
            await publish_at(publisher, users, 20, 1.0)
            await publisher.close()
        return await interleaved({"resilient": (r_port, resilient.pid), "bare": (b_port, bare.pid)},
                                 users, per_user, rate, args.window_s, args.interleave_rounds)
    finally:
        for proc in procs:
            proc.kill()
        drop_schema(schema)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    """Run both apps (``--repeat`` pairs, alternating which goes first) and the storm."""
    per_user = max(1, args.streams // args.users)
    rates = [float(r) for r in args.rates.split(",")]
    broadcast_rates = [float(r) for r in args.broadcast_rates.split(",")]
    streams = per_user * args.users
    result: dict[str, Any] = {"streams": streams, "users": args.users,
                              "streams_per_user": per_user, "step_s": args.step_s,
                              "cpus": os.cpu_count(), "heartbeat_s": args.heartbeat_s,
                              "repeat": args.repeat}
    pairs: list[dict[str, Any]] = []
    if args.interleave_rounds and not args.only_resilient:
        result["interleaved_fanout"] = await _interleaved_run(args, per_user, max(rates))
    for n in range(args.repeat):
        run_id = secrets.token_hex(3)
        users = [f"bench-{run_id}-{i}" for i in range(args.users)]
        schema = f"sselab_bench_{run_id}"
        env = _env(args, schema, streams)
        resilient_run = _run_resilient(env, schema, users, per_user, rates, broadcast_rates,
                                       args.step_s, streams, args.stale if n == 0 else None)
        if args.only_resilient:
            result["resilient"] = await resilient_run
            return result
        bare_run = run_app("bare_sse_app:create_app", {"BARE_CHANNEL": f"bare:{run_id}"},
                           ROOT / "benchmarks", users, per_user, rates, broadcast_rates,
                           args.step_s, streams, None)
        # The machine drifts (other tenants, clock): every other pair runs the bare app first.
        if n % 2:
            bare = await bare_run
            resilient = await resilient_run
        else:
            resilient = await resilient_run
            bare = await bare_run
        if n == 0:
            result["resilient"], result["bare"] = resilient, bare
        pairs.append({"first": "bare" if n % 2 else "resilient",
                      "loadavg": [round(x, 2) for x in os.getloadavg()],
                      **compare(resilient, bare)})
    result["pairs"] = pairs
    result["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    if not pairs:  # --repeat 0: the interleaved fan-out alone
        return result
    # Each ratio is the median over the pairs (one pair: that pair's).
    result["publish_only_cpu_ratio"] = _median([p["publish_only_cpu_ratio"] for p in pairs])
    for case in ("fanout", "broadcast"):
        for what in ("throughput_ratio", "cpu_per_delivery_ratio"):
            key = f"{case}_{what}"
            result[key] = [_median([p[key][i] for p in pairs])
                           for i in range(len(pairs[0][key]))]
    result["sustained_rate_p99_under_100ms"] = pairs[0]["sustained_rate_p99_under_100ms"] \
        if len(pairs) == 1 else {app: min(p["sustained_rate_p99_under_100ms"][app] or 0.0
                                          for p in pairs) for app in ("resilient", "bare")}
    return result


def main() -> int:
    """Parse the arguments, run, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--rates", default="25,50,100,200")
    parser.add_argument("--broadcast-rates", default="1,2",
                        help="publishes/s to the one topic every stream follows")
    parser.add_argument("--step-s", type=float, default=10.0,
                        help="seconds per step (short steps can miss a collector pause)")
    parser.add_argument("--heartbeat-s", type=float, default=5.0,
                        help="the resilient app's heartbeat (the bare app pings every 15 s)")
    parser.add_argument("--only-resilient", action="store_true")
    parser.add_argument("--repeat", type=int, default=1,
                        help="pairs of runs (alternating which app goes first); the ratios "
                             "are their medians, the machine's drift between runs is large "
                             "(0: only the interleaved fan-out)")
    parser.add_argument("--stale", type=int, default=20, help="events behind at the storm")
    parser.add_argument("--interleave-rounds", type=int, default=6,
                        help="rounds of the interleaved fan-out at the top rate, both apps up "
                             "at once and published to in alternating windows (0: skip)")
    parser.add_argument("--window-s", type=float, default=5.0,
                        help="seconds per app per interleaved round")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
