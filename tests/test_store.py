"""The Store interface, run against both backends: SQLite and PostgreSQL behave the same."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from connector.store import (
    NewJob,
    PostgresStore,
    RunRecord,
    SQLiteStore,
    Store,
    SubscriptionRecord,
    TelegramButton,
    TelegramMessage,
    migrate,
    open_store,
)
from connector.store.pg_schema import PG_MIGRATIONS, lock_key
from connector.store.schema import MIGRATIONS

from .conftest import eventually
from .pg import pg_schema

HOSTILE = "".join(chr(c) for c in range(32)) + "\u2028\u202e\ufeff💥 é ß 中文"
KINDS = ("resume", "email", "escalate")

OpenStore = Callable[[], AbstractAsyncContextManager[Store]]


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database URL of each backend, empty until a store opens it."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
    else:
        async with pg_schema() as url:
            yield url


@pytest.fixture
def opener(database: str) -> OpenStore:
    """Opens another store on the same database (another instance, for PostgreSQL)."""
    return lambda: open_store(database, pool_size=4)


@pytest.fixture
async def store(opener: OpenStore) -> AsyncIterator[Store]:
    """An open store of each backend."""
    async with opener() as opened:
        yield opened


def make_run(run_id: str, **changes: Any) -> RunRecord:
    now = time.time()
    values: dict[str, Any] = {
        "id": run_id,
        "flow": "news",
        "status": "pending",
        "created_at": now,
        "deadline": now + 3600,
        "doc": {"title": "Send it", "action": {"subject": "hi", "n": 1.5}, "z": 1, "a": 2},
        "resume": {"url": "http://127.0.0.1:9/hook", "headers": {"X-A": "1"}},
    }
    values.update(changes)
    return RunRecord(**values)


def job(job_id: str, run_id: str | None = "r1", kind: str = "resume", **changes: Any) -> NewJob:
    return NewJob(id=job_id, kind=kind, run_id=run_id, **changes)


def decision(decided_by: str = "reviewer", **changes: Any) -> dict[str, Any]:
    return {"decision": "approved", "decided_by": decided_by, "edited": False, **changes}


async def test_run_round_trips_exactly(store):
    """A stored run reads back field for field, hostile text and key order included."""
    run = make_run(
        "r1",
        idempotency_key=HOSTILE,
        doc={"title": HOSTILE, "action": {HOSTILE: HOSTILE}, "b": None, "a": [1, 2.5]},
    )
    stored, created = await store.create_run(run, [], [("created", {"source": HOSTILE})])
    assert created and stored == run
    got = await store.get_run("r1")
    assert got == run
    assert list(got.doc) == ["title", "action", "b", "a"]
    assert await store.get_run("nope") is None
    assert [(e.kind, e.detail) for e in await store.events("r1")] == [
        ("created", {"source": HOSTILE})
    ]


async def test_idempotency_key_returns_the_first_run(store):
    """A second pause with the same key gets the first run; its jobs and events are not added."""
    first = make_run("r1", idempotency_key="k")
    await store.create_run(first, [job("j1")], [("created", {})])
    again, created = await store.create_run(
        make_run("r2", idempotency_key="k"), [job("j2", "r2")], [("created", {})]
    )
    assert not created and again == first
    assert await store.get_run("r2") is None
    assert [j.id for j in await store.jobs_for_run("r2", "resume")] == []
    other_flow, created = await store.create_run(
        make_run("r3", idempotency_key="k", flow="other"), [], []
    )
    assert created and other_flow.id == "r3"


async def test_concurrent_pauses_with_one_key_create_one_run(opener):
    """Twenty simultaneous pauses with one key, through two stores: one run, one job."""
    async with opener() as a, opener() as b:
        results = await asyncio.gather(
            *(
                (a if i % 2 else b).create_run(
                    make_run(f"r{i:02}", idempotency_key="same"), [job(f"j{i}", f"r{i:02}")], []
                )
                for i in range(20)
            )
        )
        assert sum(created for _, created in results) == 1
        assert len({run.id for run, _ in results}) == 1
        winner = results[0][0].id
        assert [j.id for j in await a.jobs_for_run(winner, "resume")] == [f"j{int(winner[1:])}"]
        assert len(await a.list_runs(status=None, flow=None, limit=100, before=None)) == 1


async def test_list_runs_filters_and_pages_newest_first(store):
    """Runs list newest id first, filtered by status and flow, paged with `before`."""
    for i, flow in enumerate(["a", "b", "a", "a"]):
        await store.create_run(make_run(f"01J{i}", flow=flow), [], [])
    await store.decide(
        "01J2", status="rejected", decision=decision(), decided_at=1.0, jobs=[], events=[]
    )

    async def ids(**kw: Any) -> list[str]:
        args = {"status": None, "flow": None, "limit": 10, "before": None, **kw}
        return [r.id for r in await store.list_runs(**args)]

    assert await ids() == ["01J3", "01J2", "01J1", "01J0"]
    assert await ids(flow="a") == ["01J3", "01J2", "01J0"]
    assert await ids(status="pending", flow="a") == ["01J3", "01J0"]
    assert await ids(before="01J2", limit=1) == ["01J1"]
    assert await ids(status="rejected") == ["01J2"]
    assert await ids(before="01J0") == []


async def test_decide_records_once_with_its_jobs_and_events(store):
    """The decision, its events and its jobs are written together, only by the first call."""
    await store.create_run(make_run("r1"), [], [])
    payload = decision(edited=True, comment=HOSTILE)
    won = await store.decide(
        "r1",
        status="approved",
        decision=payload,
        decided_at=123.25,
        jobs=[job("msg_1", body=b"\x00{}"), job("c1", kind="email", next_at=500.0)],
        events=[("decided", {"by": "ann"}), ("note", {"n": 2})],
    )
    assert won
    run = await store.get_run("r1")
    assert (run.status, run.decision, run.decided_at) == ("approved", payload, 123.25)
    (resume,) = await store.jobs_for_run("r1", "resume")
    assert (resume.body, resume.next_at, resume.created_at, resume.status) == (
        b"\x00{}",
        123.25,
        123.25,
        "pending",
    )
    (email,) = await store.jobs_for_run("r1", "email")
    assert email.next_at == 500.0
    assert [e.kind for e in await store.events("r1")] == ["decided", "note"]
    lost = await store.decide(
        "r1",
        status="rejected",
        decision=decision(),
        decided_at=124.0,
        jobs=[job("msg_2")],
        events=[("decided", {})],
    )
    assert not lost
    assert (await store.get_run("r1")).status == "approved"
    assert len(await store.jobs_for_run("r1", "resume")) == 1
    assert len(await store.events("r1")) == 2
    assert not await store.decide(
        "missing", status="approved", decision=decision(), decided_at=1.0, jobs=[], events=[]
    )


async def test_first_decision_wins_under_concurrency(opener):
    """Forty racing decisions through two stores: exactly one wins and only its job exists."""
    async with opener() as a, opener() as b:
        await a.create_run(make_run("r1"), [], [])
        results = await asyncio.gather(
            *(
                (a if i % 2 else b).decide(
                    "r1",
                    status="approved" if i % 3 else "rejected",
                    decision=decision(comment=str(i)),
                    decided_at=float(i),
                    jobs=[job(f"msg_{i}")],
                    events=[("decided", {"i": i})],
                )
                for i in range(40)
            )
        )
        assert sum(results) == 1
        winner = results.index(True)
        run = await b.get_run("r1")
        assert run.decision["comment"] == str(winner)
        assert [j.id for j in await a.jobs_for_run("r1", "resume")] == [f"msg_{winner}"]
        assert [e.detail for e in await a.events("r1")] == [{"i": winner}]


async def test_n_of_m_approvals(store):
    """Approvals count per distinct reviewer; the N-th decides; later ones find it decided."""
    await store.create_run(make_run("r1"), [], [])

    async def approve(reviewer: str) -> Any:
        return await store.record_approval(
            "r1",
            reviewer,
            "email",
            required=2,
            decision=decision(),
            decided_at=time.time(),
            jobs=[job(f"msg_{reviewer}")],
            events=[("decided", {"by": reviewer})],
        )

    first = await approve("ann")
    assert (first.result, first.approvals) == ("counted", 1)
    again = await approve("ann")
    assert (again.result, again.approvals) == ("duplicate", 1)
    second = await approve("bob")
    assert (second.result, second.approvals) == ("decided", 2)
    late = await approve("cid")
    assert (late.result, late.approvals) == ("not_pending", 0)
    assert await store.approvals("r1") == ["ann", "bob"]
    assert (await store.get_run("r1")).status == "approved"
    assert [j.id for j in await store.jobs_for_run("r1", "resume")] == ["msg_bob"]
    assert [(e.kind, e.detail) for e in await store.events("r1")] == [
        ("approval", {"reviewer": "ann", "channel": "email", "approvals": 1, "required": 2}),
        ("decided", {"by": "bob"}),
    ]
    missing = await store.record_approval(
        "nope", "ann", "email", required=2, decision={}, decided_at=1.0, jobs=[], events=[]
    )
    assert missing.result == "not_pending"


async def test_concurrent_approvals_decide_exactly_once(opener):
    """Six reviewers approving a 3-of-6 run at once, through two stores: one decision."""
    async with opener() as a, opener() as b:
        await a.create_run(make_run("r1"), [], [])
        outcomes = await asyncio.gather(
            *(
                (a if i % 2 else b).record_approval(
                    "r1",
                    f"rev{i}",
                    "email",
                    required=3,
                    decision=decision(),
                    decided_at=time.time(),
                    jobs=[job(f"msg_{i}")],
                    events=[],
                )
                for i in range(6)
            )
        )
        results = sorted(o.result for o in outcomes)
        assert results.count("decided") == 1
        assert results.count("counted") == 2
        assert results.count("not_pending") == 3
        assert len(await a.approvals("r1")) == 3
        assert len(await a.jobs_for_run("r1", "resume")) == 1


async def test_mark_escalated_once_and_only_while_pending(store):
    """Escalation is marked once, with its jobs and events; never on a decided run."""
    await store.create_run(make_run("r1"), [], [])
    await store.create_run(make_run("r2"), [], [])
    assert await store.mark_escalated(
        "r1", 50.5, [job("e1", kind="email")], [("escalated", {"to": ["x"]})]
    )
    assert not await store.mark_escalated("r1", 51.0, [job("e2", kind="email")], [])
    assert (await store.get_run("r1")).escalated_at == 50.5
    assert [j.id for j in await store.jobs_for_run("r1", "email")] == ["e1"]
    assert [e.kind for e in await store.events("r1")] == ["escalated"]
    await store.decide(
        "r2", status="approved", decision=decision(), decided_at=1.0, jobs=[], events=[]
    )
    assert not await store.mark_escalated("r2", 52.0, [], [])
    assert (await store.get_run("r2")).escalated_at is None


async def job_by_id(store: Store, job_id: str) -> Any:
    return next(j for j in await store.jobs_for_run("r1", "resume") if j.id == job_id)


async def test_jobs_claim_lease_finish_and_requeue(store):
    """Due jobs of the asked kinds are claimed once per lease; outcomes are recorded."""
    now = 1000.0
    await store.create_run(
        make_run("r1", created_at=now),
        [
            job("a", next_at=now - 5),
            job("b", next_at=now - 1, kind="email"),
            job("c", next_at=now + 60),
            job("d", kind="other", next_at=now - 10),
        ],
        [],
    )
    claimed = await store.claim_jobs(now, limit=10, lease=30, kinds=KINDS)
    assert sorted(j.id for j in claimed) == ["a", "b"]
    assert await store.claim_jobs(now + 29, limit=10, lease=30, kinds=KINDS) == []
    assert await store.next_job_at(KINDS) == now + 30
    # An expired lease makes the job claimable again; the claim reports when it was due.
    retaken = await store.claim_jobs(now + 30, limit=10, lease=30, kinds=("resume",))
    assert [(j.id, j.next_at) for j in retaken] == [("a", now + 30)]
    a = retaken[0]
    await store.finish_job(
        a,
        status="pending",
        next_at=now + 40,
        last_status=503,
        last_error=f"HTTP 503: {HOSTILE}",
        event=("delivery", {"attempt": 1}),
    )
    a_now = await job_by_id(store, "a")
    assert (a_now.status, a_now.attempts, a_now.next_at, a_now.last_status) == (
        "pending",
        1,
        now + 40,
        503,
    )
    assert a_now.last_error == f"HTTP 503: {HOSTILE}"
    assert [e.kind for e in await store.events("r1")] == ["delivery"]
    await store.finish_job(
        a_now, status="pending", next_at=now + 45, last_status=503, last_error="x", attempted=False
    )
    again = await store.claim_jobs(now + 45, limit=10, lease=30, kinds=("resume",))
    assert [(j.id, j.attempts) for j in again] == [("a", 1)]
    await store.finish_job(
        again[0], status="done", next_at=now + 45, last_status=200, last_error=None
    )
    later = await store.claim_jobs(now + 1000, limit=10, lease=30, kinds=("resume",))
    assert [j.id for j in later] == ["c"]
    done = await job_by_id(store, "a")
    assert (done.status, done.attempts, done.last_error) == ("done", 2, None)
    await store.requeue_job("a", now + 2000)
    requeued = await store.claim_jobs(now + 2000, limit=10, lease=30, kinds=("resume",))
    assert [(j.id, j.created_at, j.status) for j in requeued if j.id == "a"] == [
        ("a", now + 2000, "pending")
    ]
    assert await store.next_job_at(("nothing",)) is None


async def test_closing_a_store_hands_back_its_leases(opener):
    """Jobs a store still holds when it closes are free at once for the other stores."""
    async with opener() as other:
        now = time.time()
        async with opener() as closing:
            await closing.create_run(
                make_run("r1"), [job("a", next_at=now - 9), job("b", next_at=now - 9)], []
            )
            (held,) = await closing.claim_jobs(now, limit=1, lease=600, kinds=KINDS)
            (kept,) = await other.claim_jobs(now, limit=1, lease=600, kinds=KINDS)
        again = await other.claim_jobs(time.time() + 1, limit=5, lease=600, kinds=KINDS)
        assert [j.id for j in again] == [held.id]
        assert kept.id != held.id


async def test_next_job_at_is_the_earliest_due_or_lease_end(store):
    """The runner sleeps until the earliest pending job is due or its lease ends."""
    assert await store.next_job_at(KINDS) is None
    await store.create_run(
        make_run("r1"), [job("a", next_at=100.0), job("b", next_at=300.0), job("c", kind="x")], []
    )
    assert await store.next_job_at(KINDS) == 100.0
    await store.claim_jobs(150.0, limit=1, lease=500.0, kinds=KINDS)
    assert await store.next_job_at(KINDS) == 300.0
    assert await store.next_job_at(("x",)) is not None


async def test_two_stores_never_claim_one_job_twice(opener):
    """Two stores claiming concurrently split the due jobs between them, none twice."""
    async with opener() as a, opener() as b:
        jobs = [job(f"j{i:03}", next_at=1.0) for i in range(200)]
        await a.create_run(make_run("r1"), jobs, [])
        claims = await asyncio.gather(
            *(
                (a if i % 2 else b).claim_jobs(10.0, limit=7, lease=60, kinds=KINDS)
                for i in range(40)
            )
        )
        ids = [j.id for claim in claims for j in claim]
        assert len(ids) == len(set(ids)) == 200


async def test_events_keep_their_order(store):
    """Audit events come back in the order they were written."""
    await store.create_run(make_run("r1"), [], [("created", {}), ("rule", {"r": 1})])
    for i in range(5):
        await store.add_event("r1", "note", {"i": i, "t": HOSTILE})
    events = await store.events("r1")
    assert [e.kind for e in events] == ["created", "rule"] + ["note"] * 5
    assert [e.detail.get("i") for e in events[2:]] == [0, 1, 2, 3, 4]
    assert await store.events("other") == []


async def test_due_runs_and_next_deadline(store):
    """Pending runs past their deadline come earliest first; decided runs never."""
    assert await store.next_deadline() is None
    for i, deadline in enumerate([30.0, 10.0, 20.0, 99.0]):
        await store.create_run(make_run(f"r{i}", deadline=deadline), [], [])
    await store.decide(
        "r1", status="rejected", decision=decision(), decided_at=1.0, jobs=[], events=[]
    )
    assert await store.next_deadline() == 20.0
    assert [r.id for r in await store.due_runs(50.0, 10)] == ["r2", "r0"]
    assert [r.id for r in await store.due_runs(50.0, 1)] == ["r2"]
    assert await store.due_runs(5.0, 10) == []


async def test_flow_counts(store):
    """Flow statistics count statuses, deciders, edits and shadow-rule agreement."""
    since = 1000.0
    shadow_yes = {"policy": {"mode": "shadow", "would_approve": True}}
    shadow_no = {"policy": {"mode": "shadow", "would_approve": False}}
    rows = [
        ("a1", shadow_yes, "approved", decision("reviewer"), 1010.0),
        ("a2", shadow_yes, "approved", decision("reviewer", edited=True), 1030.0),
        ("a3", shadow_no, "rejected", decision("api"), 1005.0),
        ("a4", {}, "approved", decision("timeout"), 2000.0),
        ("a5", {}, None, None, None),
    ]
    for run_id, extra, status, payload, decided_at in rows:
        doc = {"title": "t", "action": {}, **extra}
        await store.create_run(make_run(run_id, created_at=since + 1, doc=doc), [], [])
        if status:
            await store.decide(
                run_id, status=status, decision=payload, decided_at=decided_at, jobs=[], events=[]
            )
    await store.create_run(make_run("old", created_at=since - 1), [], [])
    await store.create_run(make_run("other", flow="x", created_at=since + 1), [], [])
    auto = make_run(
        "auto",
        created_at=since + 1,
        status="approved",
        decision=decision("policy"),
        decided_at=since + 1,
    )
    await store.create_run(auto, [], [])
    counts = await store.flow_counts("news", since)
    assert counts.runs == 6 and counts.pending == 1
    assert counts.by_status == {"approved": 4, "rejected": 1, "pending": 1}
    assert counts.by_decided_by == {"reviewer": 2, "api": 1, "timeout": 1, "policy": 1}
    assert (
        counts.human_decisions,
        counts.human_approved_unchanged,
        counts.human_edited,
        counts.human_rejected,
    ) == (3, 1, 1, 1)
    assert (counts.shadow_decided, counts.shadow_would_approve, counts.shadow_agreed) == (3, 2, 1)
    assert counts.decision_seconds == [4.0, 9.0, 29.0]
    empty = await store.flow_counts("none", 0.0)
    assert (empty.runs, empty.human_decisions, empty.decision_seconds) == (0, 0, [])


async def test_backlog(store):
    """Pending runs, pending jobs by kind, and the oldest due time."""
    assert await store.backlog() == (0, {}, None)
    await store.create_run(
        make_run("r1"),
        [job("a", next_at=50.0), job("b", next_at=40.0, kind="email"), job("c", next_at=60.0)],
        [],
    )
    await store.create_run(make_run("r2"), [], [])
    await store.decide(
        "r2", status="approved", decision=decision(), decided_at=1.0, jobs=[], events=[]
    )
    (claimed,) = await store.claim_jobs(45.0, limit=1, lease=10, kinds=("email",))
    await store.finish_job(claimed, status="done", next_at=45.0, last_status=None, last_error=None)
    assert await store.backlog() == (1, {"resume": 2}, 50.0)


async def test_dev_mailbox(store):
    """Messages are kept with any text and listed newest first."""
    for i in range(3):
        await store.add_mail(
            to=f"p{i}@example.com",
            subject=f"{i} {HOSTILE}",
            text=HOSTILE,
            html=None if i else f"<p>{HOSTILE}</p>",
            headers={"X-Run": str(i)},
        )
    mails = await store.list_mail(2)
    assert [m.to for m in mails] == ["p2@example.com", "p1@example.com"]
    assert mails[0].subject == f"2 {HOSTILE}" and mails[0].text == HOSTILE
    assert mails[0].headers == {"X-Run": "2"} and mails[0].html is None
    oldest = (await store.list_mail(10))[-1]
    assert oldest.html == f"<p>{HOSTILE}</p>" and mails[0].id > oldest.id


async def test_telegram_updates_are_recorded_once(store):
    """A replayed update id queues nothing; another bot's same id is new."""
    update = job("u1", None, kind="tg-update", payload={"update": {"update_id": 7}})
    assert await store.record_telegram_update("bot", 7, update, keep_for=3600)
    assert not await store.record_telegram_update(
        "bot", 7, job("u2", None, kind="tg-update"), keep_for=3600
    )
    assert await store.record_telegram_update(
        "bot2", 7, job("u3", None, kind="tg-update"), keep_for=3600
    )
    claimed = await store.claim_jobs(time.time() + 1, limit=10, lease=5, kinds=("tg-update",))
    assert sorted(j.id for j in claimed) == ["u1", "u3"]
    assert [j.payload for j in claimed if j.id == "u1"] == [{"update": {"update_id": 7}}]
    # Every 100th update forgets old ones; an old id is then new again.
    assert await store.record_telegram_update(
        "bot", 2**62 - 4, job("u4", None, kind="tg-update"), keep_for=-60
    )
    assert await store.record_telegram_update(
        "bot", 7, job("u5", None, kind="tg-update"), keep_for=3600
    )


