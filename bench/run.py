"""`make bench`: the connector's figures, each against a baseline measured in the same run.

1. pause throughput (wrk, 64 connections) vs a bare aiohttp app parsing the same JSON;
2. click-to-resume latency (review-page POST → arrival at a local receiver) at 100 decisions/s;
3. scale: 1,000,000 pending runs — pause p99, start-up time, memory, 100,000 simultaneous deadlines;
4. notification fan-out: 1,000 runs x 2 reviewers to a local SMTP server;
5. PostgreSQL: pause throughput with one and with two instances (ratios to the same baseline) and
   click-to-resume across instances (pause on A, decide on B). Skipped, saying so, when no server
   answers at BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test).

Prints a table and writes bench/results.json. `BENCH_QUICK=1` shrinks every size for a smoke run.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
QUICK = os.environ.get("BENCH_QUICK") == "1"
PY = sys.executable
API_KEY = "bench-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
SECRET = "bench-secret-key-0123456789abcdef"
WRK_SECONDS = 3 if QUICK else 10
CLICKS = 200 if QUICK else 1000
SCALE_RUNS = 20_000 if QUICK else 1_000_000
DEADLINE_RUNS = 5_000 if QUICK else 100_000
FANOUT_RUNS = 100 if QUICK else 1000
PG_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(
    directory: Path,
    *,
    receiver_port: int = 9,
    smtp_port: int | None = None,
    reviewers: int = 1,
    database_url: str = "",
) -> Path:
    people = ", ".join(
        f'{{ email = "{name}@example.com", name = "{name.title()}" }}'
        for name in ("ann", "bob")[:reviewers]
    )
    smtp = ""
    if smtp_port is not None:
        smtp = f'\n[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\nfrom = "bench@example.com"\n'
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "connector.toml"
    config.write_text(
        f"""
