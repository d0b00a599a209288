"""A tracked copy scores no worse with SpamAssassin than the same mail untracked.

A sample of benchmarks/deliverability.py's messages (ordinary mails as the
common clients compose them, and HTML messages of the shared corpus) goes
through two real `relay serve` processes, one tracking and one with opens and
clicks off, into one aiosmtpd sink; both copies of each are scored with
Debian's SpamAssassin (shipped rules, local tests only; `make test` installs
it). The limits are the issue's: mean delta <= +0.05, none above +0.5.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.processes import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import deliverability as check
from ordinary_mails import ordinary_mails

from relay.rewrite import IMAGE_ONLY_NOTE

ORDINARY = [
    "ordinary/outlook-two-line-reply",
    "ordinary/outlook-long-with-link",
    "ordinary/gmail-one-liner",
    "ordinary/gmail-inline-image",
    "ordinary/apple-mail-note",
    "ordinary/thunderbird-links",
    "ordinary/crm-newsletter",
    "ordinary/crm-follow-up",
]
# Corpus messages that scored worse tracked before the relay minded its pixel: a short
# HTML part, an empty one beside a text part (MPART_ALT_DIFF), a big template with images.
CORPUS = [
    "mime/php-mime-mail-parser/m0001.eml",
    "mime/apache-spamassassin/nice/004.eml",
    "mime/apache-spamassassin/spam/009.eml",
    "mime/mailgun-flanker/multipart.eml",
    "html/mailchimp-email-blueprints/templates/transactional_basic.html",
    "html/jstedfast-MimeKit/html/badly-quoted-attr.html",
]
# Rules about links and addresses: a tracked link must never make one fire.
LINK_RULE_WORDS = ("URI", "HTTP", "URL", "MISMATCH", "REDIR", "NUMERIC", "PHISH", "SHORT", "IP")


def sample() -> dict[str, bytes]:
    mails = ordinary_mails()
    messages = {name: mails[name] for name in ORDINARY}
    corpus = check.corpus_messages()
    messages.update({name: corpus[name] for name in CORPUS if name in corpus})
    return messages


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, check.Result]]:
    messages = sample()
    assert len(messages) == len(ORDINARY) + len(CORPUS), "the sampled corpus files are there"
    found = check.compare(messages, Path(tmp_path_factory.mktemp("deliverability")))
    yield {result.name: result for result in found}


def test_every_message_is_scored_twice(results: dict[str, check.Result]) -> None:
    assert set(results) == set(sample())


def test_tracked_copies_score_no_worse(results: dict[str, check.Result]) -> None:
    deltas = {name: r.delta for name, r in results.items()}
    report = "\n".join(check.report(list(results.values()), quiet=False))
    assert sum(deltas.values()) / len(deltas) <= check.MEAN_LIMIT, report
    assert {n: d for n, d in deltas.items() if d > check.MESSAGE_LIMIT} == {}, report


def test_no_image_only_rule_and_no_link_rule_only_on_the_tracked_copy(
    results: dict[str, check.Result],
) -> None:
    fired = {
        name: sorted(
            rule
            for rule in r.only_tracked
            if rule.startswith(("HTML_IMAGE_ONLY", "T_REMOTE_IMAGE", "MPART_ALT_DIFF"))
            or any(word in rule for word in LINK_RULE_WORDS)
        )
        for name, r in results.items()
    }
    assert {name: rules for name, rules in fired.items() if rules} == {}


def test_the_decision_is_on_the_copy(results: dict[str, check.Result]) -> None:
    """A short part with no image gets no pixel, and the copy says why; long mail keeps it."""
    for name in ("ordinary/gmail-one-liner", "ordinary/apple-mail-note"):
        assert not results[name].opens_tracked
        assert results[name].note.startswith(IMAGE_ONLY_NOTE), results[name].note
    for name in ("ordinary/crm-newsletter", "ordinary/gmail-inline-image"):
        assert results[name].opens_tracked, results[name].note
        assert IMAGE_ONLY_NOTE not in results[name].note
