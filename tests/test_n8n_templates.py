"""The shipped n8n templates keep the settings the integration depends on (checked without n8n)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from connector.config import load_settings

INTEGRATION = Path(__file__).resolve().parent.parent / "integrations" / "n8n"
TEMPLATES = sorted((INTEGRATION / "templates").glob("*.json"))


def nodes_of(workflow: dict[str, Any], type_: str) -> list[dict[str, Any]]:
    return [n for n in workflow["nodes"] if n["type"] == f"n8n-nodes-base.{type_}"]


def test_there_are_four_templates():
    """Basic gate, CRM update, email draft and agent tool call are all shipped."""
    assert [p.name for p in TEMPLATES] == [
        "01-approval-gate.json",
        "02-crm-record-update.json",
        "03-email-draft-review.json",
        "04-agent-tool-call.json",
    ]


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_template_waits_on_post_with_a_time_limit(path):
    """The Wait node resumes on a POST webhook call and has a Limit Wait Time path."""
    workflow = json.loads(path.read_text(encoding="utf-8"))
    (wait,) = nodes_of(workflow, "wait")
    params = wait["parameters"]
    assert params["resume"] == "webhook"
    assert params["httpMethod"] == "POST"  # n8n's default GET answers every resume with 404
    assert params["limitWaitTime"] is True
    assert wait.get("webhookId")
    decision = workflow["connections"]["Decision arrived?"]["main"]
    assert len(decision) == 2 and decision[1], "the timeout (false) branch must lead somewhere"


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_template_calls_the_connector_like_the_docs_say(path):
    """The HTTP Request node sends resumeUrl and the execution id as idempotency key."""
    workflow = json.loads(path.read_text(encoding="utf-8"))
    (ask,) = nodes_of(workflow, "httpRequest")
    params = ask["parameters"]
    assert params["method"] == "POST"
    assert re.fullmatch(r"http://127\.0\.0\.1:8080/n8n/[a-z-]+", params["url"])
    assert '"resumeUrl": "{{ $execution.resumeUrl }}"' in params["jsonBody"]
    assert '"idempotencyKey": "{{ $execution.id }}"' in params["jsonBody"]
    assert params["genericAuthType"] == "httpHeaderAuth" and "httpHeaderAuth" in ask["credentials"]
    approved = next(n for n in workflow["nodes"] if n["name"] == "Approved?")
    condition = approved["parameters"]["conditions"]["conditions"][0]
    assert condition["leftValue"] == "={{ $json.body.approved }}"


def test_example_config_has_every_template_flow():
    """connector.n8n.toml loads and defines the flow each template calls."""
    settings = load_settings(INTEGRATION / "connector.n8n.toml")
    for path in TEMPLATES:
        workflow = json.loads(path.read_text(encoding="utf-8"))
        (ask,) = nodes_of(workflow, "httpRequest")
        flow = ask["parameters"]["url"].rsplit("/", 1)[1]
        assert flow in settings.flows, f"{path.name} calls flow {flow!r}"
