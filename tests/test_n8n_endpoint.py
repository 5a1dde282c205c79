"""POST /n8n/{flow} without n8n: body shapes, auth variants, errors, and n8n's resume answers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from connector.config import ConfigError
from connector.delivery import classify, reason

from .conftest import API_KEY, AUTH, DEFAULT_FLOW, eventually, fetch_run, make_settings

N8N_FLOWS = {
    "approval": {**DEFAULT_FLOW, "editable": ["owner"]},
    "fixed": {**DEFAULT_FLOW, "resume_url": "http://127.0.0.1:9/fixed"},
}


@pytest.fixture
async def n8n_client(connector):
    """The connector with n8n-style flows."""
    return await connector(flows=N8N_FLOWS)


def n8n_body(receiver, **extra: Any) -> dict[str, Any]:
    """What the templates' HTTP Request node sends."""
    body: dict[str, Any] = {
        "resumeUrl": f"{receiver.url}/webhook-waiting/17",
        "idempotencyKey": "17",
        "title": "Update deal-42",
        "summary": "Owner change proposed by the assistant",
        "action": {"record_id": "deal-42", "owner": "ann"},
        "context": {"current": {"owner": "carl"}},
        "risk": {"confidence": 0.7},
        "requestedBy": "n8n: CRM sync",
    }
    body.update(extra)
    return body


async def post(client, body: Any, *, flow: str = "approval", headers=None, status: int = 201):
    """POST to /n8n/{flow} and return the JSON answer after checking the status."""
    response = await client.post(
        f"/n8n/{flow}", json=body, headers=AUTH if headers is None else headers
    )
    data = await response.json()
    assert response.status == status, data
    return data


async def test_n8n_body_becomes_a_run(n8n_client, receiver):
    """The n8n-style keys fill the run: action, title, context, risk, requester, key, resume."""
    run = await post(n8n_client, n8n_body(receiver))
    assert run["flow"] == "approval" and run["status"] == "pending"
    assert run["action"] == {"record_id": "deal-42", "owner": "ann"}
    assert run["title"] == "Update deal-42"
    assert run["summary"] == "Owner change proposed by the assistant"
    assert run["context"] == {"current": {"owner": "carl"}}
    assert run["risk"] == {"confidence": 0.7}
    assert run["requested_by"] == "n8n: CRM sync"
    assert run["idempotency_key"] == "17"
    stored = await fetch_run(n8n_client, run["id"])
    assert stored["events"][0]["detail"]["source"] == "n8n"


async def test_decision_goes_to_resume_url_byte_exact(n8n_client, receiver):
    """The decision is POSTed to the resumeUrl exactly as sent, query string included."""
    url = f"{receiver.url}/webhook-waiting/17?signature=a%2Fb%3D"
    run = await post(n8n_client, n8n_body(receiver, resumeUrl=url))
    response = await n8n_client.post(
        f"/v1/runs/{run['id']}/decision",
        json={"decision": "approve", "reviewer": "ann@example.com", "action": {"owner": "bob"}},
        headers=AUTH,
    )
    assert response.status == 200
    (call,) = await receiver.wait_for(1)
    assert call.path_qs == "/webhook-waiting/17?signature=a%2Fb%3D"
    payload = json.loads(call.body)
    assert payload["approved"] is True
    assert payload["action"] == {"record_id": "deal-42", "owner": "bob"}


async def test_without_action_key_the_body_is_the_action(n8n_client, receiver):
    """With no `action` key, every field that is not a reserved key is the proposed action."""
    body = {
        "resumeUrl": f"{receiver.url}/webhook-waiting/3",
        "title": "Send the reply",
        "to": "cus@example.com",
        "subject": "Re: invoice",
        "lines": [1, 2],
    }
    run = await post(n8n_client, body)
    assert run["action"] == {"to": "cus@example.com", "subject": "Re: invoice", "lines": [1, 2]}
    assert run["title"] == "Send the reply"


async def test_snake_case_spellings_are_accepted(n8n_client, receiver):
    """resume_url, idempotency_key and requested_by work like their camelCase forms."""
    body = {
        "resume_url": f"{receiver.url}/webhook-waiting/4",
        "idempotency_key": "4",
        "requested_by": "zap",
        "action": {"owner": "ann"},
    }
    run = await post(n8n_client, body)
    assert run["idempotency_key"] == "4" and run["requested_by"] == "zap"


