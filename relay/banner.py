"""The start banner's "send a first message" command, written for the config in use.

A command that cannot work (the wrong port, no AUTH where the relay needs it, a
From the user may not send) is worse than none, so the command follows the
config: the listener to use, STARTTLS or TLS on connect, AUTH when this machine
may not relay without it, and a From the first user may send.
"""

from __future__ import annotations

import ipaddress
import shlex

from relay.core.config import HostPort, SmtpConfig

# With an image of its own: a short HTML part whose only image would be the pixel gets no
# pixel (filters read such mail as image-only), and the first message should show both.
BODY = (
    '<p>Hi, see <a href="https://example.com/">our site</a></p>'
    '<p><img src="https://example.com/logo.png" alt="Example" width="120" height="40"></p>'
)
ANY_ADDRESS = ("0.0.0.0", "::", "")  # noqa: S104 (listen addresses, not binds)


def first_message_command(smtp: SmtpConfig) -> list[str]:
    """The swaks command line(s) to send a first message through this relay, or []."""
    implicit = not smtp.listen
    listener = smtp.listen[0] if smtp.listen else _first(smtp.implicit_tls_listen)
    if listener is None:
        return []
    host = _connect_host(listener)
    words = ["swaks", *_server(host, listener.port)]
    needs_auth = not _may_relay(host, smtp)
    user = smtp.users[0] if smtp.users else None
    if implicit:
        words.append("--tls-on-connect")
    elif needs_auth and smtp.tls_cert and smtp.require_tls_for_auth:
        words.append("--tls")  # AUTH is offered only after STARTTLS
    if needs_auth:
        # swaks asks for the password itself: none is printed or kept in shell history.
        words += ["--auth-user", user.name if user else "USER"]
    sender = _sender(user.allowed_senders if user and needs_auth else ())
    words += ["--from", sender, "--to", "friend@example.net"]
    words += ["--header", "Subject: hello"]
    words += ["--header", "Content-Type: text/html; charset=utf-8", "--body", BODY]
    lines = ["  " + shlex.join(words)]
    if needs_auth and user is None:
        lines.append(
            "  (this machine may not relay without AUTH and there is no [[smtp.users]] yet: "
            "add one with relay hash-password, or its network to smtp.allowed_networks)"
        )
    return lines


def _first(listeners: tuple[HostPort, ...]) -> HostPort | None:
    return listeners[0] if listeners else None


def _connect_host(listener: HostPort) -> str:
    if listener.host in ANY_ADDRESS:
        return "::1" if listener.host == "::" else "127.0.0.1"
    return listener.host


def _server(host: str, port: int) -> list[str]:
    if ":" in host:  # swaks reads host:port, so an IPv6 address takes --port
        return ["--server", host, "--port", str(port)]
    return ["--server", f"{host}:{port}"]


def _may_relay(host: str, smtp: SmtpConfig) -> bool:
    """Does a client on this machine, connecting to host, relay without AUTH?"""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # a host name: assume it reaches us from loopback
        address = ipaddress.ip_address("127.0.0.1")
    return any(address in network for network in smtp.allowed_networks)


def _sender(allowed: tuple[str, ...]) -> str:
    """A From the user may send: their first allowed address ("*@x" -> "you@x")."""
    for pattern in allowed:
        if pattern.startswith("*@") and "*" not in pattern[2:]:
            return "you" + pattern[1:]
        if "*" not in pattern and "@" in pattern:
            return pattern
    return "you@example.com"