async def test_telegram_buttons_and_messages(store):
    """Buttons resolve by id; messages list per run, replace on the same id, and close."""
    buttons = [
        TelegramButton("b1", "r1", "telegram:5", 5, "approve", 10.0),
        TelegramButton("b2", "r1", None, -100123456789, "review", 10.0),
    ]
    await store.add_telegram_buttons(buttons)
    assert await store.telegram_button("b2") == buttons[1]
    assert await store.telegram_button("zz") is None
    first = TelegramMessage(5, 1, "r1", "telegram:5", HOSTILE, 20.0)
    group = TelegramMessage(-100123456789, 9, "r1", None, "group", 10.0)
    await store.add_telegram_message(first)
    await store.add_telegram_message(group)
    await store.add_telegram_message(TelegramMessage(5, 2, "r2", "telegram:5", "other", 1.0))
    assert await store.telegram_messages("r1") == [group, first]
    replaced = TelegramMessage(5, 1, "r1", "telegram:5", "edited", 30.0)
    await store.add_telegram_message(replaced)
    await store.close_telegram_message(5, 1, 40.0)
    assert await store.telegram_messages("r1") == [
        group,
        TelegramMessage(5, 1, "r1", "telegram:5", "edited", 30.0, 40.0),
    ]


async def test_lookups_with_nul_find_nothing(store):
    """Ids, flows and cursors with a NUL character match nothing and never fail."""
    for i in range(3):
        await store.create_run(make_run(f"01J{i}"), [job(f"j{i}", f"01J{i}")], [])
    assert await store.get_run("01J1\x00") is None
    assert await store.list_runs(status=None, flow="news\x00", limit=10, before=None) == []
    assert await store.list_runs(status="\x00", flow=None, limit=10, before=None) == []
    older = await store.list_runs(status=None, flow=None, limit=10, before="01J1\x00x")
    assert [r.id for r in older] == ["01J1", "01J0"]
    assert await store.events("01J1\x00") == []
    assert await store.approvals("\x00") == []
    assert await store.jobs_for_run("01J1", "resume\x00") == []
    assert await store.telegram_button("\x00") is None
    assert await store.telegram_messages("\x00") == []
    assert (await store.flow_counts("news\x00", 0.0)).runs == 0
    assert not await store.decide(
        "01J1\x00", status="approved", decision=decision(), decided_at=1.0, jobs=[], events=[]
    )
    assert not await store.mark_escalated("01J1\x00", 1.0, [], [])
    assert await store.get_subscription("\x00") is None
    assert not await store.delete_subscription("sub\x00")
    assert await store.subscriptions_for("news\x00") == []
    assert await store.recent_decisions(flow="\x00", limit=5) == []


