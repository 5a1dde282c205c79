"""Reading the emails the connector sent: parts, links, and the pages behind them."""

from __future__ import annotations

import re
from email.message import EmailMessage
from html import unescape
from html.parser import HTMLParser
from typing import Any

from connector.web.keys import settings_key

URL = re.compile(r"https?://[^\s<>\"']+")


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert isinstance(part, EmailMessage)
    return str(part.get_content())


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert isinstance(part, EmailMessage)
    return str(part.get_content())


def visible(html: str) -> str:
    """The text a reader sees in an HTML document, on one line."""
    return " ".join(re.sub(r"<[^>]+>", " ", unescape(html)).split())


class Page(HTMLParser):
    """Links, forms, buttons and elements of an HTML document, as a crawler sees them."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str]] = []  # (href, text)
        self.forms: list[dict[str, Any]] = []
        self.tags: list[tuple[str, dict[str, str]]] = []
        self._form: dict[str, Any] | None = None
        self._textarea: str | None = None
        self._anchor: list[str] | None = None
        self._href = ""
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        if tag == "a" and "href" in a:
            self._anchor, self._href = [], a["href"]
        elif tag == "form":
            self._form = {
                "action": a.get("action", ""),
                "method": a.get("method", "get"),
                "fields": {},
            }
            self.forms.append(self._form)
        elif tag == "input" and self._form is not None and a.get("name"):
            # Buttons only count when pressed, and a crawler presses none.
            if a.get("type", "text").lower() not in ("submit", "button", "image", "reset"):
                self._form["fields"][a["name"]] = a.get("value", "")
        elif tag == "textarea" and self._form is not None and a.get("name"):
            self._textarea = a["name"]
            self._form["fields"][a["name"]] = ""

    def handle_data(self, data: str) -> None:
        if self._textarea is not None and self._form is not None:
            self._form["fields"][self._textarea] += data
        if self._anchor is not None:
            self._anchor.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea":
            self._textarea = None
        elif tag == "form":
            self._form = None
        elif tag == "a" and self._anchor is not None:
            self.links.append((self._href, "".join(self._anchor).strip()))
            self._anchor = None

    def button(self, text: str) -> str:
        """The href of the link whose text is `text`."""
        return next(href for href, label in self.links if label == text)


def urls_in(message: EmailMessage) -> list[str]:
    """Every URL of both parts of a message."""
    found = URL.findall(text_of(message))
    found += [href for href, _ in Page(html_of(message)).links]
    return sorted(set(found))


def local_path(client: Any, url: str) -> str:
    """The path and query of a link the connector sent, to request it through the test client."""
    base = client.app[settings_key].public_url
    assert url.startswith(base + "/"), url
    return url[len(base) :]
