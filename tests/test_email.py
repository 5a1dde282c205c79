"""The email channel against a real SMTP server (aiosmtpd on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urljoin

import pytest

from connector.config import ConfigError
from connector.notify.email import OUTCOME_JOB, REMINDER_JOB
from connector.notify.email_render import in_words, shorten
from connector.web.keys import service_key, store_key

from .conftest import DEFAULT_FLOW, create_run, eventually, fetch_run, make_settings, run_body
from .emails import Page, html_of, local_path, text_of, urls_in, visible
from .mailserver import MailServer, self_signed_context

HOSTILE = '<script>alert(1)</script> "><img src=x onerror=alert(2)>'


async def events_of(client, run_id, kind):
    return [e for e in (await fetch_run(client, run_id))["events"] if e["kind"] == kind]


async def wait_event(client, run_id, kind, count=1):
    async def found():
        events = await events_of(client, run_id, kind)
        return events if len(events) >= count else None

    return await eventually(found)


def claims_of(client, url):
    token = local_path(client, url).split("?")[0].removeprefix("/r/")
    return client.app[service_key].signer.verify(token)


async def test_one_multipart_email_per_reviewer(mail_server, connector):
    """Each reviewer gets one multipart/alternative email with headers, both parts and buttons."""
    client = await connector(smtp=mail_server.smtp())
    run = await create_run(client, run_body())
    received = await mail_server.wait_for(2)
    assert sorted(r.to for r in received) == ["ann@example.com", "bob@example.com"]
    for item in received:
        msg = item.message
        assert item.mail_from == "approvals@example.com"
        assert msg.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
        assert msg["Subject"] == "[Approval] Send the November newsletter"
        assert msg["From"] == "Approvals <approvals@example.com>"
        assert item.to in msg["To"]
        assert msg["Message-ID"].startswith(f"<{run['id']}.") and msg["Date"]
        assert msg["Auto-Submitted"] == "auto-generated"
        for body in (text_of(msg), visible(html_of(msg))):
            assert "Send the November newsletter" in body
            assert "Goes to 1,204 subscribers" in body
            assert "November news" in body and "customers" in body  # the action's fields
            assert "drafted_by" in body and "assistant" in body  # the context
            assert "workflow@example.com" in body  # who asked
            assert "expires in 59 minutes" in body.lower()
        page = Page(html_of(msg))
        assert [label for _, label in page.links][:3] == ["Approve", "Reject", "Review & edit"]
        assert page.button("Approve").endswith("?choice=approve")
        assert page.button("Reject").endswith("?choice=reject")
        assert "?" not in page.button("Review & edit")
        # No tracking pixels, no remote resources, no redirect wrappers: links go to the page.
        assert not [t for t, _ in page.tags if t in ("img", "script", "link", "iframe")]
        for url in urls_in(msg):
            assert local_path(client, url).startswith("/r/")
    notified = await wait_event(client, run["id"], "notified", 2)
    assert {e["detail"]["reviewer"] for e in notified} == {"ann@example.com", "bob@example.com"}


async def test_hostile_workflow_text_is_escaped(mail_server, connector):
    """Titles, fields and context full of markup are shown as text, and cannot add headers."""
    client = await connector(smtp=mail_server.smtp())
    body = run_body(
        title=f"{HOSTILE}\r\nBcc: victim@example.com",
        summary=HOSTILE,
        action={HOSTILE: HOSTILE, "subject": "x" * 5000},
        context={"note": HOSTILE},
    )
    await create_run(client, body)
    received = await mail_server.wait_for(2)
    for item in received:
        msg = item.message
        assert msg["Bcc"] is None and item.rcpt_tos == [item.to]
        assert msg["Subject"].startswith("[Approval] <script>alert(1)</script>")
        assert "\n" not in msg["Subject"]
        html = html_of(msg)
        assert "<script" not in html and "<img" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in html
        page = Page(html)
        assert not [t for t, _ in page.tags if t in ("img", "script")]
        assert not any("onerror" in attrs for _, attrs in page.tags)
        assert "x" * 5000 not in html and "x" * 5000 not in text_of(msg)  # shortened
        assert "shows them in full" in html
        assert HOSTILE in text_of(msg)  # the plain-text part shows the text as it is


async def test_links_are_per_reviewer_and_decide(mail_server, connector, receiver):
    """Each reviewer's buttons carry their own link; pressing Approve on the page decides."""
    client = await connector(smtp=mail_server.smtp())
    run = await create_run(client, run_body(receiver))
    received = await mail_server.wait_for(2)
    for item in received:
        for url in urls_in(item.message):
            claims = claims_of(client, url)
            assert claims.reviewer_id == item.to and claims.run_id == run["id"]
    bob = next(r.message for r in received if r.to == "bob@example.com")
    approve = local_path(client, Page(html_of(bob)).button("Approve"))
    page = await client.get(approve)
    html = await page.text()
    assert "Reviewing as Bob" in html and "Confirm approval" in html
    response = await client.post(approve, data={"choice": "approve"})
    assert response.status == 200 and "approved" in await response.text()
    (call,) = await receiver.wait_for(1)
    assert b'"name":"Bob"' in call.body and b'"channel":"email"' in call.body