async def test_hook_subscriptions(store):
    """Subscriptions are kept with any URL text, listed per flow oldest first, deleted once."""
    url = f"https://hooks.example.com/{HOSTILE}"
    subs = [
        SubscriptionRecord("sub_1", url, None, 10.0),
        SubscriptionRecord("sub_2", "https://x.example/2", "news", 20.0),
        SubscriptionRecord("sub_3", "https://x.example/3", "other", 5.0),
    ]
    for sub in subs:
        await store.add_subscription(sub)
    assert await store.get_subscription("sub_1") == subs[0]
    assert await store.subscriptions_for("news") == [subs[0], subs[1]]
    assert await store.subscriptions_for("other") == [subs[2], subs[0]]
    assert await store.delete_subscription("sub_1")
    assert not await store.delete_subscription("sub_1")
    assert await store.subscriptions_for("news") == [subs[1]]
    assert await store.get_subscription("sub_1") is None


async def test_recent_decisions_newest_first(store):
    """Decided runs come most recently decided first, optionally of one flow."""
    for i, flow in enumerate(["news", "other", "news", "news"]):
        await store.create_run(make_run(f"r{i}", flow=flow), [], [])
    for run_id, at in (("r0", 30.0), ("r1", 40.0), ("r2", 10.0)):
        await store.decide(
            run_id, status="approved", decision=decision(), decided_at=at, jobs=[], events=[]
        )
    assert [r.id for r in await store.recent_decisions(flow=None, limit=10)] == ["r1", "r0", "r2"]
    assert [r.id for r in await store.recent_decisions(flow="news", limit=1)] == ["r0"]


