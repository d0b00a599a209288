"""DKIM-signing a copy after its rewrite, when a [dkim] key is configured.

A rewritten copy breaks every body hash signed before it, so it goes out with
our signature instead. Signing never costs a message either: if it fails, the
original bytes go out untracked (their own signatures still verify), with a note.

Whether a DKIM-signed message is tracked was decided when it was received,
with the [dkim] key of that moment (TrackingDecision.resign). When that key
has been removed since, the copy cannot be signed as decided: it goes out
untouched, as SPEC 5 allows, rather than with the signature the rewrite broke.
The key that signs is the one configured now: a key replaced meanwhile (a
rotated selector, its old DNS record withdrawn) must not sign any more.
"""

from __future__ import annotations

import asyncio
import logging

from relay.core.config import Config
from relay.core.models import TrackingDecision
from relay.dkim import DkimSigner
from relay.rewrite import Rewritten
from relay.rewrite.headers import header_values

log = logging.getLogger("relay.delivery.signing")

# Signing hashes the whole body: above this size it runs in a thread like the rewrite.
SIGN_IN_THREAD_BYTES = 64 * 1024
NO_KEY_NOTE = "DKIM-signed and no [dkim] key any more: relayed untracked"


def must_resign(decision: TrackingDecision, original: bytes) -> bool:
    """A rewritten copy goes out only with our signature (a message spooled before the
    decision said so: when the original carries a signature the rewrite would break)."""
    if decision.resign is not None:
        return decision.resign
    return bool(header_values(original, "dkim-signature"))


def open_signer(config: Config) -> DkimSigner | None:
    """The signer for [dkim], built once at start; a broken key raises DkimKeyError here."""
    return DkimSigner(config.dkim) if config.dkim is not None else None


async def sign_copy(
    signer: DkimSigner | None, original: bytes, copy: Rewritten, decision: TrackingDecision
) -> Rewritten:
    """The copy with our DKIM-Signature when it was rewritten; unchanged copies as they are."""
    if copy.raw == original:
        return copy
    if signer is None:
        if not must_resign(decision, original):
            return copy
        log.warning("DKIM-signed message and no [dkim] key any more: relaying it untracked")
        return Rewritten(raw=original, notes=(*copy.notes, NO_KEY_NOTE))
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