async def test_scanner_fetching_everything_decides_nothing(mail_server, connector, receiver):
    """GET and HEAD on every URL of every message, and every form posted without a pressed
    button, leave the run pending and call nobody back."""
    client = await connector(smtp=mail_server.smtp())
    run = await create_run(client, run_body(receiver))
    received = await mail_server.wait_for(2)
    fetched = 0
    for item in received:
        for url in urls_in(item.message):
            path = local_path(client, url)
            assert (await client.head(path)).status == 200
            response = await client.get(path)
            assert response.status == 200
            fetched += 1
            page = Page(await response.text())
            for href, _ in page.links:  # a crawler follows the page's own links too
                target = urljoin(path, href)
                assert (await client.get(target)).status == 200
                assert (await client.head(target)).status == 200
            assert page.forms, "the review page has a form"
            for form in page.forms:
                action = urljoin(path, form["action"] or path)
                method = form["method"].upper()
                submitted = await client.request(method, action, data=form["fields"])
                assert submitted.status == 200
                assert "Nothing was recorded" in await submitted.text()
    assert fetched == 6  # three buttons for each of two reviewers
    stored = await fetch_run(client, run["id"])
    assert stored["status"] == "pending" and stored["decision"] is None
    assert not [e for e in stored["events"] if e["kind"] == "decided"]
    await asyncio.sleep(0.2)  # a wrongly queued callback would arrive by now
    assert receiver.received == []


async def test_starttls_refused_is_recorded(mail_server, connector):
    """With starttls on and a server that does not offer it, nothing is sent in clear text and
    the error shows in the run's audit trail."""
    client = await connector(smtp=mail_server.smtp(starttls=True))
    run = await create_run(client, run_body())
    errors = await wait_event(client, run["id"], "notify_error", 2)
    assert all("STARTTLS" in e["detail"]["error"] for e in errors)
    assert {e["detail"]["reviewer"] for e in errors} == {"ann@example.com", "bob@example.com"}
    assert mail_server.received == []
    assert (await fetch_run(client, run["id"]))["status"] == "pending"


async def test_starttls_certificate_is_verified(connector, tmp_path):
    """STARTTLS to a self-signed server fails unless `verify = false` is set explicitly."""
    server = MailServer(tls_context=self_signed_context(tmp_path)).start()
    try:
        client = await connector(smtp=server.smtp(starttls=True))
        run = await create_run(client, run_body())
        (error, *_) = await wait_event(client, run["id"], "notify_error")
        assert "certificate" in error["detail"]["error"].lower()
        assert server.received == []
        await client.close()

        unverified = await connector(smtp=server.smtp(starttls=True, verify=False))
        await create_run(unverified, run_body())
        await server.wait_for(2)
        await unverified.close()
    finally:
        server.stop()


