"""Reliability: outages, races, hostile input and fuzzing never lose a decision or give a 5xx."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.web.keys import store_key

from .conftest import AUTH, create_run, eventually, fetch_run, review_links, run_body
from .fake_telegram import FakeTelegram, start_fake_telegram
from .receiver import start_receiver
from .telegram_helpers import ANN, buttons, deliver, start, telegram_flow
from .test_crash import start_server, write_config
from .test_delivery import free_port


async def stored_runs(client) -> int:
    return len(
        await client.app[store_key].list_runs(status=None, flow=None, limit=10_000, before=None)
    )


async def test_receiver_outage_503_then_timeouts_then_back(connector):
    """Decisions made while the receiver answers 503, then hangs, all arrive once it is back."""
    client = await connector(delivery_timeout="0.3s")
    async with start_receiver() as receiver:
        receiver.statuses = [(503, "down")] * 6
        receiver.delay = 1.0  # after the 503s it hangs longer than delivery_timeout
        runs = [await create_run(client, run_body(receiver)) for _ in range(5)]
        for run in runs:
            response = await client.post(
                f"/v1/runs/{run['id']}/decision",
                headers=AUTH,
                json={"decision": "approve", "reviewer": "ann@example.com"},
            )
            assert response.status == 200

        async def timed_out_once():
            states = [await fetch_run(client, r["id"]) for r in runs]
            return any("timed out" in (s["delivery"]["last_error"] or "") for s in states)

        await eventually(timed_out_once, timeout=20)
        receiver.delay = 0.0

        async def all_delivered():
            states = [await fetch_run(client, r["id"]) for r in runs]
            return all(s["delivery"]["status"] == "delivered" for s in states)

        await eventually(all_delivered, timeout=30)
        arrived = {json.loads(c.body)["run_id"] for c in receiver.received}
        assert arrived == {r["id"] for r in runs}
        # Retries of one decision all carry that decision's webhook-id.
        ids: dict[str, set[str]] = {}
        for call in receiver.received:
            ids.setdefault(json.loads(call.body)["run_id"], set()).add(call.headers["webhook-id"])
        assert all(len(v) == 1 for v in ids.values())


async def test_hundred_conflicting_decisions(client, receiver):
    """100 simultaneous page and API decisions on one run: one wins, one callback."""
    run = await create_run(client, run_body(receiver))
    links = list((await review_links(client, run["id"])).values())

    def attempt(i: int):
        if i % 3 == 0:
            return client.post(
                f"/v1/runs/{run['id']}/decision",
                headers=AUTH,
                json={"decision": "reject", "reviewer": "bob@example.com"},
            )
        return client.post(links[i % 2], data={"choice": "approve" if i % 2 else "reject"})

    responses = await asyncio.gather(*(attempt(i) for i in range(100)))
    statuses = [r.status for r in responses]
    assert statuses.count(200) == 1 and statuses.count(409) == 99

    async def delivered():
        return (await fetch_run(client, run["id"]))["delivery"]["status"] == "delivered"

    await eventually(delivered)
    assert len(receiver.received) == 1


CONTROL = "".join(chr(c) for c in range(32)) + "\u2028\u202e\ufeff💥\U0001f600 é ß 中文"


async def test_hostile_text_everywhere_is_stored_and_shown(client):
    """Unicode and control characters in every text field are kept and rendered escaped."""
    body = run_body(
        title=CONTROL,
        summary=CONTROL,
        requested_by=CONTROL,
        action={"subject": CONTROL, CONTROL: CONTROL},
        context={CONTROL: CONTROL},
        idempotency_key=CONTROL,
    )
    run = await create_run(client, body)
    assert run["title"] == CONTROL and run["action"][CONTROL] == CONTROL
    links = await review_links(client, run["id"])
    page = await client.get(next(iter(links.values())))
    assert page.status == 200


async def test_bad_input_is_refused_and_writes_nothing(client):
    """10 MB bodies, deep JSON, wrong types and internal resume URLs: 4xx, nothing stored."""
    huge = io.BytesIO(b'{"flow": "news", "action": {"x": "' + b"a" * 10_000_000 + b'"}}')
    deep = '{"flow": "news", "action": ' + '{"a": ' * 5000 + "1" + "}" * 5000 + "}"
    deep_list = '{"flow": "news", "action": {"a": ' + "[" * 100 + "]" * 100 + "}}"
    cases = [
        (huge, 413),
        (deep.encode(), 400),
        (deep_list.encode(), 400),
        (b'{"flow": 5, "action": {}}', 422),
        (b'{"flow": "news", "action": {}, "context": [1]}', 422),
        (b'{"flow": "news", "action": {}, "title": {"a": 1}}', 422),
        (b"\xff\xfe\x00garbage", 400),
        (
            json.dumps(
                run_body(resume={"url": "http://169.254.169.254/latest/meta-data"})
            ).encode(),
            400,
        ),
        (json.dumps(run_body(resume={"url": "http://[::ffff:10.0.0.1]:8080/x"})).encode(), 400),
        (json.dumps(run_body(resume={"url": "http://0.0.0.0/x"})).encode(), 400),
    ]
    for data, status in cases:
        response = await client.post(
            "/v1/runs", data=data, headers={**AUTH, "Content-Type": "application/json"}
        )
        assert response.status == status, (status, await response.text())
        assert (await response.json())["ok"] is False
    assert await stored_runs(client) == 0


async def test_internal_addresses_refused_even_when_loopback_allowed(connector):
    """Allowing 127.0.0.1 for a local n8n does not open the cloud metadata address."""
    client = await connector(resume_allow=["127.0.0.1/32"])
    response = await client.post(
        "/v1/runs", headers=AUTH, json=run_body(resume={"url": "http://169.254.169.254/latest"})
    )
    assert response.status == 400
    assert await stored_runs(client) == 0


async def test_random_tokens_and_forms_never_500(client):
    """Any token and any form posted to a review URL answers 4xx, never a server error."""
    samples: list[tuple[str, dict[str, str]]] = []
    printable = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=50)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        token=st.text(min_size=1, max_size=300),
        form=st.dictionaries(printable, printable, max_size=5),
    )
    def collect(token, form):
        samples.append((token, form))

    collect()
    for token, form in samples:
        path = f"/r/{quote(token, safe='')}"
        for response in (
            await client.get(path),
            await client.head(path),
            await client.post(path, data=form),
        ):
            assert 400 <= response.status < 500, (token, form, response.status)


async def test_random_forms_on_a_real_link_never_500(client):
    """Random form fields on a genuine link never give a server error."""
    run = await create_run(client, run_body())
    path = next(iter((await review_links(client, run["id"])).values()))

    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        st.dictionaries(
            st.sampled_from(
                ["choice", "comment", "field.subject", "field.body", "field.list", "field.", "x"]
            ),
            st.text(max_size=200),
            max_size=6,
        )
    )
    def check(form):
        results.append(form)

    results: list[dict[str, str]] = []
    check()
    for form in results:
        response = await client.post(path, data=form)
        assert response.status < 500, form
        if response.status == 200 and (await fetch_run(client, run["id"]))["status"] != "pending":
            run = await create_run(client, run_body())
            path = next(iter((await review_links(client, run["id"])).values()))


async def test_random_telegram_updates_never_500(connector):
    """Arbitrary JSON posted to the Telegram webhook never gives a server error."""
    async with start_fake_telegram(FakeTelegram()) as fake:
        client = await start(connector, fake)
        samples: list[object] = []

        json_values = st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda children: (
                st.lists(children, max_size=3)
                | st.dictionaries(
                    st.sampled_from(
                        [
                            "update_id",
                            "callback_query",
                            "message",
                            "from",
                            "id",
                            "data",
                            "text",
                            "chat",
                        ]
                    ),
                    children,
                    max_size=4,
                )
            ),
            max_leaves=12,
        )

        @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
        @given(json_values)
        def collect(value):
            samples.append(value)

        collect()
        for value in samples:
            status = await deliver(client, value)  # type: ignore[arg-type]
            assert status < 500, value


async def test_self_approval_blocked_on_telegram(connector):
    """The requester cannot approve their own run with a Telegram button either."""
    async with start_fake_telegram(FakeTelegram(chat_interval=0.05)) as fake:
        client = await start(connector, fake, flow=telegram_flow())
        run = await create_run(client, run_body(flow="post", requested_by="ann@example.com"))

        async def prompt():
            sent = fake.sent(ANN["id"])
            return sent[0] if sent else None

        message = await eventually(prompt)
        update = await fake.push(
            fake.press(ANN, message, buttons(message)["approve"]["callback_data"])
        )
        assert await deliver(client, update) == 200

        async def answered():
            return fake.answers()

        (answer,) = await eventually(answered)
        assert answer["show_alert"] is True
        assert (await fetch_run(client, run["id"]))["status"] == "pending"


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_schemathesis_finds_no_server_errors(tmp_path):
    """Schemathesis fuzzes every operation (1,000+ cases, fixed seed): no 5xx, no schema break."""
    binary = Path(sys.executable).with_name("schemathesis")
    if not binary.exists():
        binary = Path(shutil.which("schemathesis") or "schemathesis")
    config = tmp_path / "connector.toml"
    write_config(config, tmp_path / "var")
    port = free_port()

    async def run() -> subprocess.CompletedProcess[str]:
        process = await start_server(config, port)
        try:
            return await asyncio.to_thread(
                subprocess.run,
                [
                    str(binary),
                    "run",
                    f"http://127.0.0.1:{port}/v1/openapi.json",
                    "-H",
                    "Authorization: Bearer test-key",
                    "--checks",
                    "all",
                    "--exclude-checks",
                    "positive_data_acceptance",
                    "--seed",
                    "20261125",
                    "-n",
                    "150",
                    "--workers",
                    "1",
                ],
                capture_output=True,
                text=True,
                check=False,
                timeout=400,
            )
        finally:
            process.terminate()
            await process.wait()

    result = asyncio.run(run())
    summary = result.stdout[-3000:]
    assert result.returncode == 0, summary
    generated = int(__import__("re").search(r"(\d+) generated", result.stdout).group(1))
    assert generated >= 1000, summary
