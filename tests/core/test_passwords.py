"""relay.core.passwords: argon2id hashes that verify, and bad hashes that never raise."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from relay.core.passwords import hash_password, verify_password


def test_hash_is_salted_argon2id_and_verifies() -> None:
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first.startswith("$argon2id$")
    assert first != second
    assert verify_password(first, "correct horse")
    assert verify_password(second, "correct horse")


def test_wrong_password_is_refused() -> None:
    stored = hash_password("correct horse")
    assert not verify_password(stored, "correct horsE")
    assert not verify_password(stored, "")


def test_unicode_password() -> None:
    stored = hash_password("pässwörd ✓")
    assert verify_password(stored, "pässwörd ✓")
    assert not verify_password(stored, "passwort ✓")


@pytest.mark.parametrize(
    "bad_hash",
    [
        "",
        "<redacted>",
        "correct horse",
        "$argon2id$",
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$",
        "$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g",  # parameters argon2 refuses
        "$2b$12$C6UzMDM.H6dfI/f/IKcEeO5ZzAfgXI0GBW6QXZmTEBjVVW1LLB8a.",  # bcrypt
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$" + "A" * 43,  # well-formed, wrong
    ],
)
def test_malformed_or_foreign_hash_is_false_not_an_exception(bad_hash: str) -> None:
    assert verify_password(bad_hash, "correct horse") is False


def test_hash_from_other_parameters_still_verifies() -> None:
    stored = PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=2).hash("pw")
    assert verify_password(stored, "pw")
