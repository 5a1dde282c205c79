"""Resume delivery: POST the decision payload, byte-exact, to the run's resume URL.

The body was encoded once when the decision was recorded and is sent as stored; the URL is used
as given (n8n signs it). Standard Webhooks headers let receivers verify and de-duplicate: the
`webhook-id` is the job id, stable across retries and redeliveries.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime

import aiohttp
from standardwebhooks.webhooks import Webhook
from yarl import URL

from .jobs import Outcome
from .store import JobRecord
from .urlguard import AddressPolicy, AddressRefused, connect_allowed

log = logging.getLogger(__name__)

_USER_AGENT = "hitl-connector (+resume)"


def _is_n8n_not_waiting_yet(status: int, body: str) -> bool:
    # n8n answers 409 'The execution "12" is running already.' when the resume beats the
    # execution to its Wait node; it will be waiting shortly, so this is worth retrying. Its other
    # 409s ('... has finished already.', '... has finished with error.') never change.
    return status == 409 and "running" in body.lower() and "finished" not in body.lower()


def reason(body: str) -> str:
    """The short reason in an error answer: n8n's JSON `message` (without its stack trace)."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return data["message"][:300]
    return body[:300]


def classify(status: int, body: str) -> str:
    """'done', 'retry' or 'failed' for a resume target's answer."""
    if 200 <= status < 300:
        return "done"
    if status in (408, 425, 429) or status >= 500 or _is_n8n_not_waiting_yet(status, body):
        return "retry"
    return "failed"


class ResumeDeliverer:
    """The job handler for `resume` jobs."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        addresses: AddressPolicy,
        *,
        webhook_secret: str | None,
        timeout: float,
    ) -> None:
        self._session = session
        self._addresses = addresses
        self._signer = Webhook(webhook_secret) if webhook_secret else None
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    def headers_for(self, job: JobRecord, body: bytes) -> dict[str, str]:
        """The headers of one attempt: the target's own, then content type and signature."""
        headers = dict(job.payload.get("headers") or {})
        now = datetime.now(UTC)
        headers.update(
            {
                "Content-Type": "application/json",
                "User-Agent": _USER_AGENT,
                "webhook-id": job.id,
                "webhook-timestamp": str(int(now.timestamp())),
            }
        )
        if self._signer is not None:
            headers["webhook-signature"] = self._signer.sign(job.id, now, body.decode("utf-8"))
        return headers

    async def __call__(self, job: JobRecord) -> Outcome:
        url: str = job.payload["url"]
        body = job.body or b""
        attempt = job.attempts + 1
        if not connect_allowed(url, self._addresses):
            return self._outcome(attempt, "failed", None, "resume address is not allowed")
        try:
            async with self._session.post(
                URL(url, encoded=True),
                data=body,
                headers=self.headers_for(job, body),
                allow_redirects=False,
                timeout=self._timeout,
            ) as response:
                text = (await response.content.read(2048)).decode("utf-8", "replace")
                status = response.status
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, AddressRefused):
                return self._outcome(attempt, "failed", None, str(exc.os_error))
            return self._outcome(attempt, "retry", None, f"connection failed: {exc}")
        except TimeoutError:
            return self._outcome(attempt, "retry", None, "timed out")
        except (aiohttp.ClientError, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            return self._outcome(attempt, "retry", None, f"{type(exc).__name__}: {exc}")
        result = classify(status, text)
        error = None if result == "done" else f"HTTP {status}: {reason(text)}"
        return self._outcome(attempt, result, status, error)

    @staticmethod
    def _outcome(attempt: int, result: str, status: int | None, error: str | None) -> Outcome:
        detail = {"attempt": attempt, "result": result, "http_status": status, "error": error}
        if result != "done":
            log.info("resume attempt %d: %s (%s)", attempt, result, error)
        return Outcome(
            result,  # type: ignore[arg-type]
            last_status=status,
            error=error,
            event=("delivery", detail),
        )
