"""Zapier: the Catch-Hook-compatible endpoint, callbacks, and the "New Decision" REST hook."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from connector.config import ConfigError

from .conftest import API_KEY, AUTH, DEFAULT_FLOW, eventually, fetch_run, make_settings


async def zap(client, method="POST", path="/zapier/news", *, headers=AUTH, status=200, **kwargs):
    """Call the Zapier endpoint and return (status, JSON body)."""
    response = await client.request(method, path, headers=headers, **kwargs)
    data = await response.json()
    assert response.status == status, data
    return data


async def decide(client, run_id, decision="approve", **extra):
    """Decide a run through the API, as an operator would."""
    body = {"decision": decision, "reviewer": "ann@example.com", **extra}
    response = await client.post(f"/v1/runs/{run_id}/decision", json=body, headers=AUTH)
    assert response.status == 200, await response.text()


def nested(depth):
    """A list nested `depth` levels deep."""
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def assert_catch_hook_shape(data):
    """The body is exactly what a Zapier Catch Hook answers."""
    assert list(data) == ["status", "id", "request_id", "attempt"]
    assert data["status"] == "success"
    uuid.UUID(data["request_id"])
    uuid.UUID(data["attempt"])


async def test_json_body_answers_exactly_like_a_catch_hook(client):
    """A JSON POST answers the Catch Hook shape; reserved keys shape the run, the rest is action."""
    data = await zap(
        client,
        json={
            "title": "Refund order 1042",
            "summary": "Customer asked twice",
            "amount": 120,
            "order": {"id": 1042, "lines": 3},
            "context": {"customer": "ACME"},
            "risk": {"score": 0.7},
            "requested_by": "zap@example.com",
        },
    )
    assert_catch_hook_shape(data)
    run = await fetch_run(client, data["id"])
    assert run["flow"] == "news" and run["status"] == "pending"
    assert run["title"] == "Refund order 1042" and run["summary"] == "Customer asked twice"
    assert run["action"] == {"amount": 120, "order": {"id": 1042, "lines": 3}}
    assert run["context"] == {"customer": "ACME"} and run["risk"] == {"score": 0.7}
    assert run["requested_by"] == "zap@example.com"
    assert run["metadata"]["zapier"]["request_id"] == data["request_id"]
    assert run["events"][0]["detail"]["source"] == "zapier"


async def test_each_answer_has_fresh_request_ids(client):
    """Two calls get two runs and distinct request and attempt ids."""
    first = await zap(client, json={"subject": "a"})
    second = await zap(client, json={"subject": "b"})
    assert first["id"] != second["id"]
    assert first["request_id"] != second["request_id"] and first["attempt"] != second["attempt"]


async def test_form_body_fields_become_the_action(client):
    """Form fields (Webhooks by Zapier's "form" payload) become action fields as text."""
    data = await zap(
        client,
        data={"title": "New lead", "subject": "Hello", "body": "Line 1\nLine 2", "amount": "12"},
    )
    assert_catch_hook_shape(data)
    run = await fetch_run(client, data["id"])
    assert run["title"] == "New lead"
    assert run["action"] == {"subject": "Hello", "body": "Line 1\nLine 2", "amount": "12"}


async def test_query_string_is_merged_and_the_body_wins(client):
    """Query parameters join the body's fields; a key in both takes the body's value."""
    data = await zap(
        client,
        path="/zapier/news?subject=from-query&list=customers&title=Query+title",
        data={"subject": "from-body"},
    )
    run = await fetch_run(client, data["id"])
    assert run["action"] == {"subject": "from-body", "list": "customers"}
    assert run["title"] == "Query title"


async def test_nested_json_in_form_fields_is_parsed(client):
    """`action`, `context` and `risk` sent as JSON text in form fields arrive as objects."""
    data = await zap(
        client,
        data={
            "action": json.dumps({"subject": "Hi", "to": ["a@x.org", "b@x.org"], "n": {"k": 1}}),
            "context": '{"thread": {"id": 7}}',
            "risk": '{"confidence": 0.4}',
            "priority": "high",
        },
    )
    run = await fetch_run(client, data["id"])
    assert run["action"] == {
        "priority": "high",
        "subject": "Hi",
        "to": ["a@x.org", "b@x.org"],
        "n": {"k": 1},
    }
    assert run["context"] == {"thread": {"id": 7}} and run["risk"] == {"confidence": 0.4}


async def test_action_object_keys_win_over_loose_fields(client):
    """When a loose field and the `action` object name the same key, the object's value is kept."""
    data = await zap(client, json={"subject": "loose", "action": {"subject": "object"}})
    assert (await fetch_run(client, data["id"]))["action"] == {"subject": "object"}


async def test_json_body_without_json_content_type_is_read(client):
    """A raw JSON body sent as text/plain is read like a Catch Hook reads it."""
    data = await zap(
        client, data=b'{"subject": "raw"}', headers={**AUTH, "Content-Type": "text/plain"}
    )
    assert (await fetch_run(client, data["id"]))["action"] == {"subject": "raw"}


async def test_put_and_get_work_like_post(client):
    """PUT with a body and GET with only a query string both pause a run."""
    put = await zap(client, "PUT", json={"subject": "by put"})
    assert_catch_hook_shape(put)
    assert (await fetch_run(client, put["id"]))["action"] == {"subject": "by put"}
    got = await zap(client, "GET", path="/zapier/news?subject=by+get&title=From+GET")
    assert_catch_hook_shape(got)
    run = await fetch_run(client, got["id"])
    assert run["action"] == {"subject": "by get"} and run["title"] == "From GET"


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {API_KEY}"},
        {"X-API-Key": API_KEY},
        basic("zapier", API_KEY),
        basic("", API_KEY),
    ],
    ids=["bearer", "x-api-key", "basic-user-key", "basic-empty-user"],
)
async def test_accepted_auth_variants(client, headers):
    """Bearer, X-API-Key and Basic with the key as password (Zapier's `user|key`) all work."""
    assert_catch_hook_shape(await zap(client, headers=headers, json={"subject": "x"}))


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-API-Key": "wrong"}, basic("zapier", "wrong"), {"Authorization": "Bearer "}],
    ids=["none", "wrong-key", "wrong-basic", "empty-bearer"],
)
async def test_missing_or_wrong_key_is_refused(client, headers):
    """Without a valid key the answer is 401 with the standard error body, and no run exists."""
    data = await zap(client, headers=headers, json={"subject": "x"}, status=401)
    assert data == {"ok": False, "error": "missing or wrong API key", "status": 401}
    response = await client.get("/v1/runs", headers=AUTH)
    assert (await response.json())["runs"] == []