async def test_fields_sent_as_text_are_read_as_json(n8n_client, receiver):
    """n8n's "Using Fields Below" sends text: a JSON object in action/context is accepted."""
    body = n8n_body(
        receiver,
        action=json.dumps({"owner": "ann"}),
        context=json.dumps({"source": "form"}),
        idempotencyKey=42,
    )
    run = await post(n8n_client, body)
    assert run["action"] == {"owner": "ann"}
    assert run["context"] == {"source": "form"}
    assert run["idempotency_key"] == "42"


async def test_retried_http_node_gets_the_same_run(n8n_client, receiver):
    """The same execution id and resumeUrl again answers 200 with the first run."""
    first = await post(n8n_client, n8n_body(receiver))
    again = await post(n8n_client, n8n_body(receiver, title="changed"), status=200)
    assert again["id"] == first["id"] and again["title"] == "Update deal-42"


async def test_same_key_from_another_execution_is_refused(n8n_client, receiver):
    """A reused execution id with another resumeUrl (new n8n database) gets 409, not the old run."""
    await post(n8n_client, n8n_body(receiver))
    other = n8n_body(receiver, resumeUrl=f"{receiver.url}/other-n8n/webhook-waiting/17")
    error = await post(n8n_client, other, status=409)
    assert "already used by another execution" in error["error"]


async def test_resume_url_is_required(n8n_client, receiver):
    """Without resumeUrl (and no flow resume_url) the answer says what to send."""
    body = n8n_body(receiver)
    del body["resumeUrl"]
    error = await post(n8n_client, body, status=422)
    assert "$execution.resumeUrl" in error["error"]


async def test_flow_resume_url_makes_resume_url_optional(n8n_client, receiver):
    """A flow with its own resume_url accepts a body without resumeUrl."""
    body = n8n_body(receiver)
    del body["resumeUrl"]
    run = await post(n8n_client, body, flow="fixed")
    assert run["flow"] == "fixed"


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {API_KEY}"},
        {"X-API-Key": API_KEY},
        {"X-Connector-Key": API_KEY},
        {"X-Connector-Key": "wrong", "Authorization": f"Bearer {API_KEY}"},
    ],
    ids=["bearer", "x-api-key", "custom-header", "custom-wrong-bearer-right"],
)
async def test_api_key_header_variants(connector, receiver, headers):
    """Bearer, X-API-Key and the operator's api_key_header all authenticate."""
    client = await connector(flows=N8N_FLOWS, api_key_header="X-Connector-Key")
    await post(client, n8n_body(receiver), headers=headers)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"X-Connector-Key": API_KEY}],
    ids=["none", "wrong", "custom-header-not-configured"],
)
async def test_missing_or_wrong_key_is_refused(n8n_client, receiver, headers):
    """No key, a wrong key, or an unconfigured custom header gets 401."""
    error = await post(n8n_client, n8n_body(receiver), headers=headers, status=401)
    assert error == {"ok": False, "error": "missing or wrong API key", "status": 401}


def test_api_key_header_must_be_a_header_name(tmp_path):
    """A config with an impossible header name fails at start, naming the key."""
    with pytest.raises(ConfigError, match="api_key_header"):
        make_settings(tmp_path, api_key_header="X Key: no")


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"action": ["not", "an", "object"]}, 422, "action must be a JSON object"),
        ({"action": "not json"}, 422, "action must be a JSON object"),
        ({"context": 5}, 422, "context must be a JSON object"),
        ({"extra": 1}, 422, "unknown key(s) beside action: extra"),
        ({"resume_url": "http://x.example/"}, 422, "given twice"),
        ({"title": {"a": 1}}, 422, "title must be a string"),
        ({"action": {}}, 422, "action: send the proposed action"),
        ({"resumeUrl": "ftp://127.0.0.1/x"}, 400, "http or https"),
        ({"resumeUrl": "http://10.0.0.5/webhook-waiting/1"}, 400, "resume_allow"),
        ({"title": "x" * 501}, 422, "title"),
    ],
    ids=[
        "action-list",
        "action-text",
        "context-number",
        "extra-key",
        "both-spellings",
        "title-object",
        "empty-action",
        "ftp",
        "private-address",
        "long-title",
    ],
)
async def test_bad_bodies_get_clear_errors(n8n_client, receiver, change, status, message):
    """Each malformed body gets a 4xx naming the problem, and no run is stored."""
    error = await post(n8n_client, n8n_body(receiver, **change), status=status)
    assert error["ok"] is False and message in error["error"]
    listed = await n8n_client.get("/v1/runs", headers=AUTH)
    assert (await listed.json())["runs"] == []


