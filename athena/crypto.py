"""Secrets that Athena must be able to read back (webhook secrets, secret workflow variables)
are stored Fernet-encrypted (``enc:v1:<token>``) under a key derived with HKDF-SHA256 from
``SECRET_KEY``. Values without the prefix (written before encryption) read as clear text."""
from __future__ import annotations

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

PREFIX = "enc:v1:"


@functools.lru_cache(maxsize=8)
def _fernet(secret_key: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=b"athena webhook secret v1").derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt(clear: str | None) -> str | None:
    if not clear:
        return None
    return PREFIX + _fernet(current_app.config["SECRET_KEY"]).encrypt(clear.encode()).decode()


def decrypt(stored: str | None) -> str | None:
    if not stored:
        return None
    if not stored.startswith(PREFIX):
        return stored  # legacy clear value
    try:
        return _fernet(current_app.config["SECRET_KEY"]).decrypt(stored[len(PREFIX):].encode()).decode()
    except InvalidToken:
        return None  # SECRET_KEY changed: the secret is unusable (set it again)


def is_encrypted(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)
