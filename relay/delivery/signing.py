"""DKIM-signing a copy after its rewrite, when a [dkim] key is configured.

A rewritten copy breaks every body hash signed before it, so it goes out with
our signature instead. Signing never costs a message either: if it fails, the
original bytes go out untracked (their own signatures still verify), with a note.
"""

from __future__ import annotations

import asyncio
import logging

from relay.core.config import Config
from relay.dkim import DkimSigner
from relay.rewrite import Rewritten

log = logging.getLogger("relay.delivery.signing")

# Signing hashes the whole body: above this size it runs in a thread like the rewrite.
SIGN_IN_THREAD_BYTES = 64 * 1024


def open_signer(config: Config) -> DkimSigner | None:
    """The signer for [dkim], built once at start; a broken key raises DkimKeyError here."""
    return DkimSigner(config.dkim) if config.dkim is not None else None


async def sign_copy(signer: DkimSigner | None, original: bytes, copy: Rewritten) -> Rewritten:
    """The copy with our DKIM-Signature when it was rewritten; unchanged copies as they are."""
    if signer is None or copy.raw == original:
        return copy
    try:
        if len(copy.raw) > SIGN_IN_THREAD_BYTES:
            signed = await asyncio.to_thread(signer.sign, copy.raw, rewritten=True)
        else:
            signed = signer.sign(copy.raw, rewritten=True)
    except Exception as exc:  # dkimpy rejects some header blocks; the mail still goes
        log.exception("DKIM signing failed; relaying the original untracked")
        note = f"DKIM signing failed ({type(exc).__name__}): {exc}"
        return Rewritten(raw=original, notes=(*copy.notes, note))
    return Rewritten(signed, copy.links, copy.parts_rewritten, copy.notes)