async def test_implicit_tls(connector, tmp_path):
    """`tls = true` speaks TLS from the first byte (port 465 style)."""
    server = MailServer(implicit_tls=self_signed_context(tmp_path)).start()
    try:
        client = await connector(smtp=server.smtp(tls=True, verify=False))
        await create_run(client, run_body())
        await server.wait_for(2)
        await client.close()
    finally:
        server.stop()


async def test_outage_delays_mail_without_losing_it(connector):
    """With the SMTP server down the error is recorded once; when it comes up, mail goes out."""
    server = MailServer()  # its port is chosen but nothing listens yet
    client = await connector(smtp=server.smtp())
    run = await create_run(client, run_body())
    await wait_event(client, run["id"], "notify_error", 2)
    server.start()
    try:
        await server.wait_for(2)
        await wait_event(client, run["id"], "notified", 2)
        assert len(await events_of(client, run["id"], "notify_error")) == 2  # not one per retry
        await client.close()
    finally:
        server.stop()


async def test_permanent_refusal_is_recorded_and_not_retried(mail_server, connector):
    """A 5xx for a recipient fails that email for good, visible in the API; others still go."""
    mail_server.rcpt_replies["bob@example.com"] = "550 5.1.1 no such user"
    client = await connector(smtp=mail_server.smtp())
    run = await create_run(client, run_body())
    (failed,) = await wait_event(client, run["id"], "notify_failed")
    assert failed["detail"]["reviewer"] == "bob@example.com" and failed["detail"]["code"] == 550
    assert "no such user" in failed["detail"]["error"]
    await mail_server.wait_for(1)
    assert [r.to for r in mail_server.received] == ["ann@example.com"]
    await asyncio.sleep(0.3)  # backoff in tests is 50 ms: a retry would have happened
    assert mail_server.rcpt_attempts.count("bob@example.com") == 1


async def test_transient_refusal_is_retried(mail_server, connector):
    """A 4xx answer is retried with backoff until the server accepts the message."""
    mail_server.fail_rcpt_times["ann@example.com"] = 2
    client = await connector(smtp=mail_server.smtp())
    run = await create_run(client, run_body())
    await mail_server.wait_for(2)
    assert mail_server.rcpt_attempts.count("ann@example.com") == 3
    (error,) = await events_of(client, run["id"], "notify_error")
    assert error["detail"]["code"] == 451


async def test_reminder_is_threaded_to_the_request(mail_server, connector):
    """`remind_after` sends one reminder per reviewer, in the same thread as the request."""
    flow = {**DEFAULT_FLOW, "remind_after": "0.3s"}
    client = await connector(smtp=mail_server.smtp(), flows={"news": flow})
    run = await create_run(client, run_body())
    await mail_server.wait_for(4)
    for address in ("ann@example.com", "bob@example.com"):
        request, reminder = mail_server.to(address)
        assert reminder["Subject"] == "Re: " + request["Subject"]
        assert reminder["In-Reply-To"] == request["Message-ID"]
        assert request["Message-ID"] in reminder["References"]
        assert reminder["Message-ID"] != request["Message-ID"]
        assert "Reminder" in text_of(reminder) and "Reminder" in html_of(reminder)
        assert Page(html_of(reminder)).button("Approve").endswith("?choice=approve")
    notified = await wait_event(client, run["id"], "notified", 4)
    assert sorted(e["detail"]["email"] for e in notified) == ["reminder"] * 2 + ["request"] * 2
    await asyncio.sleep(0.3)
    assert len(mail_server.received) == 4  # exactly one reminder each


async def test_no_reminder_once_decided(mail_server, connector):
    """A run decided before `remind_after` sends no reminder."""
    flow = {**DEFAULT_FLOW, "remind_after": "0.5s"}
    client = await connector(smtp=mail_server.smtp(), flows={"news": flow})
    run = await create_run(client, run_body())
    await mail_server.wait_for(2)
    ann = Page(html_of(mail_server.to("ann@example.com")[0])).button("Reject")
    await client.post(local_path(client, ann), data={"choice": "reject"})
    store = client.app[store_key]

    async def reminders_settled():
        jobs = await store.jobs_for_run(run["id"], REMINDER_JOB)
        return len(jobs) == 2 and all(j.status == "done" for j in jobs)

    await eventually(reminders_settled)
    assert not any("Reminder" in text_of(r.message) for r in mail_server.received)