data_dir = "{directory / "var"}"
database_url = "{database_url}"
api_keys = ["{API_KEY}"]
secret_keys = ["{SECRET}"]
resume_allow = ["127.0.0.1/32"]
log_level = "WARNING"
{smtp}
[flows.bench]
title = "Bench approval"
reviewers = [{people}]
timeout = "24h"
editable = ["stage", "owner"]
resume_url = "http://127.0.0.1:{receiver_port}/resume"
""",
        encoding="utf-8",
    )
    return config


async def wait_healthy(port: int, timeout: float = 60.0) -> float:
    """Seconds until /healthz answers 200."""
    start = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        while time.perf_counter() - start < timeout:
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return time.perf_counter() - start
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.01)
    raise RuntimeError(f"server on {port} did not become healthy")


@asynccontextmanager
async def process(
    args: list[str], port: int
) -> AsyncIterator[tuple[subprocess.Popen[bytes], float]]:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        started = await wait_healthy(port) if "--port" in args else 0.0
        yield proc, started
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def connector_args(config: Path, port: int) -> list[str]:
    return [PY, "-m", "connector", "serve", "--config", str(config), "--port", str(port)]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- wrk ---------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    print("installing wrk from Debian's packages …", flush=True)
    subprocess.run(["apt-get", "install", "-y", "wrk"], check=False, capture_output=True)
    if not shutil.which("wrk"):
        subprocess.run(["apt-get", "update"], check=False, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, capture_output=True)
    return shutil.which("wrk") or "wrk"


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk_command(port: int, *, seconds: int, connections: int) -> list[str]:
    return [
        ensure_wrk(),
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(ROOT / "bench" / "pause.lua"),
        f"http://127.0.0.1:{port}/v1/runs",
    ]


def parse_wrk(output: str) -> dict[str, float]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+(?:us|ms|s))", output, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    return {
        "rps": round(rps, 1),
        "p50_ms": round(_ms(lat["50"]), 2),
        "p99_ms": round(_ms(lat["99"]), 2),
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",  # type: ignore[dict-item]
    }


def run_wrk(port: int, *, seconds: int = WRK_SECONDS, connections: int = 64) -> dict[str, float]:
    command = wrk_command(port, seconds=seconds, connections=connections)
    return parse_wrk(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def run_wrk_together(ports: list[int], *, seconds: int = WRK_SECONDS) -> list[dict[str, float]]:
    """One wrk per port at the same time, the 64 connections split between them."""
    connections = 64 // len(ports)
    runs = [
        subprocess.Popen(
            wrk_command(port, seconds=seconds, connections=connections),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for port in ports
    ]
    return [parse_wrk(run.communicate()[0]) for run in runs]


# -- 1. pause throughput -------------------------------------------------------------------------


async def bench_pause(work: Path) -> dict[str, Any]:
    baseline_port, port = free_port(), free_port()
    async with process([PY, str(ROOT / "bench" / "baseline.py"), str(baseline_port)], 0):
        await wait_healthy_baseline(baseline_port)
        baseline = run_wrk(baseline_port)
    config = write_config(work / "pause")
    async with process(connector_args(config, port), port):
        connector = run_wrk(port)
    return {
        "baseline": baseline,
        "connector": connector,
        "ratio": round(connector["rps"] / baseline["rps"], 3),
        "targets": {"ratio": ">= 0.5", "p99_ms": "<= 25"},
    }


async def wait_healthy_baseline(port: int) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(500):
            try:
                async with session.post(f"http://127.0.0.1:{port}/v1/runs", json={}) as response:
                    if response.status == 201:
                        return
            except aiohttp.ClientError:
                await asyncio.sleep(0.02)
    raise RuntimeError("baseline did not start")


# -- 2. click-to-resume ---------------------------------------------------------------------------


@asynccontextmanager
async def receiver(port: int, arrivals: dict[str, float]) -> AsyncIterator[None]:
    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        arrivals.setdefault(json.loads(body)["run_id"], time.perf_counter())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/resume", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield
    finally:
        await runner.cleanup()


def review_token(run_id: str, reviewer: str, deadline: float) -> str:
    sys.path.insert(0, str(ROOT))
    from connector.links import LinkSigner

    return LinkSigner([SECRET], max_age=90 * 86400).sign(run_id, reviewer, deadline)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def click_latency(
    pause_base: str, decide_base: str, arrivals: dict[str, float]
) -> dict[str, Any]:
    """Pause CLICKS runs on one instance, then approve them on the review page of another (or
    the same) at 100 decisions per second; milliseconds from click to the receiver."""
    async with aiohttp.ClientSession(headers=AUTH) as session:
        runs = []
        for i in range(CLICKS):
            async with session.post(
                f"{pause_base}/v1/runs",
                json={"flow": "bench", "action": {"stage": "Proposal", "n": i}},
            ) as response:
                runs.append(await response.json())
        sent: dict[str, float] = {}
        statuses: list[int] = []

        async def click(run: dict[str, Any]) -> None:
            token = review_token(run["id"], "ann@example.com", time.time() + 3600)
            sent[run["id"]] = time.perf_counter()
            async with session.post(
                f"{decide_base}/r/{token}", data={"choice": "approve"}
            ) as response:
                statuses.append(response.status)

        tasks = []
        start = time.perf_counter()
        for i, run in enumerate(runs):  # 100 decisions per second, evenly spaced
            await asyncio.sleep(max(0.0, start + i / 100 - time.perf_counter()))
            tasks.append(asyncio.create_task(click(run)))
        await asyncio.gather(*tasks)
        until = time.perf_counter() + 30
        while len(arrivals) < len(runs) and time.perf_counter() < until:
            await asyncio.sleep(0.05)
    latencies = [(arrivals[r] - sent[r]) * 1000 for r in sent if r in arrivals]
    return {
        "decisions": len(sent),
        "delivered": len(latencies),
        "non_200": sum(1 for s in statuses if s != 200),
        "p50_ms": round(statistics.median(latencies), 2) if latencies else None,
        "p99_ms": round(pct(latencies, 0.99), 2) if latencies else None,
    }


async def bench_click(work: Path) -> dict[str, Any]:
    port, receiver_port = free_port(), free_port()
    config = write_config(work / "click", receiver_port=receiver_port)
    arrivals: dict[str, float] = {}
    async with receiver(receiver_port, arrivals), process(connector_args(config, port), port):
        base = f"http://127.0.0.1:{port}"
        result = await click_latency(base, base, arrivals)
    return {**result, "targets": {"p50_ms": "<= 5", "p99_ms": "<= 25"}}


# -- 3. scale -----------------------------------------------------------------------------------


def seed(db_path: Path, count: int, *, deadline: float, resume_port: int) -> None:
    """Insert `count` pending runs straight into SQLite (the schema comes from the app)."""
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    now = time.time()
    doc = json.dumps(
        {
            "title": "Seeded",
            "summary": None,
            "action": {"stage": "Proposal"},
            "context": {},
            "risk": {},
            "editable": [],
            "requested_by": None,
            "metadata": {},
            "on_timeout": "reject",
            "required_approvals": 1,
        }
    )
    resume = json.dumps({"url": f"http://127.0.0.1:{resume_port}/resume", "headers": {}})
    sys.path.insert(0, str(ROOT))
    from ulid import ULID

    batch = []
    for _ in range(count):
        batch.append((str(ULID()), "bench", "pending", now, deadline, doc, resume))
        if len(batch) == 50_000:
            conn.executemany(
                "INSERT INTO runs (id, flow, status, created_at, deadline, doc,"
                " resume) VALUES (?,?,?,?,?,?,?)",
                batch,
            )
            batch.clear()
    if batch:
        conn.executemany(
            "INSERT INTO runs (id, flow, status, created_at, deadline, doc, resume)"
            " VALUES (?,?,?,?,?,?,?)",
            batch,
        )
    conn.commit()
    conn.close()


async def create_schema(config: Path) -> None:
    port = free_port()
    async with process(connector_args(config, port), port):
        pass


async def bench_scale(work: Path, empty_p99: float) -> dict[str, Any]:
    directory = work / "scale"
    port, receiver_port = free_port(), free_port()
    config = write_config(directory, receiver_port=receiver_port)
    await create_schema(config)
    db = directory / "var" / "connector.db"
    started = time.perf_counter()
    seed(db, SCALE_RUNS, deadline=time.time() + 7 * 86400, resume_port=receiver_port)
    seeded_in = time.perf_counter() - started
    async with process(connector_args(config, port), port) as (proc, startup):
        memory_idle = rss_mb(proc.pid)
        loaded = run_wrk(port)
        memory_loaded = rss_mb(proc.pid)
    # 100,000 runs whose deadline passes at once, with the service running.
    directory2 = work / "deadlines"
    config2 = write_config(directory2, receiver_port=receiver_port)
    await create_schema(config2)
    arrivals: dict[str, float] = {}
    deadline = time.time() + 15
    seed(
        directory2 / "var" / "connector.db",
        DEADLINE_RUNS,
        deadline=deadline,
        resume_port=receiver_port,
    )
    port2 = free_port()
    async with receiver(receiver_port, arrivals), process(connector_args(config2, port2), port2):
        await asyncio.sleep(max(0.0, deadline - time.time()))
        passed = time.perf_counter()
        limit = passed + 120
        while len(arrivals) < DEADLINE_RUNS and time.perf_counter() < limit:
            await asyncio.sleep(0.1)
        all_in = (max(arrivals.values()) - passed) if arrivals else float("nan")
    return {
        "pending_runs": SCALE_RUNS,
        "seeded_seconds": round(seeded_in, 1),
        "startup_seconds": round(startup, 3),
        "rss_mb_idle": round(memory_idle, 1),
        "rss_mb_after_load": round(memory_loaded, 1),
        "pause": loaded,
        "p99_vs_empty": round(loaded["p99_ms"] / empty_p99, 2) if empty_p99 else None,
        "deadline_runs": DEADLINE_RUNS,
        "deadline_delivered": len(arrivals),
        "deadline_seconds_to_all_delivered": round(all_in, 1),
        "targets": {
            "p99_vs_empty": "<= 1.5",
            "startup_seconds": "<= 2",
            "rss_mb": "<= 200",
            "deadline_seconds": "<= 60",
        },
    }


# -- 4. fan-out ----------------------------------------------------------------------------------


async def bench_fanout(work: Path) -> dict[str, Any]:
    try:
        from aiosmtpd.controller import Controller
    except ImportError:
        return {"skipped": "aiosmtpd not installed (make test installs it)"}

    class Counter:
        def __init__(self) -> None:
            self.messages = 0
            self.sessions = 0
            self.last = 0.0

        async def handle_EHLO(self, server, session, envelope, hostname, responses):
            self.sessions += 1
            session.host_name = hostname
            return responses

        async def handle_DATA(self, server, session, envelope):
            self.messages += 1
            self.last = time.perf_counter()
            return "250 OK"

    counter = Counter()
    smtp_port = free_port()
    controller = Controller(counter, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    try:
        port = free_port()
        config = write_config(work / "fanout", smtp_port=smtp_port, reviewers=2)
        try:
            async with process(connector_args(config, port), port):
                start = time.perf_counter()
                async with aiohttp.ClientSession(headers=AUTH) as session:

                    async def pause(i: int) -> None:
                        async with session.post(
                            f"http://127.0.0.1:{port}/v1/runs",
                            json={"flow": "bench", "action": {"n": i}},
                        ):
                            pass

                    await asyncio.gather(*(pause(i) for i in range(FANOUT_RUNS)))
                until = time.perf_counter() + 120
                while counter.messages < FANOUT_RUNS * 2 and time.perf_counter() < until:
                    await asyncio.sleep(0.05)
        except RuntimeError as exc:
            return {"skipped": f"connector did not start with [smtp]: {exc}"}
        return {
            "emails": counter.messages,
            "expected": FANOUT_RUNS * 2,
            "smtp_sessions": counter.sessions,
            "seconds_to_all_sent": round(counter.last - start, 2) if counter.messages else None,
        }
    finally:
        controller.stop()


# -- 5. PostgreSQL ----------------------------------------------------------------------------------


@asynccontextmanager
async def pg_database() -> AsyncIterator[str | None]:
    """A fresh schema on the PostgreSQL at PG_URL (dropped afterwards); None when none answers."""
    try:
        import asyncpg
    except ImportError:
        yield None
        return
    schema = f"bench_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        conn = await asyncpg.connect(PG_URL, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError):
        yield None
        return
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
        yield f"{PG_URL}{'&' if '?' in PG_URL else '?'}search_path={schema}"
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()


async def wait_decided_elsewhere(base_a: str, base_b: str, rounds: int) -> dict[str, Any]:
    """Long poll on A, decide through the API on B: ms from sending the decision to B until A's
    long poll answers (and, for comparison, until B itself answers)."""
    woken: list[float] = []
    answered: list[float] = []
    async with aiohttp.ClientSession(headers=AUTH) as session:
        for i in range(rounds):
            async with session.post(
                f"{base_a}/v1/runs", json={"flow": "bench", "action": {"n": i}}
            ) as response:
                run_id = (await response.json())["id"]

            async def wait(run_id: str) -> float:
                async with session.get(f"{base_a}/v1/runs/{run_id}/wait?timeout=30") as answer:
                    await answer.read()
                return time.perf_counter()

            waiting = asyncio.create_task(wait(run_id))
            await asyncio.sleep(0.02)  # the long poll is parked on A
            sent = time.perf_counter()
            async with session.post(
                f"{base_b}/v1/runs/{run_id}/decision",
                json={"decision": "approve", "reviewer": "ann@example.com"},
            ) as response:
                await response.read()
                answered.append((time.perf_counter() - sent) * 1000)
            woken.append((await waiting - sent) * 1000)
    return {
        "rounds": rounds,
        "p50_ms": round(statistics.median(woken), 2),
        "p99_ms": round(pct(woken, 0.99), 2),
        "decision_answer_p50_ms": round(statistics.median(answered), 2),
    }


async def bench_postgres(work: Path, pause: dict[str, Any]) -> dict[str, Any]:
    """Pause throughput on PostgreSQL with one and two instances, as ratios to the baseline of
    section 1 (and to SQLite's figure there); click-to-resume and long-poll wake-up across
    instances."""
    baseline = pause["baseline"]
    # A fresh schema per phase: a backlog left by one phase (notifications of the runs wrk
    # created) would otherwise slow the next one down.
    async with pg_database() as url:
        if url is None:
            return {"skipped": f"no PostgreSQL server answers at {PG_URL}"}
        port_a, port_b = free_port(), free_port()
        config = write_config(work / "pg1", database_url=url)
        async with process(connector_args(config, port_a), port_a):
            one = run_wrk(port_a)
    async with pg_database() as url:
        config = write_config(work / "pg2", database_url=url or "")
        async with (
            process(connector_args(config, port_a), port_a),
            process(connector_args(config, port_b), port_b),
        ):
            each = run_wrk_together([port_a, port_b])
    async with pg_database() as url:
        receiver_port = free_port()
        config = write_config(work / "pg3", receiver_port=receiver_port, database_url=url or "")
        arrivals: dict[str, float] = {}
        async with (
            receiver(receiver_port, arrivals),
            process(connector_args(config, port_a), port_a),
            process(connector_args(config, port_b), port_b),
        ):
            base_a, base_b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
            click = await click_latency(base_a, base_b, arrivals)
            wake = await wait_decided_elsewhere(base_a, base_b, 50 if QUICK else 200)
    two_rps = round(sum(r["rps"] for r in each), 1)
    return {
        "one_instance": one,
        "one_ratio": round(one["rps"] / baseline["rps"], 3),
        "one_vs_sqlite": round(one["rps"] / pause["connector"]["rps"], 3),
        "two_instances": {"rps": two_rps, "each": each},
        "two_ratio": round(two_rps / baseline["rps"], 3),
        "click_across_instances": click,
        "wait_wakes_across_instances": wake,
        "note": "two instances, wrk, PostgreSQL and the baseline share this machine's CPUs",
    }


# -- main ---------------------------------------------------------------------------------------


async def main() -> None:
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "quick": QUICK,
        },
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with tempfile.TemporaryDirectory(prefix="hitl-bench-") as tmp:
        work = Path(tmp)
        print("1/5 pause throughput …", flush=True)
        results["pause"] = await bench_pause(work)
        print("2/5 click-to-resume latency …", flush=True)
        results["click_to_resume"] = await bench_click(work)
        print("3/5 scale …", flush=True)
        results["scale"] = await bench_scale(work, results["pause"]["connector"]["p99_ms"])
        print("4/5 notification fan-out …", flush=True)
        results["fanout"] = await bench_fanout(work)
        print("5/5 PostgreSQL, one and two instances …", flush=True)
        results["postgres"] = await bench_postgres(work, results["pause"])
    out = ROOT / "bench" / "results.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"\nwritten to {out}")


def print_table(r: dict[str, Any]) -> None:
    p, c, s, f = r["pause"], r["click_to_resume"], r["scale"], r["fanout"]
    rows = [
        (
            "pause req/s (64 conns)",
            f"{p['connector']['rps']}",
            f"baseline {p['baseline']['rps']}",
            f"ratio {p['ratio']} (target >= 0.5)",
        ),
        (
            "pause p50 / p99 ms",
            f"{p['connector']['p50_ms']} / {p['connector']['p99_ms']}",
            f"baseline {p['baseline']['p50_ms']} / {p['baseline']['p99_ms']}",
            "p99 target <= 25",
        ),
        (
            "click-to-resume p50 / p99 ms",
            f"{c['p50_ms']} / {c['p99_ms']}",
            f"{c['delivered']}/{c['decisions']} delivered",
            "targets <= 5 / <= 25",
        ),
        (
            f"pause p99 with {s['pending_runs']:,} pending",
            f"{s['pause']['p99_ms']} ms",
            f"x{s['p99_vs_empty']} of empty",
            "target <= 1.5x",
        ),
        (
            "start-up / RSS",
            f"{s['startup_seconds']} s / {s['rss_mb_after_load']} MB",
            f"idle {s['rss_mb_idle']} MB",
            "targets <= 2 s / <= 200 MB",
        ),
        (
            f"{s['deadline_runs']:,} deadlines at once",
            f"{s['deadline_seconds_to_all_delivered']} s",
            f"{s['deadline_delivered']} delivered",
            "target <= 60 s",
        ),
        (
            "fan-out emails",
            str(f.get("emails", f.get("skipped"))),
            f"sessions {f.get('smtp_sessions', '-')}",
            f"{f.get('seconds_to_all_sent', '-')} s",
        ),
    ]
    pg = r.get("postgres", {})
    if "skipped" in pg:
        rows.append(("PostgreSQL", "skipped", pg["skipped"], ""))
    elif pg:
        one, two, click, wake = (
            pg["one_instance"],
            pg["two_instances"],
            pg["click_across_instances"],
            pg["wait_wakes_across_instances"],
        )
        rows += [
            (
                "PostgreSQL pause req/s, 1 instance",
                f"{one['rps']} (p99 {one['p99_ms']} ms)",
                f"ratio {pg['one_ratio']} of baseline",
                f"{pg['one_vs_sqlite']} of SQLite",
            ),
            (
                "PostgreSQL pause req/s, 2 instances",
                f"{two['rps']}",
                f"ratio {pg['two_ratio']} of baseline",
                "same 2-core machine",
            ),
            (
                "click-to-resume, pause A, click B",
                f"{click['p50_ms']} / {click['p99_ms']} ms",
                f"{click['delivered']}/{click['decisions']} delivered",
                "p50 / p99",
            ),
            (
                "long poll on A, decided on B",
                f"{wake['p50_ms']} / {wake['p99_ms']} ms",
                f"{wake['rounds']} rounds",
                "p50 / p99",
            ),
        ]
    width = [max(len(str(row[i])) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(str(cell).ljust(width[i]) for i, cell in enumerate(row)))


if __name__ == "__main__":
    asyncio.run(main())
