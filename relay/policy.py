"""Who may relay, and what to track for a sender and a message.

Mechanism lives elsewhere (smtp, rewrite); this module only decides.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence

from relay.core.config import Config, SmtpConfig, SmtpUser, TrackingPolicy
from relay.core.models import TrackingDecision

# (opens allowed, clicks allowed); None = this value has no say on that switch
Verdict = tuple[bool | None, bool | None]

LOG_HEADER = "x-track-log"  # keep the original message viewable: yes / no
_YES = frozenset({"yes", "true"})
_NO = frozenset({"no", "false"})


def may_relay(config: SmtpConfig, peer_ip: str, auth_user: str | None) -> bool:
    """True for an authenticated user or a peer inside allowed_networks."""
    if auth_user:
        return True
    try:
        address = ipaddress.ip_address(peer_ip.partition("%")[0].strip("[]"))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # a dual-stack listener reports ::ffff:10.0.0.1
    return any(address in network for network in config.allowed_networks)


def address_matches(pattern: str, address: str) -> bool:
    """Case-insensitive; "*" is the only wildcard and never crosses "@", so "*@example.com"
    does not match a subdomain (write "*@*.example.com" for those)."""
    parts = (re.escape(piece) for piece in pattern.strip().lower().split("*"))
    return re.fullmatch("[^@]*".join(parts), address.strip().strip("<>").lower()) is not None


def sender_allowed(user: SmtpUser, address: str) -> bool:
    """allowed_senders binding: empty list = any; patterns like "*@sales.example.com"."""
    if not user.allowed_senders:
        return True
    return any(address_matches(pattern, address) for pattern in user.allowed_senders)


def decide_tracking(
    config: Config,
    *,
    sender: str,
    auth_user: str | None,
    headers: Mapping[str, Sequence[str]],
) -> TrackingDecision:
    """Config switches, then [[tracking.policy]] (first match), then message headers
    (X-Track and the hosted services' equivalents, which can only turn tracking off
    further), then DKIM (a signed message without a [dkim] key is left untracked).

    How its copies are rewritten (pixel, links, honeypot) and whether they must be
    signed again is decided here too and stored with the message: delivery follows
    this decision, so a config change applies to mail received after it.

    headers maps lower-case header names to their values.
    """
    tracking = config.tracking
    opens, clicks, log_copy, base_url = tracking.opens, tracking.clicks, False, ""
    reasons: list[str] = []
    rule_index, rule = _first_policy(tracking.policy, sender, auth_user)
    if rule is not None:
        opens, clicks, log_copy, base_url = rule.opens, rule.clicks, rule.log_copy, rule.base_url
        what = f"match {rule.match}" if rule.match else f"user {rule.user}"
        reasons.append(f"tracking.policy[{rule_index}] ({what}): {_switches(opens, clicks)}")
    else:
        reasons.append(f"config: {_switches(opens, clicks)}")
    for name, display, verdict_of in _HEADER_RULES:
        for value in headers.get(name, ()):
            label = f"{display}: {value.strip()}"
            opens, clicks = _apply_header(label, verdict_of, (opens, clicks), reasons)
    resign = False
    if "dkim-signature" in headers and (opens or clicks):
        if config.dkim is None:
            opens = clicks = False
            reasons.append("DKIM-signed and no [dkim] key")
        else:
            resign = True
            reasons.append("DKIM-signed: a rewritten copy is signed again with the [dkim] key")
    log_copy = _log_copy_header(headers.get(LOG_HEADER, ()), log_copy, reasons)
    return TrackingDecision(
        opens=opens,
        clicks=clicks,
        log_copy=log_copy,
        per_recipient=tracking.per_recipient,
        base_url=base_url or tracking.base_url,
        reasons=tuple(reasons),
        pixel_position=tracking.pixel_position,
        honeypot=tracking.honeypot,
        skip_bare_url_links=tracking.skip_bare_url_links,
        exclude_links=tuple(pattern.pattern for pattern in tracking.exclude_links),
        max_links_per_part=tracking.max_links_per_part,
        avoid_image_only=tracking.avoid_image_only,
        resign=resign,
    )


def control_header_names(config: SmtpConfig) -> tuple[str, ...]:
    """The per-message control headers to strip before relaying."""
    if config.pass_through_tracking_headers:
        return ("x-track", LOG_HEADER)  # the tracking upstream reads its own headers
    return (*(name for name, _, _ in _HEADER_RULES), LOG_HEADER)


def _log_copy_header(values: Sequence[str], log_copy: bool, reasons: list[str]) -> bool:
    """X-Track-Log: yes keeps the original (logging is apart from tracking: either way)."""
    for value in values:
        wanted = _yes_no(value.strip().lower())
        if wanted is None:
            reasons.append(f"X-Track-Log: {value.strip()} not understood, ignored")
        elif wanted != log_copy:
            log_copy = wanted
            reasons.append(f"X-Track-Log: {value.strip()}: log copy {'on' if wanted else 'off'}")
    return log_copy


def _first_policy(
    rules: Sequence[TrackingPolicy], sender: str, auth_user: str | None
) -> tuple[int, TrackingPolicy | None]:
    for index, rule in enumerate(rules, start=1):
        if rule.match and address_matches(rule.match, sender):
            return index, rule
        if rule.user and auth_user is not None and rule.user == auth_user:
            return index, rule
    return 0, None


def _switches(opens: bool, clicks: bool) -> str:
    return f"opens {'on' if opens else 'off'}, clicks {'on' if clicks else 'off'}"


def _apply_header(
    label: str,
    verdict_of: Callable[[str], Verdict],
    current: tuple[bool, bool],
    reasons: list[str],
) -> tuple[bool, bool]:
    """A header may only switch off; a value we do not understand changes nothing."""
    allow_opens, allow_clicks = verdict_of(label.partition(": ")[2].lower())
    if allow_opens is None and allow_clicks is None:
        reasons.append(f"{label} not understood, ignored")
        return current
    opens = current[0] and allow_opens is not False
    clicks = current[1] and allow_clicks is not False
    turned_off = [kind for kind, was, now in _changes(current, (opens, clicks)) if was and not now]
    if turned_off:
        reasons.append(f"{label}: {' and '.join(turned_off)} off")
    return opens, clicks


def _changes(before: tuple[bool, bool], after: tuple[bool, bool]) -> list[tuple[str, bool, bool]]:
    return [("opens", before[0], after[0]), ("clicks", before[1], after[1])]


def _tokens(value: str) -> set[str]:
    return {token for token in re.split(r"[\s,]+", value) if token}


def _x_track(value: str) -> Verdict:
    tokens = _tokens(value)
    if tokens == {"none"}:
        return False, False
    if not tokens or not tokens <= {"opens", "clicks", "all"}:
        return None, None
    return bool(tokens & {"opens", "all"}), bool(tokens & {"clicks", "all"})


def _yes_no(value: str, yes: frozenset[str] = _YES) -> bool | None:
    return True if value in yes else False if value in _NO else None


def _mailgun(value: str) -> Verdict:
    allowed = _yes_no(value, _YES | {"htmlonly"})
    return allowed, allowed


def _mailgun_opens(value: str) -> Verdict:
    return _yes_no(value), None


def _mailgun_clicks(value: str) -> Verdict:
    return None, _yes_no(value, _YES | {"htmlonly"})  # we only rewrite HTML anyway


def _postmark_opens(value: str) -> Verdict:
    return _yes_no(value), None


def _postmark_links(value: str) -> Verdict:
    """TextOnly tracks text parts only, and we never touch text parts: off for us."""
    choices = {"none": False, "htmlandtext": True, "htmlonly": True, "textonly": False}
    return None, choices.get(value)


def _mandrill(value: str) -> Verdict:
    """X-MC-Track lists what to track; anything not listed is off."""
    tokens = _tokens(value)
    known = {"opens", "clicks", "clicks_all", "clicks_htmlonly", "clicks_textonly"}
    if not tokens <= known:
        return None, None
    return "opens" in tokens, bool(tokens & {"clicks", "clicks_all", "clicks_htmlonly"})


# lower-case name, display name, verdict; X-Track first (ours), then the hosted services'
_HEADER_RULES: tuple[tuple[str, str, Callable[[str], Verdict]], ...] = (
    ("x-track", "X-Track", _x_track),
    ("x-mailgun-track", "X-Mailgun-Track", _mailgun),
    ("x-mailgun-track-opens", "X-Mailgun-Track-Opens", _mailgun_opens),
    ("x-mailgun-track-clicks", "X-Mailgun-Track-Clicks", _mailgun_clicks),
    ("x-pm-trackopens", "X-PM-TrackOpens", _postmark_opens),
    ("x-pm-tracklinks", "X-PM-TrackLinks", _postmark_links),
    ("x-mc-track", "X-MC-Track", _mandrill),
)
