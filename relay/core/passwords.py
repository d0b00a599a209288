"""Password hashes for [[smtp.users]] (argon2id: slow on purpose)."""

from __future__ import annotations


def hash_password(password: str) -> str:
    raise NotImplementedError


def verify_password(password_hash: str, password: str) -> bool:
    """Constant-time verification; False (never an exception) for a bad hash."""
    raise NotImplementedError
