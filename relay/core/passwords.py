"""Password hashes for [[smtp.users]] (argon2id: slow on purpose).

A stolen config file then yields no password without a costly search per user.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import Argon2Error


def _hasher() -> PasswordHasher:
    """argon2id with OWASP's minimum (19 MiB, 2 passes, 1 lane): argon2-cffi's default
    (64 MiB, 4 lanes) takes half a second per AUTH on a 2-core relay, which would make
    AUTH itself a cheap way to exhaust it. verify reads the parameters from the hash."""
    return PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def hash_password(password: str) -> str:
    """A PHC string ("$argon2id$v=19$..."), salted, for password_hash in [[smtp.users]]."""
    return _hasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Constant-time verification; False (never an exception) for a bad hash."""
    try:
        return _hasher().verify(password_hash, password)
    except (Argon2Error, ValueError, TypeError):
        # ValueError covers InvalidHashError and a hash with unsupported parameters.
        return False
