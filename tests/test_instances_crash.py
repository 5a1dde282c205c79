"""Two connector processes on one PostgreSQL: shared load, then one is killed with SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
from pathlib import Path

import aiohttp
import pytest

from .conftest import API_KEY, eventually
from .receiver import Receiver, start_receiver
from .test_crash import start_server
from .test_delivery import free_port

pytestmark = pytest.mark.slow
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def write_config(path: Path, database_url: str) -> None:
    path.write_text(
        f"""
database_url = "{database_url}"
data_dir = "{path.parent / "var"}"
api_keys = ["{API_KEY}"]
resume_allow = ["127.0.0.1/32"]
retry_base_delay = "0.05s"
delivery_timeout = "2s"
job_lease = "8s"
log_level = "WARNING"

[flows.news]
reviewers = [{{ email = "ann@example.com" }}]
timeout = "4s"
""",
        encoding="utf-8",
    )


class Load:
    """Pauses on one instance and decisions on another, remembering what was acknowledged."""

    def __init__(self, bases: list[str], resume_url: str) -> None:
        self.bases = bases
        self.alive = set(bases)
        self.resume_url = resume_url
        self.runs: set[str] = set()
        self.decisions: set[str] = set()
        self.served: dict[str, int] = dict.fromkeys(bases, 0)

    async def worker(self, stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession(headers=AUTH) as session:
            while not stop.is_set() and self.alive:
                pause_on, decide_on = random.sample(self.bases, 2)
                await self._pause(session, pause_on)
                if self.runs and random.random() < 0.5:
                    await self._decide(session, decide_on, random.choice(sorted(self.runs)))

    async def _pause(self, session: aiohttp.ClientSession, base: str) -> None:
        if base not in self.alive:
            return
        body = {"flow": "news", "action": {"subject": "s"}, "resume": {"url": self.resume_url}}
        try:
            async with session.post(f"{base}/v1/runs", json=body) as response:
                if response.status == 201:
                    self.runs.add((await response.json())["id"])
                    self.served[base] += 1
        except (TimeoutError, aiohttp.ClientError):
            self.alive.discard(base)

    async def _decide(self, session: aiohttp.ClientSession, base: str, run_id: str) -> None:
        if base not in self.alive:
            return
        body = {"decision": "approve", "reviewer": "ann@example.com"}
        try:
            async with session.post(f"{base}/v1/runs/{run_id}/decision", json=body) as response:
                if response.status == 200:
                    self.decisions.add(run_id)
                    self.served[base] += 1
        except (TimeoutError, aiohttp.ClientError):
            self.alive.discard(base)

    async def run_for(self, seconds: float, *, workers: int = 8) -> None:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(self.worker(stop)) for _ in range(workers)]
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(*tasks)


def deliveries(receiver: Receiver) -> dict[str, list[str]]:
    """The webhook-ids the receiver got, by run."""
    found: dict[str, list[str]] = {}
    for call in receiver.received:
        found.setdefault(json.loads(call.body)["run_id"], []).append(call.headers["webhook-id"])
    return found


async def all_delivered(receiver: Receiver, runs: set[str], base: str) -> dict[str, list[str]]:
    async def check() -> bool:
        return runs <= set(deliveries(receiver))

    try:
        await eventually(check, timeout=60)
    except TimeoutError:
        missing = sorted(runs - set(deliveries(receiver)))
        async with (
            aiohttp.ClientSession(headers=AUTH) as session,
            session.get(f"{base}/v1/runs/{missing[0]}") as response,
        ):
            detail = await response.json()
        raise AssertionError(f"{len(missing)} undelivered, e.g. {detail}") from None
    return deliveries(receiver)


async def test_two_instances_share_the_load_and_survive_a_kill(pg_url, tmp_path):
    """Two processes share pauses and decisions; each decision is delivered exactly once while
    both run, and at least once (same webhook-id) after one is killed with SIGKILL."""
    config = tmp_path / "connector.toml"
    write_config(config, pg_url)
    ports = [free_port(), free_port()]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    async with start_receiver() as receiver:
        a = await start_server(config, ports[0])
        b = await start_server(config, ports[1])
        try:
            # 1. Both instances up: every run decided (by Ann or its 4 s deadline) is delivered
            # once — a job run by both instances would arrive twice.
            normal = Load(bases, f"{receiver.url}/hook")
            await normal.run_for(1.5)
            assert all(normal.served.values()), normal.served
            delivered = await all_delivered(receiver, normal.runs, bases[1])
            twice = {run: ids for run, ids in delivered.items() if len(ids) > 1}
            assert not twice, f"{len(twice)} delivered twice, e.g. {list(twice.items())[:2]}"
            assert len(normal.runs) > 20 and normal.decisions

            # 2. Load again, and A dies mid-way: its leased jobs and its runs' deadlines are
            # taken over by B.
            before = len(receiver.received)
            killed = Load(bases, f"{receiver.url}/hook")
            load = asyncio.create_task(killed.run_for(2.0))
            await asyncio.sleep(random.uniform(0.4, 0.9))
            os.kill(a.pid, signal.SIGKILL)
            await a.wait()
            await load
            runs = normal.runs | killed.runs
            decisions = normal.decisions | killed.decisions
            async with aiohttp.ClientSession(headers=AUTH) as session:
                for run_id in runs:
                    async with session.get(f"{bases[1]}/v1/runs/{run_id}") as response:
                        assert response.status == 200, run_id
                        run = await response.json()
                    if run_id in decisions:
                        assert run["status"] == "approved", run
                        assert run["decision"]["decided_by"] == "api", run
            delivered = await all_delivered(receiver, runs, bases[1])
            assert len(receiver.received) > before
            assert {run: ids for run, ids in delivered.items() if len(set(ids)) > 1} == {}
        finally:
            for process in (a, b):
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
                    await asyncio.wait_for(process.wait(), 15)
