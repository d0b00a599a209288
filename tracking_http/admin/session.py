"""The dashboard's login cookie: a signed expiry, never the token itself.

The cookie value is ``<expires>.<HMAC(key, expires)>`` where the key is
derived from the admin token. Nothing is stored server-side: changing the
token ends every session, and a stolen cookie is worth at most
SESSION_SECONDS and never reveals the token. The logout form carries a CSRF
value derived from the cookie, so another site cannot log a user out
(SameSite=Strict already keeps the cookie off cross-site requests).
"""

from __future__ import annotations

import hashlib
import hmac
import time

COOKIE = "relay_admin"
SESSION_SECONDS = 12 * 3600
MAX_COOKIE = 128  # a longer value is not one of ours
_KEY_LABEL = b"relay admin session v1"


def _key(token: str) -> bytes:
    return hmac.new(token.encode("utf-8", "surrogatepass"), _KEY_LABEL, hashlib.sha256).digest()


def _mac(token: str, message: str) -> str:
    return hmac.new(_key(token), message.encode("ascii"), hashlib.sha256).hexdigest()


def issue(token: str, now: float | None = None) -> str:
    """A new cookie value, valid for SESSION_SECONDS."""
    expires = int(time.time() if now is None else now) + SESSION_SECONDS
    return f"{expires}.{_mac(token, str(expires))}"


def is_valid(value: str, token: str, now: float | None = None) -> bool:
    """Constant-time check of a cookie value; an empty token never validates."""
    if not token or not value or len(value) > MAX_COOKIE:
        return False
    expires, _, mac = value.partition(".")
    if not expires.isascii() or not expires.isdigit() or len(expires) > 12:
        return False
    good = hmac.compare_digest(mac.encode("ascii", "replace"), _mac(token, expires).encode())
    return good and int(expires) > (time.time() if now is None else now)


def csrf_value(cookie_value: str, token: str) -> str:
    """The hidden field of the logout form, bound to this session."""
    return _mac(token, "csrf:" + cookie_value.encode("ascii", "replace").decode("ascii"))


def csrf_matches(given: str, cookie_value: str, token: str) -> bool:
    if not given or len(given) > MAX_COOKIE:
        return False
    expected = csrf_value(cookie_value, token).encode("ascii")
    return hmac.compare_digest(given.encode("ascii", "replace"), expected)


def token_equals(given: str, token: str) -> bool:
    """The login form's token against admin.token, in constant time."""
    if not token or len(given) > 1024:
        return False
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), token.encode("utf-8", "surrogatepass")
    )