async def test_add_jobs_ignores_known_ids(store):
    """Jobs added on their own are queued once; an id seen before is left as it is."""
    now = time.time()
    await store.add_jobs([job("h1", None, kind="hook", payload={"n": 1}, next_at=now - 1)])
    await store.add_jobs(
        [job("h1", None, kind="hook", payload={"n": 2}), job("h2", None, kind="hook")]
    )
    await store.add_jobs([])
    claimed = await store.claim_jobs(now + 1, limit=10, lease=5, kinds=("hook",))
    assert sorted((j.id, j.payload.get("n")) for j in claimed) == [("h1", 1), ("h2", None)]


async def test_scheduled_jobs_start_their_retry_window_when_due(store):
    """A job queued for later counts its retry window (created_at) from its due time."""
    run = make_run("r1", created_at=100.0)
    await store.create_run(run, [job("later", next_at=500.0), job("now")], [])
    jobs = {j.id: j for j in await store.jobs_for_run("r1", "resume")}
    assert (jobs["later"].created_at, jobs["now"].created_at) == (500.0, 100.0)


async def test_keep_secret_first_value_wins(opener):
    """The first kept value is the one every later caller (and store) gets."""
    async with opener() as a, opener() as b:
        values = await asyncio.gather(
            *(s.keep_secret("k", f"v{i}") for i, s in enumerate([a, b] * 5))
        )
        assert len(set(values)) == 1
        assert await b.keep_secret("k", "later") == values[0]
        assert await a.keep_secret("other", "o") == "o"