@pytest.mark.parametrize(
    ("kwargs", "status", "words"),
    [
        ({"data": {"action": "not json"}}, 400, "action must be a JSON object"),
        ({"json": {"action": [1, 2]}}, 400, "action must be a JSON object"),
        ({"json": {"context": "[]"}}, 400, "context must be a JSON object"),
        ({"json": [{"subject": "x"}]}, 400, "must be a JSON object"),
        ({"data": b"subject=x&", "headers": {**AUTH, "Content-Type": "text/csv"}}, 400, "JSON"),
        ({"json": {"title": 5}}, 400, "title must be a string"),
        ({"json": {"title": "x" * 501}}, 422, "title"),
        ({"json": {"callback_url": "ftp://example.com/x"}}, 400, "http or https"),
        ({"data": {"action": "[" * 70 + "]" * 70}}, 400, "nested deeper"),
        ({"data": {"context": '{"a":' * 70 + "1" + "}" * 70}}, 400, "nested deeper"),
        ({"json": {"a": nested(70)}}, 400, "nested deeper"),
    ],
    ids=[
        "form-action",
        "array-action",
        "array-context",
        "array-body",
        "csv",
        "title-type",
        "title-long",
        "callback-scheme",
        "deep-form-action",
        "deep-form-context",
        "deep-json",
    ],
)
async def test_bad_input_keeps_the_error_body(client, kwargs, status, words):
    """Bad input gets 400/422 with {"ok": false, "error", "status"} and stores nothing."""
    data = await zap(client, status=status, **kwargs)
    assert data["ok"] is False and data["status"] == status and words in data["error"]
    response = await client.get("/v1/runs", headers=AUTH)
    assert (await response.json())["runs"] == []


async def test_unknown_flow_is_404(client):
    """A flow that is not configured answers 404 with the error body."""
    data = await zap(client, path="/zapier/nope", json={"subject": "x"}, status=404)
    assert data == {"ok": False, "error": "unknown flow 'nope'", "status": 404}


async def test_idempotency_key_returns_the_same_run(client):
    """A Zap retried with the same idempotency_key gets the same run id."""
    first = await zap(client, data={"idempotency_key": "zap-42", "subject": "x"})
    second = await zap(client, data={"idempotency_key": "zap-42", "subject": "x"})
    assert first["id"] == second["id"]