async def test_outcome_goes_to_the_other_reviewers(mail_server, connector):
    """When Ann approves, Bob gets "Decided by Ann: approved" in his thread; Ann gets nothing."""
    client = await connector(smtp=mail_server.smtp())
    run = await create_run(client, run_body())
    await mail_server.wait_for(2)
    ann = Page(html_of(mail_server.to("ann@example.com")[0])).button("Approve")
    await client.post(local_path(client, ann), data={"choice": "approve", "comment": "fine <b>"})
    await mail_server.wait_for(3)
    request, outcome = mail_server.to("bob@example.com")
    assert outcome["Subject"] == "Re: [Approval] Send the November newsletter"
    assert outcome["In-Reply-To"] == request["Message-ID"]
    assert outcome["References"] == request["Message-ID"]
    assert "Decided by Ann: approved" in text_of(outcome)
    assert "Decided by Ann: approved" in html_of(outcome)
    assert "fine &lt;b&gt;" in html_of(outcome)
    await asyncio.sleep(0.2)
    assert len(mail_server.to("ann@example.com")) == 1
    notified = await wait_event(client, run["id"], "notified", 3)
    assert [e["detail"]["email"] for e in notified][-1] == "outcome"


async def test_outcome_on_cancel_and_timeout(mail_server, connector):
    """Cancelling or timing out tells every reviewer who was asked."""
    flows = {"news": DEFAULT_FLOW, "quick": {**DEFAULT_FLOW, "timeout": "1.5s"}}
    client = await connector(smtp=mail_server.smtp(), flows=flows)
    run = await create_run(client, run_body())
    await mail_server.wait_for(2)
    response = await client.post(
        f"/v1/runs/{run['id']}/cancel",
        json={"reason": "obsolete"},
        headers={"X-API-Key": "test-key"},
    )
    assert response.status == 200
    await mail_server.wait_for(4)
    for address in ("ann@example.com", "bob@example.com"):
        assert "Cancelled by the workflow" in text_of(mail_server.to(address)[-1])

    await create_run(client, run_body(flow="quick"))
    await mail_server.wait_for(8, timeout=15)
    timed_out = [r.message for r in mail_server.received[4:] if r.message["In-Reply-To"]]
    assert len(timed_out) == 2
    assert all("Timed out: rejected automatically" in text_of(m) for m in timed_out)


async def test_notify_outcome_false_sends_no_outcome(mail_server, connector):
    """`notify_outcome = false` keeps the other reviewers' inboxes quiet."""
    flow = {**DEFAULT_FLOW, "notify_outcome": False}
    client = await connector(smtp=mail_server.smtp(), flows={"news": flow})
    run = await create_run(client, run_body())
    await mail_server.wait_for(2)
    await client.post(f"/v1/runs/{run['id']}/cancel", headers={"X-API-Key": "test-key"})
    assert await client.app[store_key].jobs_for_run(run["id"], OUTCOME_JOB) == []


async def test_many_runs_reuse_few_connections(mail_server, connector):
    """200 runs x 2 reviewers go out over a handful of SMTP connections, not 400."""
    client = await connector(smtp=mail_server.smtp())
    started = time.perf_counter()
    await asyncio.gather(*[create_run(client, run_body()) for _ in range(200)])
    await mail_server.wait_for(400, timeout=60)
    elapsed = time.perf_counter() - started
    assert len(mail_server.received) == 400
    assert len({(r.to, r.message["Message-ID"]) for r in mail_server.received}) == 400
    assert len(mail_server.connections) <= 8, mail_server.connections  # max_connections = 4
    print(f"400 emails in {elapsed:.2f}s over {len(mail_server.connections)} connections")