async def test_run_exclusive_runs_one_body_at_a_time(opener, database):
    """Bodies under one lock name never overlap, across stores; other names do not wait."""
    async with opener() as a, opener() as b:
        running: list[str] = []
        overlaps: list[list[str]] = []

        def body(tag: str) -> Callable[[], Any]:
            async def run() -> None:
                running.append(tag)
                if len(running) > 1:
                    overlaps.append(list(running))
                await asyncio.sleep(0.2)
                running.remove(tag)

            return run

        other_done = asyncio.Event()

        async def other() -> None:
            other_done.set()

        first = asyncio.create_task(a.run_exclusive("poller", body("a")))
        await eventually(lambda: asyncio.sleep(0, running == ["a"]))
        second = asyncio.create_task(b.run_exclusive("poller", body("b")))
        await b.run_exclusive("elsewhere", other)
        assert other_done.is_set()
        await asyncio.gather(first, second)
        if database.startswith("postgresql"):
            assert overlaps == []


async def test_listen_decisions_hears_other_stores(opener, database):
    """PostgreSQL: a decision through one store is heard by another store's listener."""
    heard: list[str | None] = []
    async with opener() as a, opener() as b:
        await a.listen_decisions(heard.append)
        await b.create_run(make_run("r1"), [], [])
        await b.decide(
            "r1", status="approved", decision=decision(), decided_at=1.0, jobs=[], events=[]
        )
        await b.create_run(make_run("r2"), [], [])
        await b.record_approval(
            "r2",
            "ann",
            "email",
            required=1,
            decision=decision(),
            decided_at=1.0,
            jobs=[],
            events=[],
        )
        await b.decide(
            "r1", status="rejected", decision=decision(), decided_at=1.0, jobs=[], events=[]
        )
        if database.startswith("sqlite"):
            assert heard == []  # one process per file: it releases its own waiters
            return
        await eventually(lambda: asyncio.sleep(0, len(heard) >= 2))
        assert heard == ["r1", "r2"]