async def test_decision_goes_to_callback_url(connector, receiver):
    """With callback_url (the Zapier app's callback), the decision is POSTed there."""
    flow = {**DEFAULT_FLOW, "resume_url": f"{receiver.url}/catch-hook"}
    client = await connector(flows={"news": flow})
    data = await zap(
        client, json={"subject": "Hi", "callback_url": f"{receiver.url}/callback/abc?x=1"}
    )
    await decide(client, data["id"], action={"subject": "Hello"}, comment="nicer")
    (call,) = await receiver.wait_for(1)
    assert call.path_qs == "/callback/abc?x=1"
    payload = json.loads(call.body)
    assert payload["run_id"] == data["id"] and payload["decision"] == "approved"
    assert payload["action"] == {"subject": "Hello"} and payload["comment"] == "nicer"
    assert payload["changes"] == {"subject": {"from": "Hi", "to": "Hello"}}


async def test_decision_goes_to_flow_catch_hook_without_callback(connector, receiver):
    """Without callback_url the decision goes to the flow's resume_url (a second Zap's hook)."""
    flow = {**DEFAULT_FLOW, "resume_url": f"{receiver.url}/hooks/catch/1/abc/"}
    client = await connector(flows={"news": flow})
    data = await zap(client, data={"subject": "Hi"})
    await decide(client, data["id"], "reject", comment="no")
    (call,) = await receiver.wait_for(1)
    assert call.path_qs == "/hooks/catch/1/abc/"
    payload = json.loads(call.body)
    assert payload["run_id"] == data["id"] and payload["approved"] is False

    async def delivered():
        return (await fetch_run(client, data["id"]))["delivery"]["status"] == "delivered"

    await eventually(delivered)


async def test_internal_callback_url_is_refused(connector):
    """A callback_url pointing at an internal address is refused like any resume URL."""
    client = await connector(resume_allow=[])
    data = await zap(client, json={"callback_url": "http://127.0.0.1:9/x"}, status=400)
    assert "internal address" in data["error"]


async def test_callback_refused_when_flow_outlives_zapier_callbacks(connector):
    """A flow waiting longer than 30 days cannot take a Zapier callback URL (it would expire)."""
    client = await connector(flows={"news": {**DEFAULT_FLOW, "timeout": "45d"}})
    data = await zap(client, json={"callback_url": "https://hooks.zapier.com/x"}, status=400)
    assert "30 days" in data["error"]
    assert_catch_hook_shape(await zap(client, json={"subject": "no callback is fine"}))


def test_zapier_flow_with_long_timeout_is_refused_in_config(tmp_path):
    """`zapier = true` with a timeout over 30 days fails at startup, naming the flow and key."""
    with pytest.raises(ConfigError, match=r"flows\.news.*30d or less"):
        make_settings(tmp_path, flows={"news": {**DEFAULT_FLOW, "zapier": True, "timeout": "31d"}})
    make_settings(tmp_path, flows={"news": {**DEFAULT_FLOW, "zapier": True, "timeout": "30d"}})


# -- the "New Decision" REST hook -------------------------------------------------------------


async def subscribe(client, target_url, flow=None, status=201):
    body = {"target_url": target_url} if flow is None else {"target_url": target_url, "flow": flow}
    response = await client.post("/zapier/subscriptions", json=body, headers=AUTH)
    data = await response.json()
    assert response.status == status, data
    return data


async def test_subscription_lifecycle(connector, receiver):
    """Subscribe, receive each decision, list recent ones, unsubscribe, and hear no more."""
    other = {**DEFAULT_FLOW, "title": "Other"}
    client = await connector(flows={"news": DEFAULT_FLOW, "other": other})
    mine = await subscribe(client, f"{receiver.url}/mine", "news")
    assert list(mine) == ["id"]
    everything = await subscribe(client, f"{receiver.url}/all")

    first = await zap(client, json={"subject": "one"})
    await decide(client, first["id"])
    calls = await receiver.wait_for(2)
    assert sorted(c.path_qs for c in calls) == ["/all", "/mine"]
    payloads = [json.loads(c.body) for c in calls]
    assert all(p["run_id"] == first["id"] and p["decision"] == "approved" for p in payloads)
    assert calls[0].headers["webhook-id"] != calls[1].headers["webhook-id"]

    # A decision of another flow reaches only the subscription to every flow.
    elsewhere = await zap(client, path="/zapier/other", json={"subject": "two"})
    await decide(client, elsewhere["id"], "reject")
    calls = await receiver.wait_for(3)
    assert calls[2].path_qs == "/all" and json.loads(calls[2].body)["run_id"] == elsewhere["id"]

    response = await client.get("/zapier/decisions", headers=AUTH)
    recent = await response.json()
    assert [d["run_id"] for d in recent] == [elsewhere["id"], first["id"]]
    assert recent[0] == json.loads(calls[2].body)
    response = await client.get("/zapier/decisions?flow=news&limit=5", headers=AUTH)
    assert [d["run_id"] for d in await response.json()] == [first["id"]]
    response = await client.get("/zapier/decisions?limit=1", headers=AUTH)
    assert [d["run_id"] for d in await response.json()] == [elsewhere["id"]]

    response = await client.delete(f"/zapier/subscriptions/{mine['id']}", headers=AUTH)
    assert response.status == 204
    response = await client.delete(f"/zapier/subscriptions/{mine['id']}", headers=AUTH)
    assert response.status == 404
    third = await zap(client, json={"subject": "three"})
    await decide(client, third["id"])
    calls = await receiver.wait_for(4)
    # Both subscriptions were fanned out together, so "/all" arriving proves "/mine" was skipped.
    assert [c.path_qs for c in calls[3:]] == ["/all"]
    assert json.loads(calls[3].body)["run_id"] == third["id"]
    assert everything["id"] != mine["id"]


