"""Building one copy: the rewrite plan (pixel, link tokens) and the rewritten bytes.

Tokens name the copy, so each recipient's copy carries its own. Tracking never
costs a message: a rewrite that fails relays the original bytes with a note.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections import OrderedDict
from typing import Literal, TypeVar

from relay.core.config import Config
from relay.core.models import Copy, Message
from relay.core.tokens import HONEYPOT_LINK_INDEX, TokenCodec
from relay.rewrite import (
    MessageTemplate,
    RewritePlan,
    Rewritten,
    plan_shape,
    prepare_template,
    render,
)

log = logging.getLogger("relay.delivery.copies")

# Rewriting is CPU-bound: above this size it runs in a thread so the loop keeps serving.
REWRITE_IN_THREAD_BYTES = 64 * 1024
# A message's template (its HTML decoded and scanned) serves its other recipients' copies.
TEMPLATE_BYTES = 8 * 1024 * 1024  # raw bytes of the messages whose templates are kept
TEMPLATE_MAX_MESSAGE = 2 * 1024 * 1024  # bigger messages are scanned again for each copy

PixelPosition = Literal["auto", "top", "bottom"]
T = TypeVar("T")


def tracking_base(config: Config, message: Message) -> str:
    """The message's own tracking domain (policy base_url), else tracking.base_url."""
    return (message.decision.base_url or config.tracking.base_url).rstrip("/")


def own_base_urls(config: Config) -> tuple[str, ...]:
    """Every tracking domain we answer for: links already pointing there stay as they are."""
    urls = [config.tracking.base_url, *(p.base_url for p in config.tracking.policy)]
    return tuple(dict.fromkeys(url.rstrip("/") for url in urls if url))


def honeypot_url(codec: TokenCodec, base: str, copy_id: int) -> str:
    """The copy's honeypot link: a click token with HONEYPOT_LINK_INDEX (relay.core.tokens).

    It goes to the tracking site's root, so whoever follows it lands on our own
    host, never on a third party; the tracking server classifies a click with
    this index as a bot.
    """
    return f"{base}/c/{codec.click_token(copy_id, HONEYPOT_LINK_INDEX, base + '/')}"


@functools.lru_cache(maxsize=64)
def compiled(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    """A decision's exclude_links, compiled once for all the copies that share them."""
    return tuple(re.compile(pattern) for pattern in patterns)


def build_plan(config: Config, codec: TokenCodec, copy: Copy, message: Message) -> RewritePlan:
    """What the rewriter adds to this copy, from the message's stored decision.

    The config fills in only what a message spooled by an older version lacks (a
    field left None), and names the tracking domains we answer for (own_base_urls):
    a fact about where a link already goes, not a policy.
    """
    tracking = config.tracking
    decision = message.decision
    base = tracking_base(config, message)
    copy_id = copy.id

    def link_url(index: int, url: str) -> str:
        try:
            return f"{base}/c/{codec.click_token(copy_id, index, url)}"
        except ValueError:  # too long for a token: this one link stays as it was
            return url

    pixel_position = _stored(decision.pixel_position, tracking.pixel_position)
    position: PixelPosition = "auto"
    if pixel_position in ("top", "bottom"):
        position = "top" if pixel_position == "top" else "bottom"
    if decision.exclude_links is None:
        excluded = tracking.exclude_links
    else:
        excluded = compiled(decision.exclude_links)
    honeypot = _stored(decision.honeypot, tracking.honeypot)
    return RewritePlan(
        opens=decision.opens,
        clicks=decision.clicks,
        pixel_url=f"{base}/o/{codec.open_token(copy_id)}.gif",
        link_url=link_url,
        pixel_position=position,
        skip_bare_url_links=_stored(decision.skip_bare_url_links, tracking.skip_bare_url_links),
        exclude_links=excluded,
        max_links_per_part=_stored(decision.max_links_per_part, tracking.max_links_per_part),
        guard_image_only=_stored(decision.avoid_image_only, tracking.avoid_image_only),
        own_base_urls=own_base_urls(config),
        honeypot_url=honeypot_url(codec, base, copy_id) if honeypot else None,
    )


def _stored(decided: T | None, configured: T) -> T:
    """The message's stored choice; the config's for a message spooled without it."""
    return configured if decided is None else decided


class RewriteTemplates:
    """The templates of the messages being delivered, so each message is scanned once.

    Copies of one message differ only in their URLs (relay.rewrite.render), and a
    message's copies are delivered together. A template is kept for the further
    copies its message has and dropped after the last of them (a retried copy
    scans again), or sooner when the raw sizes of the messages kept pass
    max_bytes (a template also holds the decoded HTML: a few times that).
    """

    def __init__(
        self, max_bytes: int = TEMPLATE_BYTES, max_message: int = TEMPLATE_MAX_MESSAGE
    ) -> None:
        self._max_bytes = max_bytes
        self._max_message = max_message
        self._kept: OrderedDict[str, tuple[MessageTemplate, int]] = OrderedDict()
        self._bytes = 0

    def get(self, message_id: str, raw: bytes, plan: RewritePlan) -> MessageTemplate | None:
        """The template of this message for plans like this one, if kept; one use of it."""
        kept = self._kept.get(message_id)
        if kept is None:
            return None
        template, uses = kept
        if template.shape != plan_shape(plan) or not (template.raw is raw or template.raw == raw):
            return None
        if uses <= 1:
            self._drop(message_id)
        else:
            self._kept[message_id] = (template, uses - 1)
            self._kept.move_to_end(message_id)
        return template

    def put(self, message_id: str, template: MessageTemplate, uses: int) -> None:
        """Keep template for uses more copies of the message."""
        size = len(template.raw)
        if size > self._max_message or uses < 1:
            return
        self._drop(message_id)
        self._kept[message_id] = (template, uses)
        self._bytes += size
        while self._bytes > self._max_bytes and len(self._kept) > 1:
            self._drop(next(iter(self._kept)))

    def _drop(self, message_id: str) -> None:
        kept = self._kept.pop(message_id, None)
        if kept is not None:
            self._bytes -= len(kept[0].raw)


async def build_copy(
    config: Config,
    codec: TokenCodec,
    copy: Copy,
    message: Message,
    raw: bytes,
    templates: RewriteTemplates | None = None,
) -> Rewritten:
    """The bytes to relay for this copy, with its tracked links (index i is links[i]).

    With ``templates``, a message with several recipients is surveyed and scanned
    for its first copy only; the others are rendered from that template.
    """
    decision = message.decision
    if not (decision.opens or decision.clicks):
        return Rewritten(raw=raw)
    try:
        plan = build_plan(config, codec, copy, message)
        kept = templates.get(message.id, raw, plan) if templates is not None else None
        if len(raw) > REWRITE_IN_THREAD_BYTES:
            template, rewritten = await asyncio.to_thread(_rewrite, kept, raw, plan)
        else:
            template, rewritten = _rewrite(kept, raw, plan)
        if templates is not None and kept is None and copy.recipient is not None:
            templates.put(message.id, template, len(message.rcpt_tos) - 1)
        return rewritten
    except Exception as exc:  # the rewriter promises not to raise; a bug must not cost the mail
        log.exception("copy %s: rewrite failed, relaying it untracked", copy.id)
        return Rewritten(raw=raw, notes=(f"rewrite failed ({type(exc).__name__}): {exc}",))


def _rewrite(
    template: MessageTemplate | None, raw: bytes, plan: RewritePlan
) -> tuple[MessageTemplate, Rewritten]:
    if template is None:
        template = prepare_template(raw, plan)
    return template, render(template, plan)