async def test_reopening_keeps_data_and_schema(opener, store):
    """Opening the database again migrates nothing and sees the same rows."""
    await store.create_run(make_run("r1"), [job("j1")], [])
    async with opener() as again:
        assert (await again.get_run("r1")).id == "r1"


async def test_migrate_command_function(database):
    """migrate() creates the schema once; a second call has nothing to apply."""
    applied, latest = await migrate(database)
    assert applied == list(range(1, latest + 1))
    assert await migrate(database) == ([], latest)
    async with open_store(database) as opened:
        await opened.ping()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "connector", *args], capture_output=True, text=True, check=False
    )


async def test_migrate_command(database, tmp_path):
    """`hitl-connector migrate` applies the migrations once and never prints a password."""
    url = database.replace("postgres@", "postgres:hunter2@")  # trust auth ignores it
    config = tmp_path / "c.toml"
    config.write_text(f'database_url = "{url}"\n')
    first = await asyncio.to_thread(run_cli, "migrate", "--config", str(config))
    assert first.returncode == 0, first.stderr
    latest = len(MIGRATIONS)
    assert f"schema version {latest} (applied {', '.join(map(str, range(1, latest + 1)))})" in (
        first.stdout
    )
    again = await asyncio.to_thread(run_cli, "migrate", "--config", str(config))
    assert "nothing to apply" in again.stdout
    assert "hunter2" not in first.stdout + again.stdout + first.stderr