async def test_dev_mailbox_shows_both_parts(client):
    """Without [smtp] the emails are kept and shown at /dev/mailbox, HTML rendered in a frame."""
    await create_run(client, run_body(title=HOSTILE))
    await eventually(lambda: client.app[store_key].list_mail(10))
    (mail,) = [m for m in await client.app[store_key].list_mail(10) if m.to == "ann@example.com"]
    assert mail.html and "<!doctype html>" in mail.html and "Approve" in mail.html
    assert "Message-ID" in mail.headers
    response = await client.get("/dev/mailbox")
    assert response.status == 200
    page = await response.text()
    assert "<script>alert(1)" not in page
    frames = [a for t, a in Page(page).tags if t == "iframe"]
    assert frames and all("allow-scripts" not in f["sandbox"] for f in frames)
    assert frames[0]["srcdoc"].startswith('<base target="_top">')
    assert "?choice=approve" in frames[0]["srcdoc"]
    assert [href for href, _ in Page(page).links if "/r/" in href]  # text part links clickable


async def test_dev_mailbox_is_off_with_smtp(mail_server, connector):
    """With [smtp] configured there is no /dev/mailbox."""
    client = await connector(smtp=mail_server.smtp())
    assert (await client.get("/dev/mailbox")).status == 404


def test_smtp_settings_are_checked(tmp_path):
    """Contradictory or unsafe [smtp] settings are refused with the key named."""
    base = {"host": "mail.example.com", "from": "a@example.com"}
    bad = [
        ({**base, "tls": True, "starttls": True}, "choose one of tls"),
        ({**base, "username": "u"}, "username and password go together"),
        ({**base, "timeout": "5m"}, "at most 55s"),
        ({**base, "from": "nobody"}, "from must be an email address"),
        ({**base, "helo": "x"}, "unknown key"),
    ]
    for smtp, message in bad:
        with pytest.raises(ConfigError, match=message):
            make_settings(tmp_path, smtp=smtp)
    flow = {**DEFAULT_FLOW, "remind_after": "2h"}
    with pytest.raises(ConfigError, match="remind_after must be shorter than timeout"):
        make_settings(tmp_path, flows={"news": flow})
    settings = make_settings(tmp_path, smtp={**base, "username": "u", "password": "hunter2"})
    assert settings.smtp is not None and settings.smtp.verify is True
    assert settings.smtp.effective_port == 25
    assert "hunter2" not in repr(settings)


def test_deadline_in_words():
    """Deadlines read the way people say them."""
    assert in_words(23 * 3600 + 3599) == "in 23 hours"
    assert in_words(3600 + 30 * 60) == "in 1 hour 30 minutes"
    assert in_words(3600) == "in 1 hour"
    assert in_words(59 * 60 + 59) == "in 59 minutes"
    assert in_words(60) == "in 1 minute"
    assert in_words(5) == "in less than a minute"
    assert in_words(3 * 86400 + 5) == "in 3 days"
    assert in_words(47 * 3600) == "in 47 hours"
    assert shorten("a" * 10, 5) == ("aaaa…", True)
    assert shorten("l\n" * 3, 100, 2) == ("l\nl…", True)


async def test_pool_reconnects_after_server_restart(mail_server, connector):
    """Pooled connections the server dropped are replaced quietly; no error is recorded."""
    client = await connector(smtp=mail_server.smtp())
    await create_run(client, run_body())
    await mail_server.wait_for(2)
    mail_server.stop()  # drops the pooled connections
    mail_server.received.clear()
    mail_server.start()
    run = await create_run(client, run_body())
    await mail_server.wait_for(2)
    await wait_event(client, run["id"], "notified", 2)
    assert await events_of(client, run["id"], "notify_error") == []


def test_every_email_key_is_documented():
    """Every [smtp] key and the flow's email keys are described in docs/email.md."""
    from pathlib import Path

    from connector.config import SmtpSettings

    docs = (Path(__file__).parent.parent / "docs" / "email.md").read_text(encoding="utf-8")
    keys = [f.alias or name for name, f in SmtpSettings.model_fields.items()]
    keys += ["smtp", "remind_after", "notify_outcome", "dev_mailbox"]
    missing = [key for key in keys if f"`{key}`" not in docs]
    assert missing == []
