"""Flow policies: rules, shadow mode, N-of-M, self-approval, escalation, statistics."""

from __future__ import annotations

import json
import time

import pytest

from connector.app import create_app
from connector.config import ConfigError, FlowConfig, load_settings
from connector.rules import compile_rule
from connector.stats import recommend
from connector.store import FlowCounts
from connector.web.keys import runner_key, service_key, store_key

from .conftest import AUTH, create_run, fetch_run, make_settings, review_links, run_body

ANN = {"email": "ann@example.com", "name": "Ann"}
BOB = {"email": "bob@example.com", "name": "Bob"}
CAROL = {"email": "carol@example.com", "name": "Carol"}
RULE = 'risk.amount < 100 && risk.confidence >= 0.9 && action.account_status == "active"'


def refund_flow(**extra):
    flow = {"reviewers": [ANN, BOB], "timeout": "1h", "auto_approve": RULE}
    flow.update(extra)
    return {"refund": flow}


def refund(receiver=None, **risk):
    body = run_body(
        receiver, flow="refund", action={"refund": 40, "account_status": "active"}, risk=risk
    )
    return body


@pytest.mark.parametrize(
    ("risk", "action", "matched"),
    [
        ({"amount": 40, "confidence": 0.95}, {"account_status": "active"}, True),
        ({"amount": 40, "confidence": 1}, {"account_status": "active"}, True),
        ({"amount": 400, "confidence": 0.95}, {"account_status": "active"}, False),
        ({"amount": 40, "confidence": 0.95}, {"account_status": "closed"}, False),
        ({"confidence": 0.95}, {"account_status": "active"}, False),
        ({"amount": "forty", "confidence": 0.95}, {"account_status": "active"}, False),
        ({}, {}, False),
    ],
)
def test_rule_matching(risk, action, matched):
    """A rule matches only when true; missing fields and type errors never match."""
    result = compile_rule(RULE).evaluate(
        {"risk": risk, "action": action, "context": {}, "metadata": {}}
    )
    assert result.matched is matched
    if not matched and risk.get("amount") != 400 and action.get("account_status") != "closed":
        assert result.error