def test_migrate_command_reports_an_unreachable_database(tmp_path):
    """An unreachable PostgreSQL gives exit status 1 and a message without the password."""
    config = tmp_path / "c.toml"
    config.write_text('database_url = "postgresql://hitl:hunter2@127.0.0.1:1/hitl"\n')
    result = run_cli("migrate", "--config", str(config))
    assert result.returncode == 1
    assert "cannot migrate postgresql://hitl:***@127.0.0.1:1/hitl" in result.stderr
    assert "hunter2" not in result.stderr


def test_both_backends_have_every_migration():
    """Each SQLite migration has its PostgreSQL counterpart with the same number."""
    assert len(PG_MIGRATIONS) == len(MIGRATIONS)


@pytest.mark.parametrize("cls", [SQLiteStore, PostgresStore])
def test_both_backends_implement_the_whole_protocol(cls):
    """Every Store method exists on both stores, with the same parameters."""
    for name, method in inspect.getmembers(Store, inspect.isfunction):
        if name.startswith("_"):
            continue
        implementation = getattr(cls, name, None)
        assert implementation is not None, f"{cls.__name__} lacks {name}"
        expected = list(inspect.signature(method).parameters)
        assert list(inspect.signature(implementation).parameters) == expected, name


# -- PostgreSQL only: what several instances rely on ----------------------------------------------


@asynccontextmanager
async def two_instances() -> AsyncIterator[tuple[Store, Store, str]]:
    async with pg_schema() as url, open_store(url) as a, open_store(url) as b:
        yield a, b, url