async def test_unknown_flow_and_bad_json(n8n_client, receiver):
    """An unknown flow is 404; a body that is not JSON is 400."""
    error = await post(n8n_client, n8n_body(receiver), flow="nope", status=404)
    assert "nope" in error["error"]
    response = await n8n_client.post(
        "/n8n/approval", data=b"{not json", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status == 400


# -- n8n's answers to the resume call (texts copied from n8n 1.123) --------------------------------

RUNNING = '{"code":409,"message":"The execution \\"12\\" is running already."}'
FINISHED = '{"code":409,"message":"The execution \\"12 has finished already."}'
FAILED = '{"code":409,"message":"The execution \\"12\\" has finished with error."}'
NO_WAIT = (
    '{"code":404,"message":"The workflow for execution \\"12\\" does not contain a waiting'
    ' webhook with a matching path/method."}'
)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, '{"message":"Workflow was started"}', "done"),
        (409, RUNNING, "retry"),
        (409, FINISHED, "failed"),
        (409, FAILED, "failed"),
        (404, NO_WAIT, "failed"),
        (404, '{"code":404,"message":"The execution \\"9\\" does not exist."}', "failed"),
        (401, "Authorization is required!", "failed"),
        (403, "Authorization data is wrong!", "failed"),
        (503, "unavailable", "retry"),
    ],
    ids=["ok", "running", "finished", "errored", "method", "gone", "401", "403", "503"],
)
def test_n8n_answers_are_classified(status, body, expected):
    """Only 'running already' and server errors are retried; n8n's other refusals are final."""
    assert classify(status, body) == expected


def test_reason_drops_n8n_stack_trace():
    """The run shows n8n's message, not its JSON envelope and stack trace."""
    body = '{"code":404,"message":"The execution \\"9\\" does not exist.","stacktrace":"at x"}'
    assert reason(body) == 'The execution "9" does not exist.'
    assert reason("plain text") == "plain text"


async def delivery_of(client, run_id, status):
    """The run once its delivery reached `status`."""

    async def check():
        run = await fetch_run(client, run_id)
        return run if run["delivery"] and run["delivery"]["status"] == status else None

    return await eventually(check)


async def test_running_already_is_retried_until_waiting(n8n_client, receiver):
    """A resume that beats the Wait node (409 running) is sent again until n8n accepts it."""
    receiver.statuses = [(409, RUNNING), (409, RUNNING)]
    run = await post(n8n_client, n8n_body(receiver))
    await n8n_client.post(f"/v1/runs/{run['id']}/cancel", headers=AUTH)
    done = await delivery_of(n8n_client, run["id"], "delivered")
    assert done["delivery"]["attempts"] == 3
    bodies = {call.body for call in await receiver.wait_for(3)}
    assert len(bodies) == 1  # every attempt sends the same bytes


@pytest.mark.parametrize(
    ("answer", "shown"),
    [
        ((409, FINISHED), 'HTTP 409: The execution "12 has finished already.'),
        ((404, NO_WAIT), "HTTP 404: The workflow for execution"),
        ((401, "Authorization is required!"), "HTTP 401: Authorization is required!"),
    ],
    ids=["finished", "get-post-mismatch", "unauthorized"],
)
async def test_final_refusals_are_visible_on_the_run(n8n_client, receiver, answer, shown):
    """A finished execution, a GET Wait node or bad resume auth fails once, shown on the run."""
    receiver.default_status = answer[0]
    receiver.statuses = [answer]
    run = await post(n8n_client, n8n_body(receiver))
    await n8n_client.post(f"/v1/runs/{run['id']}/cancel", headers=AUTH)
    failed = await delivery_of(n8n_client, run["id"], "failed")
    assert failed["delivery"]["attempts"] == 1
    assert failed["delivery"]["last_status"] == answer[0]
    assert failed["delivery"]["last_error"].startswith(shown)
