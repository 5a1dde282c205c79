"""The n8n templates end to end against a real n8n 1.123 and the connector as a real process.

Once per module: the connector (`python -m connector serve`) and n8n start on free ports, with the
templates from integrations/n8n/templates imported and activated (pointed at the connector)
before n8n starts. Each test triggers a workflow through its production webhook, decides like a
reviewer on the real review page (or through the API), and reads the outcome from n8n's own
execution record in its SQLite database.
"""

from __future__ import annotations

import contextlib
import copy
import html
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from connector.links import LinkSigner

from .conftest import eventually

pytestmark = [pytest.mark.n8n, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "integrations" / "n8n" / "templates"
INSTALLER = ROOT.parent / "shared" / "n8n" / "install.sh"
TEMPLATE_CONNECTOR_URL = "http://127.0.0.1:8080"
API_KEY = "e2e-key"
KEY_HEADER = "X-Connector-Key"
SECRET = "e2e-link-signing-key-0123456789abcdef"
RESUME_SECRET = "wait-node-secret"
REVIEWER = {"email": "ann@example.com", "name": "Ann"}


# -- starting the two processes ---------------------------------------------------------------


def n8n_binary() -> str | None:
    """The n8n binary, installed by ../shared/n8n/install.sh (idempotent) when missing."""
    home = Path(os.environ.get("N8N_HOME", Path.home() / ".cache" / "hitl-n8n"))
    binary = home / "node_modules" / ".bin" / "n8n"
    if binary.exists():
        return str(binary)
    if not INSTALLER.exists():
        return None
    done = subprocess.run(
        ["bash", str(INSTALLER)], capture_output=True, text=True, timeout=1800, check=False
    )
    if done.returncode != 0:
        sys.stderr.write(f"n8n install failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}\n")
        return None
    path = done.stdout.strip().splitlines()[-1]
    return path if Path(path).exists() else None


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(check: Any, what: str, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    """Poll `check` until true; fail with the process log if it died or took too long."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with contextlib.suppress(OSError):
            if check():
                return
        time.sleep(0.2)
    raise RuntimeError(f"{what} not ready after {timeout:.0f} s")


def http_ok(url: str) -> bool:
    """True when GET url answers 200 (stdlib, for use outside an event loop)."""
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a process this module started, killing it if it does not exit."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


# -- the workflows: the templates as shipped, plus test variants of the basic gate -------------


def load_template(name: str) -> dict[str, Any]:
    """A template file as n8n would import it."""
    data: dict[str, Any] = json.loads((TEMPLATES / name).read_text(encoding="utf-8"))
    return data


def point_at(workflow: dict[str, Any], connector_url: str) -> dict[str, Any]:
    """The workflow with its connector URL replaced (what a builder does after import)."""
    text = json.dumps(workflow).replace(TEMPLATE_CONNECTOR_URL, connector_url)
    result: dict[str, Any] = json.loads(text)
    return result


def node_named(workflow: dict[str, Any], name: str) -> dict[str, Any]:
    """The node called `name`."""
    return next(n for n in workflow["nodes"] if n["name"] == name)


def variant(base: dict[str, Any], wf_id: str, path: str, flow: str) -> dict[str, Any]:
    """A copy of the basic gate with its own id, trigger path and connector flow."""
    workflow = copy.deepcopy(base)
    workflow["id"], workflow["name"] = wf_id, f"test: {path}"
    for node in workflow["nodes"]:
        node["id"] = str(uuid.uuid4())
        if "webhookId" in node:
            node["webhookId"] = str(uuid.uuid4())
    node_named(workflow, "New request")["parameters"]["path"] = path
    ask = node_named(workflow, "Ask for approval")["parameters"]
    ask["url"] = ask["url"].replace("/n8n/approval", f"/n8n/{flow}")
    return workflow


def slow_before_wait(workflow: dict[str, Any]) -> dict[str, Any]:
    """Put a 5-second pause between the connector call and the Wait node (the race)."""
    workflow["nodes"].append(
        {
            "parameters": {"amount": 5, "unit": "seconds"},
            "id": str(uuid.uuid4()),
            "name": "Slow step",
            "type": "n8n-nodes-base.wait",
            "typeVersion": 1.1,
            "position": [330, 500],
            "webhookId": str(uuid.uuid4()),
        }
    )
    links = workflow["connections"]
    links["Ask for approval"]["main"][0][0]["node"] = "Slow step"
    links["Slow step"] = {"main": [[{"node": "Wait for the decision", "type": "main", "index": 0}]]}
    return workflow


def extra_workflows(templates: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The basic gate in the variants the tests need besides the shipped templates."""
    base = templates["01-approval-gate.json"]
    race = slow_before_wait(variant(base, "hitlTestRace0001", "test-race", "approval"))
    timeout = variant(base, "hitlTestTimeout1", "test-timeout", "approval")
    node_named(timeout, "Wait for the decision")["parameters"].update(
        {"resumeAmount": 2, "resumeUnit": "seconds"}
    )
    get = variant(base, "hitlTestGetWait1", "test-get", "approval")
    node_named(get, "Wait for the decision")["parameters"]["httpMethod"] = "GET"
    secured = variant(base, "hitlTestHeader01", "test-header", "approval-secured")
    wait = node_named(secured, "Wait for the decision")
    wait["parameters"]["incomingAuthentication"] = "headerAuth"
    wait["credentials"] = {"httpHeaderAuth": {"id": "hitlResumeSecret", "name": "resume secret"}}
    wrong = copy.deepcopy(secured)
    wrong["id"], wrong["name"] = "hitlTestHeader02", "test: test-header-wrong"
    node_named(wrong, "New request")["parameters"]["path"] = "test-header-wrong"
    ask = node_named(wrong, "Ask for approval")["parameters"]
    ask["url"] = ask["url"].replace("/n8n/approval-secured", "/n8n/approval-wrong-secret")
    for node in wrong["nodes"]:
        node["id"] = str(uuid.uuid4())
        if "webhookId" in node:
            node["webhookId"] = str(uuid.uuid4())
    return [race, timeout, get, secured, wrong]


CREDENTIALS = [
    {
        "id": "hitlConnectorApiKey",
        "name": "hitl-connector API key",
        "type": "httpHeaderAuth",
        "data": {"name": KEY_HEADER, "value": API_KEY},
    },
    {
        "id": "hitlResumeSecret",
        "name": "resume secret",
        "type": "httpHeaderAuth",
        "data": {"name": "X-Resume-Secret", "value": RESUME_SECRET},
    },
]


def connector_config(port: int, data_dir: Path) -> str:
    """The connector's TOML: the flows the templates call, one reviewer, fast retries."""
    reviewer = f'reviewers = [{{ email = "{REVIEWER["email"]}", name = "{REVIEWER["name"]}" }}]'
    return f"""
public_url = "http://127.0.0.1:{port}"
host = "127.0.0.1"
port = {port}
data_dir = "{data_dir}"
api_keys = ["{API_KEY}"]
api_key_header = "{KEY_HEADER}"
secret_keys = ["{SECRET}"]
resume_allow = ["127.0.0.1/32"]
retry_base_delay = "0.2s"
log_level = "WARNING"

[flows.approval]
{reviewer}
[flows.approval-secured]
{reviewer}
resume_headers = {{ X-Resume-Secret = "{RESUME_SECRET}" }}
[flows.approval-wrong-secret]
{reviewer}
resume_headers = {{ X-Resume-Secret = "not-the-secret" }}
[flows.crm-update]
{reviewer}
editable = ["owner", "stage", "amount"]
[flows.email-draft]
{reviewer}
editable = ["subject", "body"]
[flows.agent-tools]
{reviewer}
editable = ["args"]
"""


@dataclass
class Stack:
    """The running connector and n8n, and where to reach them."""

    connector_url: str
    n8n_url: str
    n8n_db: Path
    timeout_marker: str


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """Start the connector and n8n (templates imported and active) once for the module."""
    binary = n8n_binary()
    if binary is None:
        pytest.skip(
            "n8n END-TO-END TESTS SKIPPED: n8n could not be installed"
            f" (run {INSTALLER} and see its output)"
        )
    # Not under pytest's basetemp: other pytest sessions on the machine rotate those away.
    tmp = Path(tempfile.mkdtemp(prefix="hitl-n8n-e2e-"))
    connector_port, n8n_port = free_port(), free_port()
    connector_url = f"http://127.0.0.1:{connector_port}"
    n8n_url = f"http://127.0.0.1:{n8n_port}"

    config = tmp / "connector.toml"
    config.write_text(connector_config(connector_port, tmp / "var"), encoding="utf-8")
    connector_log = (tmp / "connector.log").open("wb")
    connector = subprocess.Popen(
        [sys.executable, "-m", "connector", "serve", "--config", str(config)],
        stdout=connector_log,
        stderr=subprocess.STDOUT,
        cwd=tmp,
    )

    templates = {p.name: load_template(p.name) for p in sorted(TEMPLATES.glob("*.json"))}
    workflows = [point_at(w, connector_url) for w in templates.values()]
    workflows += [point_at(w, connector_url) for w in extra_workflows(templates)]
    (tmp / "workflows").mkdir()
    for workflow in workflows:
        (tmp / "workflows" / f"{workflow['id']}.json").write_text(json.dumps(workflow))
    (tmp / "credentials.json").write_text(json.dumps(CREDENTIALS))
    env = {
        **os.environ,
        "N8N_USER_FOLDER": str(tmp / "n8n"),
        "N8N_PORT": str(n8n_port),
        "N8N_LISTEN_ADDRESS": "127.0.0.1",
        "N8N_DIAGNOSTICS_ENABLED": "false",
        "N8N_VERSION_NOTIFICATIONS_ENABLED": "false",
        "N8N_ENCRYPTION_KEY": "e2e-encryption-key",
        "N8N_SECURE_COOKIE": "false",
        "N8N_ENFORCE_SETTINGS_FILE_PERMISSIONS": "false",
        "N8N_LOG_LEVEL": "info",
        "WEBHOOK_URL": f"{n8n_url}/",
    }
    for command in (
        ["import:credentials", f"--input={tmp / 'credentials.json'}"],
        ["import:workflow", "--separate", f"--input={tmp / 'workflows'}"],
        ["update:workflow", "--all", "--active=true"],
    ):
        done = subprocess.run(
            [binary, *command], env=env, capture_output=True, text=True, timeout=180, check=False
        )
        assert done.returncode == 0, f"n8n {command[0]} failed:\n{done.stdout}\n{done.stderr}"

    n8n_log_path = tmp / "n8n.log"
    n8n_log = n8n_log_path.open("wb")
    n8n = subprocess.Popen([binary, "start"], env=env, stdout=n8n_log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: http_ok(f"{connector_url}/healthz"), "connector", 30, connector)
        wait_until(lambda: http_ok(f"{n8n_url}/healthz"), "n8n", 120, n8n)
        wait_until(
            lambda: (
                n8n_log_path.read_text(errors="replace").count("Activated workflow")
                >= len(workflows)
            ),
            "n8n workflow activation",
            60,
            n8n,
        )
        # n8n resumes timed-out Wait nodes from a poll that runs once a minute; starting the
        # timeout case now lets that minute pass while the other tests run.
        marker = f"timeout-{uuid.uuid4().hex[:8]}"
        trigger_sync(n8n_url, "test-timeout", {"title": marker, "action": {"post": marker}})
        yield Stack(connector_url, n8n_url, tmp / "n8n" / ".n8n" / "database.sqlite", marker)
    except BaseException:
        for path in (tmp / "connector.log", n8n_log_path):
            sys.stderr.write(f"--- {path.name} ---\n{path.read_text(errors='replace')[-4000:]}\n")
        raise
    finally:
        stop(n8n)
        stop(connector)
        n8n_log.close()
        connector_log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def trigger_sync(n8n_url: str, path: str, body: dict[str, Any]) -> None:
    """POST to a workflow's production webhook (stdlib, outside an event loop)."""
    request = urllib.request.Request(
        f"{n8n_url}/webhook/{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


# -- talking to them ------------------------------------------------------------------------------

HEADERS = {KEY_HEADER: API_KEY}


@pytest.fixture
async def http() -> Any:
    """An HTTP client for the test's own event loop."""
    async with aiohttp.ClientSession() as session:
        yield session


async def trigger(http: aiohttp.ClientSession, stack: Stack, path: str, body: Any) -> None:
    """Start a workflow through its production webhook, as the outside world would."""
    async with http.post(f"{stack.n8n_url}/webhook/{path}", json=body) as response:
        assert response.status == 200, await response.text()


async def run_titled(
    http: aiohttp.ClientSession, stack: Stack, flow: str, marker: str
) -> dict[str, Any]:
    """The connector run the workflow created (found by the unique marker in its title)."""

    async def find() -> dict[str, Any] | None:
        async with http.get(
            f"{stack.connector_url}/v1/runs", params={"flow": flow}, headers=HEADERS
        ) as response:
            runs = (await response.json())["runs"]
        return next((r for r in runs if marker in r["title"]), None)

    run: dict[str, Any] = await eventually(find, timeout=30)
    return run


async def get_run(http: aiohttp.ClientSession, stack: Stack, run_id: str) -> dict[str, Any]:
    """The run with its audit trail."""
    async with http.get(f"{stack.connector_url}/v1/runs/{run_id}", headers=HEADERS) as response:
        data: dict[str, Any] = await response.json()
        return data


async def delivery(
    http: aiohttp.ClientSession, stack: Stack, run_id: str, status: str
) -> dict[str, Any]:
    """The run once its resume delivery reached `status` (delivered or failed)."""

    async def check() -> dict[str, Any] | None:
        run = await get_run(http, stack, run_id)
        return run if run["delivery"] and run["delivery"]["status"] == status else None

    run: dict[str, Any] = await eventually(check, timeout=60)
    return run


async def review_link(http: aiohttp.ClientSession, stack: Stack, run_id: str) -> str:
    """The reviewer's link to this run, as mailed (read from the dev mailbox)."""
    signer = LinkSigner([SECRET], max_age=86400 * 90)

    async def find() -> str | None:
        async with http.get(f"{stack.connector_url}/dev/mailbox") as response:
            page = await response.text()
        for link in re.findall(r'href="(http://[^"]+/r/[^"?]+)', page):
            if signer.verify(link.rsplit("/", 1)[1]).run_id == run_id:
                return html.unescape(link)
        return None

    link: str = await eventually(find, timeout=30)
    return link


class FormFields(HTMLParser):
    """The editable fields of the review form with their current values, as a browser sends."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        name = attr.get("name") or ""
        if tag == "input" and name.startswith("field."):
            self.fields[name] = attr.get("value") or ""
        elif tag == "textarea" and name.startswith("field."):
            self._textarea = name
            self.fields[name] = ""

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.fields[self._textarea] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea":
            self._textarea = None


async def decide_on_page(
    http: aiohttp.ClientSession,
    link: str,
    choice: str,
    *,
    edits: dict[str, str] | None = None,
    comment: str = "",
) -> None:
    """Open the review page, change fields, press Approve or Reject."""
    async with http.get(link) as page:
        assert page.status == 200
        parser = FormFields()
        parser.feed(await page.text())
    form = {**parser.fields, **{f"field.{k}": v for k, v in (edits or {}).items()}}
    form.update({"choice": choice, "comment": comment})
    async with http.post(link, data=form) as response:
        text = await response.text()
        assert response.status == 200, text
        assert ("approved" if choice == "approve" else "rejected") in text


async def decide_by_api(
    http: aiohttp.ClientSession, stack: Stack, run_id: str, decision: str
) -> None:
    """An operator or program decides through the API."""
    async with http.post(
        f"{stack.connector_url}/v1/runs/{run_id}/decision",
        json={"decision": decision, "reviewer": REVIEWER["email"]},
        headers=HEADERS,
    ) as response:
        assert response.status == 200, await response.text()


# -- n8n's own record ---------------------------------------------------------------------------


def unflatten(text: str) -> Any:
    """Decode n8n's execution data (the `flatted` format: a list, strings are references)."""
    values = json.loads(text)
    memo: dict[int, Any] = {}

    def revive(index: int) -> Any:
        if index in memo:
            return memo[index]
        value = values[index]
        if isinstance(value, list):
            items: list[Any] = []
            memo[index] = items
            items.extend(resolve(v) for v in value)
            return items
        if isinstance(value, dict):
            obj: dict[str, Any] = {}
            memo[index] = obj
            obj.update({k: resolve(v) for k, v in value.items()})
            return obj
        return value

    def resolve(value: Any) -> Any:
        return revive(int(value)) if isinstance(value, str) else value

    return revive(0)


@dataclass
class Execution:
    """One n8n execution as its database records it."""

    id: str
    status: str
    data: dict[str, Any]

    def ran(self, node: str) -> bool:
        """Whether `node` executed."""
        return node in self.data["resultData"]["runData"]

    def output(self, node: str) -> list[dict[str, Any]]:
        """The items the node's (last) run produced on its first output."""
        run = self.data["resultData"]["runData"][node][-1]
        return [item["json"] for item in run["data"]["main"][0]]

    @property
    def last_node(self) -> str:
        return str(self.data["resultData"].get("lastNodeExecuted"))


def read_execution(db: Path, execution_id: str) -> Execution | None:
    """The execution from n8n's SQLite database (read-only, while n8n runs)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        row = conn.execute(
            "SELECT e.status, d.data FROM execution_entity e"
            " JOIN execution_data d ON d.executionId = e.id WHERE e.id = ?",
            (int(execution_id),),
        ).fetchone()
    if row is None:
        return None
    return Execution(execution_id, row[0], unflatten(row[1]))


async def execution_in(stack: Stack, execution_id: str, *statuses: str) -> Execution:
    """The execution once its status is one of `statuses`."""

    async def check() -> Execution | None:
        execution = read_execution(stack.n8n_db, execution_id)
        return execution if execution and execution.status in statuses else None

    found: Execution = await eventually(check, timeout=60)
    return found


async def finished(stack: Stack, execution_id: str, at: str, *, timeout: float = 60) -> Execution:
    """The execution once it ended successfully at node `at`.

    n8n writes the status and the execution data in two steps, so `success` may be visible a
    moment before the data of the nodes after the Wait node: wait for both.
    """
    seen: list[Execution] = []

    async def check() -> Execution | None:
        execution = read_execution(stack.n8n_db, execution_id)
        if execution is None:
            return None
        seen[:] = [execution]
        assert execution.status not in ("error", "crashed", "canceled"), execution.data[
            "resultData"
        ].get("error")
        return execution if execution.status == "success" and execution.last_node == at else None

    try:
        found: Execution = await eventually(check, timeout=timeout)
    except TimeoutError:
        last = seen[0] if seen else None
        state = f"{last.status} at {last.last_node}" if last else "not found"
        raise AssertionError(f"execution {execution_id} did not end at {at!r}: {state}") from None
    return found


# -- the templates --------------------------------------------------------------------------------


def marked(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


async def test_basic_gate_approved_on_review_page(http, stack):
    """Approving on the review page resumes n8n; the approved branch gets the action."""
    title = marked("Publish post")
    action = {"post_id": 7, "channel": "blog"}
    await trigger(http, stack, "hitl-approval-gate", {"title": title, "action": action})
    run = await run_titled(http, stack, "approval", title)
    assert run["requested_by"] == "n8n: hitl: basic approval gate"
    execution_id = run["idempotency_key"]  # the template sends {{ $execution.id }}
    link = await review_link(http, stack, run["id"])
    await decide_on_page(http, link, "approve", comment="looks good")

    execution = await finished(stack, execution_id, "Approved: continue")
    (out,) = execution.output("Approved: continue")
    assert out == {
        "outcome": "approved",
        "action": action,
        "decided_by": "reviewer",
        "reviewer": "Ann",
        "comment": "looks good",
    }
    assert not execution.ran("Rejected: stop") and not execution.ran("No decision in time")
    done = await delivery(http, stack, run["id"], "delivered")
    assert done["delivery"]["url"].endswith(f"/webhook-waiting/{execution_id}")


async def test_crm_update_uses_reviewer_edits(http, stack):
    """A reviewer's edit reaches the CRM update node through {{ $json.body.action }}."""
    record = marked("deal")
    await trigger(
        http,
        stack,
        "hitl-crm-update",
        {
            "record_id": record,
            "owner": "ann",
            "stage": "won",
            "amount": 1200,
            "current": {"owner": "carl", "stage": "negotiation"},
        },
    )
    run = await run_titled(http, stack, "crm-update", record)
    assert run["action"] == {"record_id": record, "owner": "ann", "stage": "won", "amount": 1200}
    assert run["context"] == {"current": {"owner": "carl", "stage": "negotiation"}}
    link = await review_link(http, stack, run["id"])
    await decide_on_page(http, link, "approve", edits={"owner": "bob", "amount": "1100"})

    execution = await finished(stack, run["idempotency_key"], "Update CRM record")
    (out,) = execution.output("Update CRM record")
    assert out == {
        "record_id": record,
        "owner": "bob",
        "stage": "won",
        "amount": 1100,
        "edited_by_reviewer": True,
        "approved_by": "Ann",
    }
    (wait_out,) = execution.output("Wait for the decision")
    assert wait_out["body"]["changes"] == {
        "owner": {"from": "ann", "to": "bob"},
        "amount": {"from": 1200, "to": 1100},
    }


async def test_email_draft_rejected(http, stack):
    """Rejecting the draft takes the 'Do not send' branch with the reviewer's comment."""
    sender = f"dana-{uuid.uuid4().hex[:8]}@example.com"
    await trigger(
        http,
        stack,
        "hitl-email-draft",
        {
            "from": sender,
            "name": "Dana",
            "subject": "Invoice 881",
            "message": "Why was I charged twice?",
        },
    )
    run = await run_titled(http, stack, "email-draft", sender)
    assert run["action"]["to"] == sender and run["action"]["subject"] == "Re: Invoice 881"
    assert run["action"]["body"].startswith("Hello Dana,")
    assert run["context"] == {"customer_message": "Why was I charged twice?"}
    link = await review_link(http, stack, run["id"])
    await decide_on_page(http, link, "reject", comment="Refund first, then reply")

    execution = await finished(stack, run["idempotency_key"], "Do not send")
    (out,) = execution.output("Do not send")
    assert out == {"outcome": "rejected", "to": sender, "reason": "Refund first, then reply"}
    assert not execution.ran("Send the email")


async def test_agent_tool_call_runs_with_edited_arguments(http, stack):
    """An approved (edited) tool call runs with the reviewer's arguments."""
    order = f"A{uuid.uuid4().hex[:6]}"
    await trigger(
        http, stack, "hitl-agent-tool", {"request": f"Please refund order {order}, 25 EUR"}
    )

    async def proposed() -> dict[str, Any] | None:
        async with http.get(
            f"{stack.connector_url}/v1/runs", params={"flow": "agent-tools"}, headers=HEADERS
        ) as response:
            runs = (await response.json())["runs"]
        return next((r for r in runs if r["action"]["args"]["order_id"] == order), None)

    run = await eventually(proposed, timeout=30)
    assert run["action"] == {"tool": "refund_order", "args": {"order_id": order, "amount": 25}}
    assert run["risk"] == {"confidence": 0.72}
    link = await review_link(http, stack, run["id"])
    edited = json.dumps({"order_id": order, "amount": 20})
    await decide_on_page(http, link, "approve", edits={"args": edited})

    execution = await finished(stack, run["idempotency_key"], "Run the tool")
    (out,) = execution.output("Run the tool")
    assert out["tool_result"] == f"refunded 20 on order {order}"
    assert out["approved_by"] == "Ann"


async def test_agent_tool_call_rejected_reports_back(http, stack):
    """A rejected tool call gives the agent a tool_result saying so, and nothing runs."""
    order = f"R{uuid.uuid4().hex[:6]}"
    await trigger(http, stack, "hitl-agent-tool", {"request": f"refund order {order} 9 EUR"})

    async def proposed() -> dict[str, Any] | None:
        async with http.get(
            f"{stack.connector_url}/v1/runs", params={"flow": "agent-tools"}, headers=HEADERS
        ) as response:
            runs = (await response.json())["runs"]
        return next((r for r in runs if r["action"]["args"]["order_id"] == order), None)

    run = await eventually(proposed, timeout=30)
    link = await review_link(http, stack, run["id"])
    await decide_on_page(http, link, "reject", comment="not eligible")

    execution = await finished(stack, run["idempotency_key"], "Tell the agent: rejected")
    (out,) = execution.output("Tell the agent: rejected")
    assert out == {
        "tool": "refund_order",
        "tool_result": "The reviewer rejected this tool call: not eligible",
    }
    assert not execution.ran("Run the tool")


# -- resuming edge cases ------------------------------------------------------------------------


async def test_decision_before_wait_node_is_retried_until_it_lands(http, stack):
    """A decision that arrives while n8n is still running (409) is delivered once it waits."""
    title = marked("Race")
    await trigger(http, stack, "test-race", {"title": title, "action": {"x": 1}})
    run = await run_titled(http, stack, "approval", title)
    await decide_by_api(http, stack, run["id"], "approve")  # n8n is in its 5 s slow step

    done = await delivery(http, stack, run["id"], "delivered")
    attempts = [e["detail"] for e in done["events"] if e["kind"] == "delivery"]
    assert attempts[0]["result"] == "retry" and attempts[0]["http_status"] == 409
    assert "is running already" in attempts[0]["error"]
    assert attempts[-1]["result"] == "done"
    execution = await finished(stack, run["idempotency_key"], "Approved: continue")
    (out,) = execution.output("Approved: continue")
    assert out["decided_by"] == "api" and out["action"] == {"x": 1}


async def test_wait_node_on_get_fails_visibly(http, stack):
    """A Wait node left on GET answers 404; the run shows it at once instead of retrying."""
    title = marked("GET wait")
    await trigger(http, stack, "test-get", {"title": title, "action": {"x": 2}})
    run = await run_titled(http, stack, "approval", title)
    execution_id = run["idempotency_key"]
    await execution_in(stack, execution_id, "waiting")
    await decide_by_api(http, stack, run["id"], "approve")

    failed = await delivery(http, stack, run["id"], "failed")
    assert failed["delivery"]["attempts"] == 1
    assert failed["delivery"]["last_status"] == 404
    assert "matching path/method" in failed["delivery"]["last_error"]
    execution = read_execution(stack.n8n_db, execution_id)
    assert execution is not None and execution.status == "waiting"


async def test_wait_node_header_auth_uses_flow_resume_headers(http, stack):
    """A Wait node with Header Auth resumes with the flow's resume_headers."""
    title = marked("Secured")
    await trigger(http, stack, "test-header", {"title": title, "action": {"x": 3}})
    run = await run_titled(http, stack, "approval-secured", title)
    link = await review_link(http, stack, run["id"])
    await decide_on_page(http, link, "approve")

    execution = await finished(stack, run["idempotency_key"], "Approved: continue")
    (out,) = execution.output("Approved: continue")
    assert out["outcome"] == "approved" and out["action"] == {"x": 3}


async def test_wait_node_header_auth_mismatch_fails_visibly(http, stack):
    """A wrong resume header is refused by n8n (403); the run shows it and n8n keeps waiting."""
    title = marked("Wrong secret")
    await trigger(http, stack, "test-header-wrong", {"title": title, "action": {"x": 4}})
    run = await run_titled(http, stack, "approval-wrong-secret", title)
    execution_id = run["idempotency_key"]
    await execution_in(stack, execution_id, "waiting")
    await decide_by_api(http, stack, run["id"], "approve")

    failed = await delivery(http, stack, run["id"], "failed")
    assert failed["delivery"]["attempts"] == 1
    assert failed["delivery"]["last_status"] == 403
    assert "Authorization data is wrong" in failed["delivery"]["last_error"]
    execution = read_execution(stack.n8n_db, execution_id)
    assert execution is not None and execution.status == "waiting"


async def test_limit_wait_time_path_then_late_decision(http, stack):
    """With no decision in time n8n takes the timeout branch; a late decision fails visibly."""
    run = await run_titled(http, stack, "approval", stack.timeout_marker)
    execution_id = run["idempotency_key"]
    # n8n checks for expired waits once a minute; the fixture started this run early.
    execution = await finished(stack, execution_id, "No decision in time", timeout=100)
    (out,) = execution.output("No decision in time")
    assert out == {"outcome": "timed_out", "run_id": run["id"]}
    assert not execution.ran("Approved?")

    await decide_by_api(http, stack, run["id"], "reject")
    failed = await delivery(http, stack, run["id"], "failed")
    assert failed["delivery"]["attempts"] == 1 and failed["delivery"]["last_status"] == 409
    assert "has finished already" in failed["delivery"]["last_error"]