async def test_postgres_start_keeps_other_instances_leases():
    """A new PostgreSQL instance does not take over jobs another instance holds."""
    async with two_instances() as (a, _, url):
        await a.create_run(make_run("r1"), [job("j1", next_at=1.0)], [])
        now = time.time()
        assert len(await a.claim_jobs(now, limit=5, lease=60, kinds=KINDS)) == 1
        async with open_store(url) as late:
            assert await late.claim_jobs(now, limit=5, lease=60, kinds=KINDS) == []
            # The lease of an instance that died ends, and the job is taken up.
            assert len(await late.claim_jobs(now + 61, limit=5, lease=60, kinds=KINDS)) == 1


async def test_postgres_instances_starting_together_migrate_once():
    """Five instances opening a fresh schema together all start, each migration applied once."""
    async with pg_schema() as url:
        stores = [open_store(url) for _ in range(5)]
        opened = await asyncio.gather(*(s.__aenter__() for s in stores))
        try:
            for s in opened:
                await s.ping()
        finally:
            for s in stores:
                await s.__aexit__(None, None, None)
        conn = await asyncpg.connect(url)
        try:
            versions = [r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")]
        finally:
            await conn.close()
        assert sorted(versions) == list(range(1, len(PG_MIGRATIONS) + 1))


async def test_postgres_exclusive_lock_passes_on_when_holder_dies():
    """When the lock holder's connection ends, a waiting instance takes over."""
    async with two_instances() as (a, b, _):
        started = asyncio.Event()
        forever = asyncio.Event()

        async def hold() -> None:
            started.set()
            await forever.wait()

        took_over = asyncio.Event()

        async def take_over() -> None:
            took_over.set()

        holder = asyncio.create_task(a.run_exclusive("poller", hold))
        await started.wait()
        waiter = asyncio.create_task(b.run_exclusive("poller", take_over))
        await asyncio.sleep(0.3)
        assert not took_over.is_set()
        holder.cancel()  # like an instance stopping: its session ends and the lock with it
        await eventually(lambda: asyncio.sleep(0, took_over.is_set()))
        await waiter


async def terminate_backends(url: str, where: str, *args: Any) -> int:
    """Kill the server sessions matching `where` (as a network failure or a DBA would)."""
    conn = await asyncpg.connect(url)
    try:
        killed = await conn.fetch(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE {where}", *args
        )
    finally:
        await conn.close()
    return len(killed)


async def test_postgres_listener_reconnects_and_asks_for_a_recheck():
    """When the listening connection dies, the store reconnects, says "re-check", and hears on."""
    async with two_instances() as (a, b, url):
        heard: list[str | None] = []
        await a.listen_decisions(heard.append)
        channel = a._channel  # type: ignore[attr-defined]
        assert await terminate_backends(url, "query = $1", f'LISTEN "{channel}"') == 1
        await eventually(lambda: asyncio.sleep(0, None in heard))
        await b.create_run(make_run("r1"), [], [])
        await b.decide(
            "r1", status="approved", decision=decision(), decided_at=1.0, jobs=[], events=[]
        )
        await eventually(lambda: asyncio.sleep(0, "r1" in heard))


async def test_postgres_exclusive_body_stops_when_its_lock_is_lost():
    """When the lock's session dies, the body is cancelled and another instance takes over."""
    async with two_instances() as (a, b, url):
        a_runs, b_runs, a_stopped = asyncio.Event(), asyncio.Event(), asyncio.Event()

        async def body_a() -> None:
            a_runs.set()
            try:
                await asyncio.Event().wait()
            finally:
                a_stopped.set()

        async def body_b() -> None:
            b_runs.set()
            await asyncio.Event().wait()

        key = lock_key(a._schema, "poller")  # type: ignore[attr-defined]
        lock = (
            "pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted = $1"
            " AND classid = $2::bigint::oid AND objid = $3::bigint::oid)"
        )
        halves = ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF)

        async def sessions(granted: bool) -> int:
            conn = await asyncpg.connect(url)
            try:
                return len(
                    await conn.fetch(
                        f"SELECT pid FROM pg_stat_activity WHERE {lock}", granted, *halves
                    )
                )
            finally:
                await conn.close()

        holder = asyncio.create_task(a.run_exclusive("poller", body_a))
        await a_runs.wait()
        waiter = asyncio.create_task(b.run_exclusive("poller", body_b))
        await eventually(lambda: sessions(granted=False))  # b waits for the lock
        assert not b_runs.is_set()
        assert await terminate_backends(url, lock, True, *halves) == 1
        await asyncio.wait_for(a_stopped.wait(), 15)
        await asyncio.wait_for(b_runs.wait(), 15)
        for task in (holder, waiter):
            task.cancel()
        await asyncio.gather(holder, waiter, return_exceptions=True)