async def test_policy_auto_approval_reaches_subscribers(connector, receiver):
    """A run approved at once by the flow's auto_approve rule is still POSTed to subscribers."""
    flow = {**DEFAULT_FLOW, "auto_approve": "risk.amount < 100"}
    client = await connector(flows={"news": flow})
    await subscribe(client, f"{receiver.url}/all")
    data = await zap(client, data={"subject": "Hi", "risk": '{"amount": 40}'})
    (call,) = await receiver.wait_for(1)
    payload = json.loads(call.body)
    assert payload["run_id"] == data["id"] and payload["decided_by"] == "policy"
    assert payload["approved"] is True


async def test_target_answering_410_is_unsubscribed(client, receiver):
    """A subscriber that answers 410 Gone is removed and gets no further decisions."""
    receiver.statuses.append((410, "gone"))
    gone = await subscribe(client, f"{receiver.url}/gone")
    first = await zap(client, json={"subject": "one"})
    await decide(client, first["id"])
    await receiver.wait_for(1)

    async def hook_events():
        run = await fetch_run(client, first["id"])
        return [e["detail"] for e in run["events"] if e["kind"] == "hook"]

    (event,) = await eventually(hook_events)
    assert event["http_status"] == 410 and event["removed"] is True
    response = await client.delete(f"/zapier/subscriptions/{gone['id']}", headers=AUTH)
    assert response.status == 404

    # The next decision reaches only a live subscriber.
    await subscribe(client, f"{receiver.url}/live")
    second = await zap(client, json={"subject": "two"})
    await decide(client, second["id"])
    calls = await receiver.wait_for(2)
    assert [c.path_qs for c in calls] == ["/gone", "/live"]


async def test_failed_hook_delivery_is_retried(client, receiver):
    """A subscriber answering 503 gets the same decision again, with the same webhook-id."""
    receiver.statuses.append((503, "busy"))
    await subscribe(client, f"{receiver.url}/flaky")
    run = await zap(client, json={"subject": "one"})
    await decide(client, run["id"])
    first, second = await receiver.wait_for(2)
    assert first.body == second.body
    assert first.headers["webhook-id"] == second.headers["webhook-id"]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"target_url": "http://127.0.0.1:9/x"}, 400, "internal address"),
        ({"target_url": "ftp://example.com/x"}, 400, "http or https"),
        ({}, 400, "target_url is required"),
        ({"target_url": "https://hooks.zapier.com/x", "flow": "nope"}, 404, "unknown flow"),
        ({"target_url": "https://hooks.zapier.com/x", "flow": 3}, 400, "flow must be a string"),
    ],
    ids=["internal", "scheme", "missing", "unknown-flow", "flow-type"],
)
async def test_bad_subscriptions_are_refused(connector, body, status, words):
    """Subscription targets get the resume URL's SSRF check; bad bodies get the error body."""
    client = await connector(resume_allow=[])
    response = await client.post("/zapier/subscriptions", json=body, headers=AUTH)
    data = await response.json()
    assert response.status == status and data["ok"] is False and words in data["error"], data


async def test_hook_endpoints_need_the_api_key(client):
    """Subscribing, unsubscribing and listing decisions all require the API key."""
    for method, path in [
        ("POST", "/zapier/subscriptions"),
        ("DELETE", "/zapier/subscriptions/sub_x"),
        ("GET", "/zapier/decisions"),
    ]:
        response = await client.request(method, path, json={"target_url": "https://x.org"})
        assert response.status == 401, path


async def test_decisions_limit_is_checked(client):
    """A limit outside 1..100 is a 400 with the error body."""
    response = await client.get("/zapier/decisions?limit=0", headers=AUTH)
    assert response.status == 400 and (await response.json())["ok"] is False