def test_bad_rule_fails_config_with_position(tmp_path):
    """A CEL syntax error stops start-up naming the flow, the key and the position."""
    path = tmp_path / "c.toml"
    path.write_text('[flows.refund]\nauto_approve = "risk.amount <"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert "flows.refund.auto_approve" in message and "1:" in message


def test_edits_need_a_single_approver():
    """required_approvals > 1 together with editable fields is refused at start-up."""
    with pytest.raises(ConfigError, match="single approver"):
        load_settings(
            None, flows={"x": {"reviewers": [ANN, BOB], "required_approvals": 2, "editable": ["a"]}}
        )


async def test_enforced_rule_approves_at_once(connector, receiver):
    """A matching rule approves by policy at once, delivers, and notifies nobody."""
    client = await connector(flows=refund_flow())
    run = await create_run(client, refund(receiver, amount=40, confidence=0.95))
    assert run["status"] == "approved"
    assert run["decision"]["decided_by"] == "policy" and run["decision"]["reviewer"] is None
    (call,) = await receiver.wait_for(1)
    assert json.loads(call.body)["decided_by"] == "policy"
    stored = await fetch_run(client, run["id"])
    rule_events = [e for e in stored["events"] if e["kind"] == "rule"]
    assert rule_events[0]["detail"]["rule"] == RULE
    assert not [e for e in stored["events"] if e["kind"] == "notified"]


async def test_non_matching_rule_asks_people(connector):
    """A run the rule does not match waits for reviewers; a missing field is no error."""
    client = await connector(flows=refund_flow())
    run = await create_run(client, refund(amount=40))
    assert run["status"] == "pending"
    await review_links(client, run["id"])


async def test_require_review_overrides(connector):
    """require_review forces people to look even when auto_approve matches."""
    client = await connector(flows=refund_flow(require_review="context.sensitive == true"))
    body = refund(amount=40, confidence=0.95)
    body["context"] = {"sensitive": True}
    assert (await create_run(client, body))["status"] == "pending"
    body["context"] = {"sensitive": False}
    assert (await create_run(client, body))["status"] == "approved"


async def test_shadow_mode_records_but_asks(connector):
    """In shadow mode the rule's verdict is recorded and people still decide."""
    client = await connector(flows=refund_flow(auto_approve_mode="shadow"))
    run = await create_run(client, refund(amount=40, confidence=0.95))
    assert run["status"] == "pending"
    stored = await fetch_run(client, run["id"])
    (rule,) = [e for e in stored["events"] if e["kind"] == "rule"]
    assert rule["detail"]["would_approve"] is True and rule["detail"]["mode"] == "shadow"


async def test_two_of_three_with_veto(connector, receiver):
    """Two distinct approvals approve; a duplicate counts once; a rejection vetoes."""
    flows = {"pay": {"reviewers": [ANN, BOB, CAROL], "required_approvals": 2}}
    client = await connector(flows=flows)
    run = await create_run(client, run_body(receiver, flow="pay"))
    links = await review_links(client, run["id"], count=3)
    first = await client.post(links["ann@example.com"], data={"choice": "approve"})
    assert first.status == 200 and "1 of 2 approvals" in await first.text()
    again = await client.post(links["ann@example.com"], data={"choice": "approve"})
    assert again.status == 409 and "already approved" in await again.text()
    page = await client.get(links["bob@example.com"])
    assert "1 of 2 approvals" in await page.text()
    assert (await fetch_run(client, run["id"]))["status"] == "pending"
    second = await client.post(links["carol@example.com"], data={"choice": "approve"})
    assert second.status == 200
    assert (await fetch_run(client, run["id"]))["status"] == "approved"
    (call,) = await receiver.wait_for(1)
    assert json.loads(call.body)["reviewer"]["name"] == "Carol"

    vetoed = await create_run(client, run_body(receiver, flow="pay"))
    links = await review_links(client, vetoed["id"], count=3)
    await client.post(links["ann@example.com"], data={"choice": "approve"})
    veto = await client.post(links["bob@example.com"], data={"choice": "reject"})
    assert veto.status == 200
    assert (await fetch_run(client, vetoed["id"]))["status"] == "rejected"


async def test_self_approval_blocked_on_page_and_api(connector):
    """The requester cannot decide their own run on the page or through the API."""
    client = await connector(operator_keys=["op-key"])
    run = await create_run(client, run_body(requested_by="Ann@Example.com"))
    links = await review_links(client, run["id"])
    page = await client.post(links["ann@example.com"], data={"choice": "approve"})
    assert page.status == 403
    for headers in (AUTH, {"Authorization": "Bearer op-key"}):
        api = await client.post(
            f"/v1/runs/{run['id']}/decision",
            headers=headers,
            json={"decision": "approve", "reviewer": "ann@example.com"},
        )
        assert api.status == 403
    assert (await fetch_run(client, run["id"]))["status"] == "pending"
    ok = await client.post(links["bob@example.com"], data={"choice": "approve"})
    assert ok.status == 200


async def test_api_reviewer_must_belong_unless_operator(connector):
    """A plain key may only decide as a flow reviewer; an operator key may name anyone."""
    client = await connector(operator_keys=["op-key"])
    run = await create_run(client, run_body())
    stranger = await client.post(
        f"/v1/runs/{run['id']}/decision",
        headers=AUTH,
        json={"decision": "approve", "reviewer": "mallory"},
    )
    assert stranger.status == 403
    operator = await client.post(
        f"/v1/runs/{run['id']}/decision",
        headers={"Authorization": "Bearer op-key"},
        json={"decision": "approve", "reviewer": "on-call"},
    )
    assert operator.status == 200


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def test_escalation_brings_in_backup(aiohttp_client, tmp_path):
    """After escalate_after, the escalation reviewer is notified and may decide; not before."""
    flows = {
        "news": {
            "reviewers": [ANN],
            "timeout": "4h",
            "escalate_after": "1h",
            "escalate_to": [CAROL],
        }
    }
    clock = Clock()
    client = await aiohttp_client(create_app(make_settings(tmp_path, flows=flows), clock=clock))
    run = await create_run(client, run_body())
    service = client.app[service_key]
    record = await service.record(run["id"])
    carol = service.flow("news").reviewer("carol@example.com")
    early = service.review_url(record, carol)
    path = early[early.index("/r/") :]
    refused = await client.post(path, data={"choice": "approve"})
    assert refused.status == 403
    clock.now += 3601
    client.app[runner_key].wake()
    links = await review_links(client, run["id"], count=2)
    assert "carol@example.com" in links
    stored = await fetch_run(client, run["id"])
    assert "escalated" in [e["kind"] for e in stored["events"]]
    accepted = await client.post(links["carol@example.com"], data={"choice": "approve"})
    assert accepted.status == 200


async def test_stats_on_seeded_history(connector):
    """Stats count outcomes, rates, time to decision and shadow agreement."""
    client = await connector(flows=refund_flow(auto_approve_mode="shadow"))
    decisions = [
        ("approve", True, None),
        ("approve", True, None),
        ("approve", True, "x"),
        ("reject", True, None),
        ("approve", False, None),
    ]
    for choice, matching, edit in decisions:
        body = refund(amount=40 if matching else 500, confidence=0.95)
        body["editable"] = ["refund"]
        run = await create_run(client, body)
        payload = {"decision": choice, "reviewer": "ann@example.com"}
        if edit:
            payload["action"] = {"refund": 41}
        response = await client.post(f"/v1/runs/{run['id']}/decision", json=payload, headers=AUTH)
        assert response.status == 200
    await create_run(client, refund(amount=40, confidence=0.95))
    stats = await (await client.get("/v1/flows/refund/stats", headers=AUTH)).json()
    assert stats["runs"] == 6 and stats["pending"] == 1
    assert stats["decisions"] == {"approved": 4, "rejected": 1, "cancelled": 0}
    assert stats["approved_unchanged_rate"] == 0.6
    assert stats["edit_rate"] == 0.2 and stats["reject_rate"] == 0.2
    assert stats["shadow"] == {
        "decided_by_people": 5,
        "would_approve": 4,
        "agreed": 2,
        "agreement_rate": 0.5,
    }
    assert stats["time_to_decision"]["median"] is not None
    assert "collecting evidence" in stats["recommendation"]
    flows = await (await client.get("/v1/flows", headers=AUTH)).json()
    assert flows["flows"][0]["auto_approve_mode"] == "shadow"


async def test_operator_page_needs_login(client):
    """The flows page asks for a key, then shows the flows."""
    page = await client.get("/flows")
    assert "Sign in" in await page.text()
    bad = await client.post("/flows/login", data={"api_key": "wrong"})
    assert bad.status == 401
    good = await client.post("/flows/login", data={"api_key": "test-key"})
    assert good.status == 200 and "news" in await good.text()


def test_recommendation_ready_to_enforce():
    """With 200+ shadow approvals and 98 %+ agreement the page says ready to enforce."""
    flow = FlowConfig(reviewers=[ANN], auto_approve="risk.amount < 5", auto_approve_mode="shadow")
    ready = FlowCounts(shadow_would_approve=250, shadow_agreed=246)
    assert recommend(flow, ready).startswith("ready to enforce")
    doubtful = FlowCounts(shadow_would_approve=100, shadow_agreed=80)
    assert recommend(flow, doubtful).startswith("keep reviewing")


async def test_quorum_is_announced_in_the_email(connector):
    """A 2-of-3 flow's approval email says two approvals are needed."""
    client = await connector(
        flows={"pay": {"reviewers": [ANN, BOB, CAROL], "required_approvals": 2}}
    )
    run = await create_run(client, run_body(flow="pay"))
    await review_links(client, run["id"], count=3)
    mail = await client.app[store_key].list_mail(10)
    assert all(
        "needs 2 approvals" in m.text and "needs 2 approvals" in (m.html or "") for m in mail
    )
