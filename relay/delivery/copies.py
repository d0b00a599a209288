"""Building one copy: the rewrite plan (pixel, link tokens) and the rewritten bytes.

Tokens name the copy, so each recipient's copy carries its own. Tracking never
costs a message: a rewrite that fails relays the original bytes with a note.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from relay.core.config import Config
from relay.core.models import Copy, Message
from relay.core.tokens import HONEYPOT_LINK_INDEX, TokenCodec
from relay.rewrite import RewritePlan, Rewritten, rewrite_message

log = logging.getLogger("relay.delivery.copies")

# The honeypot link (HONEYPOT_LINK_INDEX, in relay.core.tokens) goes to the
# tracking site's root, so whoever follows it lands on our own host, never on a
# third party. The tracking server classifies a click with this index as a bot.
# Rewriting is CPU-bound: above this size it runs in a thread so the loop keeps serving.
REWRITE_IN_THREAD_BYTES = 64 * 1024

PixelPosition = Literal["auto", "top", "bottom"]


def tracking_base(config: Config, message: Message) -> str:
    """The message's own tracking domain (policy base_url), else tracking.base_url."""
    return (message.decision.base_url or config.tracking.base_url).rstrip("/")


def own_base_urls(config: Config) -> tuple[str, ...]:
    """Every tracking domain we answer for: links already pointing there stay as they are."""
    urls = [config.tracking.base_url, *(p.base_url for p in config.tracking.policy)]
    return tuple(dict.fromkeys(url.rstrip("/") for url in urls if url))


def honeypot_url(codec: TokenCodec, base: str, copy_id: int) -> str:
    return f"{base}/c/{codec.click_token(copy_id, HONEYPOT_LINK_INDEX, base + '/')}"


def build_plan(config: Config, codec: TokenCodec, copy: Copy, message: Message) -> RewritePlan:
    """What the rewriter adds to this copy, from the message's stored decision."""
    tracking = config.tracking
    decision = message.decision
    base = tracking_base(config, message)
    copy_id = copy.id

    def link_url(index: int, url: str) -> str:
        try:
            return f"{base}/c/{codec.click_token(copy_id, index, url)}"
        except ValueError:  # too long for a token: this one link stays as it was
            return url

    position: PixelPosition = "auto"
    if tracking.pixel_position in ("top", "bottom"):
        position = "top" if tracking.pixel_position == "top" else "bottom"
    return RewritePlan(
        opens=decision.opens,
        clicks=decision.clicks,
        pixel_url=f"{base}/o/{codec.open_token(copy_id)}.gif",
        link_url=link_url,
        pixel_position=position,
        skip_bare_url_links=tracking.skip_bare_url_links,
        exclude_links=tracking.exclude_links,
        own_base_urls=own_base_urls(config),
        honeypot_url=honeypot_url(codec, base, copy_id) if tracking.honeypot else None,
    )


async def build_copy(
    config: Config, codec: TokenCodec, copy: Copy, message: Message, raw: bytes
) -> Rewritten:
    """The bytes to relay for this copy, with its tracked links (index i is links[i])."""
    decision = message.decision
    if not (decision.opens or decision.clicks):
        return Rewritten(raw=raw)
    try:
        plan = build_plan(config, codec, copy, message)
        if len(raw) > REWRITE_IN_THREAD_BYTES:
            return await asyncio.to_thread(rewrite_message, raw, plan)
        return rewrite_message(raw, plan)
    except Exception as exc:  # the rewriter promises not to raise; a bug must not cost the mail
        log.exception("copy %s: rewrite failed, relaying it untracked", copy.id)
        return Rewritten(raw=raw, notes=(f"rewrite failed ({type(exc).__name__}): {exc}",))
