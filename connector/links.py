"""Signed review links: one per run and reviewer, scoped by salt, expiring with the run.

itsdangerous signs with the newest key and verifies against all of them, so keys rotate by
appending a new one to `secret_keys` and dropping the oldest once its links have expired.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from .errors import LinkExpired, LinkInvalid

REVIEW_SALT = "hitl-connector.review-link.v1"


@dataclass(frozen=True)
class LinkClaims:
    """What a verified review link says: which run, which reviewer, valid until when."""

    run_id: str
    reviewer_id: str
    expires_at: float
    channel: str = "email"


class LinkSigner:
    """Makes and checks review link tokens."""

    def __init__(self, secret_keys: list[str], *, max_age: float) -> None:
        if not secret_keys:
            raise ValueError("at least one signing key is required")
        self.keys = list(secret_keys)
        # itsdangerous treats a list as rotation: the last key signs, every key verifies.
        self._serializer = URLSafeTimedSerializer(secret_keys, salt=REVIEW_SALT)
        self._max_age = int(max_age)

    def sign(self, run_id: str, reviewer_id: str, expires_at: float, channel: str = "email") -> str:
        """A token for this reviewer's page of this run, sent through `channel`."""
        claims = {"r": run_id, "u": reviewer_id, "e": int(expires_at) + 1, "c": channel}
        return str(self._serializer.dumps(claims))

    def verify(self, token: str, *, now: float | None = None) -> LinkClaims:
        """The claims of a genuine token; LinkInvalid if tampered, LinkExpired if too old."""
        try:
            data = self._serializer.loads(token, max_age=self._max_age)
        except SignatureExpired as exc:
            raise LinkExpired() from exc
        except BadSignature as exc:
            raise LinkInvalid() from exc
        if not isinstance(data, dict) or not {"r", "u", "e"} <= data.keys():
            raise LinkInvalid()
        claims = LinkClaims(
            run_id=str(data["r"]),
            reviewer_id=str(data["u"]),
            expires_at=data["e"],
            channel=str(data.get("c", "email")),
        )
        if (now if now is not None else time.time()) > claims.expires_at:
            raise LinkExpired()
        return claims
