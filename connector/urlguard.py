"""SSRF protection for resume URLs: http(s) only, no internal addresses unless allowed.

Checked twice: when the workflow pauses (a clear 400) and again when the connection is made, by
a resolver that drops refused addresses, so a name that later resolves elsewhere (DNS rebinding)
still cannot reach an internal address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from .errors import ResumeUrlRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressRefused(OSError):
    """The resume host resolved only to addresses the operator has not allowed."""


class AddressPolicy:
    """Which destination addresses and host names resume calls may reach."""

    def __init__(self, allow: list[str]) -> None:
        self._networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self._hosts: set[str] = set()
        for entry in allow:
            try:
                self._networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self._hosts.add(entry.strip().lower().rstrip("."))

    def host_allowed(self, host: str) -> bool:
        """True when the operator allowed this host name outright."""
        return host.lower().rstrip(".") in self._hosts

    def address_allowed(self, address: str) -> bool:
        """Public addresses are fine; internal ones only when a configured network holds them."""
        ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in network for network in self._networks):
            return True
        return not (
            ip.is_private
            or ip.is_loopback
            or ip.is_link_local
            or ip.is_multicast
            or ip.is_reserved
            or ip.is_unspecified
        )


def _literal_ip(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def split_resume_url(url: str) -> tuple[str, int]:
    """Host and port of an http(s) URL, or ResumeUrlRefused with the reason."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ResumeUrlRefused(f"resume URL is not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise ResumeUrlRefused("resume URL must use http or https")
    if not parts.hostname:
        raise ResumeUrlRefused("resume URL has no host")
    if parts.username or parts.password:
        raise ResumeUrlRefused("resume URL must not carry credentials; use resume headers")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


async def check_resume_url(url: str, policy: AddressPolicy) -> None:
    """Refuse (400) a resume URL that is not http(s) or points at an internal address."""
    host, port = split_resume_url(url)
    if policy.host_allowed(host):
        return
    literal = _literal_ip(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError:
            # Not resolvable right now: delivery retries, and the resolver re-checks then.
            return
        addresses = [str(info[4][0]) for info in infos]
    refused = [a for a in addresses if not policy.address_allowed(a)]
    if refused:
        raise ResumeUrlRefused(
            f"resume URL host {host!r} resolves to an internal address ({refused[0]});"
            " allow it with resume_allow in the configuration"
        )


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that only returns addresses the policy allows."""

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if self._policy.host_allowed(host):
            return results
        allowed = [r for r in results if self._policy.address_allowed(r["host"])]
        if not allowed:
            raise AddressRefused(f"{host} resolves only to addresses that are not allowed")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def connect_allowed(url: str, policy: AddressPolicy) -> bool:
    """For IP-literal URLs (which skip the resolver): may we connect at all?"""
    host, _ = split_resume_url(url)
    literal = _literal_ip(host)
    return literal is None or policy.host_allowed(host) or policy.address_allowed(literal)


__all__: list[Any] = [
    "AddressPolicy",
    "AddressRefused",
    "GuardedResolver",
    "check_resume_url",
    "connect_allowed",
    "split_resume_url",
]
