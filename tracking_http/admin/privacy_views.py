"""Admin API calls about personal data: erasing a recipient, downloading a logged copy.

``DELETE /api/contacts/{address}`` erases what the store holds about an
address (Store.erase_recipient; the README lists what stays) and answers
with the counts. ``GET /api/messages/{id}/raw`` hands out the original
message only when it was logged (policy ``log_copy`` or ``X-Track-Log: yes``):
keeping a copy is a decision, and messages not logged are not for browsing.
"""

from __future__ import annotations

import json
import logging

from aiohttp import web

from relay.core.store import Store
from tracking_http.admin.params import is_address, is_message_id

log = logging.getLogger("tracking_http.admin")


def _json(body: dict[str, object], status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body, ensure_ascii=False),
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


class PrivacyViews:
    """Handlers behind the admin bearer check (tracking_http.admin.auth)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def erase_contact(self, request: web.Request) -> web.Response:
        address = request.match_info["address"]
        if not is_address(address):
            return _json({"error": "not an address"}, status=400)
        counts = await self._store.erase_recipient(address)
        log.info("erased %s: %s", address, counts)
        return _json({"address": address, "erased": counts})

    async def raw_message(self, request: web.Request) -> web.StreamResponse:
        message_id = request.match_info["id"]
        if not is_message_id(message_id):
            return _json({"error": "no such message"}, status=404)
        message = await self._store.get_message(message_id)
        if message is None or not message.decision.log_copy:
            return _json({"error": "no logged copy of this message"}, status=404)
        try:
            raw = await self._store.load_raw(message_id)
        except KeyError:  # purged meanwhile
            return _json({"error": "no such message"}, status=404)
        return web.Response(
            body=raw,
            content_type="message/rfc822",
            headers={
                "Content-Disposition": f'attachment; filename="{message_id}.eml"',
                "Cache-Control": "no-store",
            },
        )
