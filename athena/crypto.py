"""The key ring for secrets Athena must be able to read back (webhook secrets, secret workflow
variables; later provider credentials).

Values are stored as ``enc:v1:<Fernet token>``. Each key of the ring is derived with
HKDF-SHA256 from a configured key: ``SECRET_KEY`` encrypts every new value, and
``SECRET_KEY_FALLBACKS`` (older keys, newest first; Flask 3.1's name and meaning) are still
tried when reading (:class:`cryptography.fernet.MultiFernet`). ``flask --app wsgi secrets
rotate`` re-encrypts every stored value under ``SECRET_KEY``, after which the fallbacks can go.
Values without the prefix (written before encryption) read as clear text.

The API: :func:`encrypt`, :func:`decrypt` (raises :class:`UndecryptableSecret` when no key of
the ring opens the value: never a silent ``None``) and :func:`rotate`.
"""
from __future__ import annotations

import base64
import functools
from collections.abc import Iterable

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

PREFIX = "enc:v1:"
WHAT_TO_DO = ("add the SECRET_KEY it was written under to SECRET_KEY_FALLBACKS, "
              "or re-enter the secret")


class UndecryptableSecret(Exception):
    """A stored secret that neither ``SECRET_KEY`` nor any of ``SECRET_KEY_FALLBACKS`` decrypts
    (the key it was written under is gone, or the value is damaged)."""

    def __init__(self, what: str = "a stored secret") -> None:
        self.what = what
        super().__init__(f"{what} cannot be decrypted with SECRET_KEY or SECRET_KEY_FALLBACKS: "
                         f"{WHAT_TO_DO}.")


@functools.lru_cache(maxsize=32)
def _fernet(secret_key: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=b"athena webhook secret v1").derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(key))


@functools.lru_cache(maxsize=8)
def _ring(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([_fernet(key) for key in keys])


def configured_keys(config: dict | None = None) -> tuple[str, ...]:
    """``SECRET_KEY`` then ``SECRET_KEY_FALLBACKS`` (a list, or one comma-separated string)."""
    config = current_app.config if config is None else config
    fallbacks: str | Iterable[str] | None = config.get("SECRET_KEY_FALLBACKS")
    if isinstance(fallbacks, str):
        fallbacks = fallbacks.split(",")
    keys = [str(config["SECRET_KEY"])] + [str(key).strip() for key in fallbacks or ()]
    return tuple(dict.fromkeys(key for key in keys if key))  # in order, without repeats


def encrypt(text: str) -> str:
    """``text`` encrypted under ``SECRET_KEY``: ``enc:v1:<token>``."""
    return PREFIX + _ring(configured_keys()).encrypt(text.encode()).decode()


def decrypt(stored: str, what: str = "a stored secret") -> str:
    """The clear text of a stored value (a value without the prefix is returned as it is).
    Raises :class:`UndecryptableSecret` (naming ``what``) when no key of the ring opens it."""
    if not is_encrypted(stored):
        return stored  # legacy clear value
    try:
        return _ring(configured_keys()).decrypt(stored[len(PREFIX):].encode()).decode()
    except InvalidToken:
        raise UndecryptableSecret(what) from None


def rotate(stored: str, what: str = "a stored secret") -> str:
    """``stored`` encrypted under the current ``SECRET_KEY``: the same string when it already is,
    a new token when a fallback key (or no encryption) was used. Raises
    :class:`UndecryptableSecret` when no key of the ring opens it."""
    keys = configured_keys()
    if not is_encrypted(stored):
        return encrypt(stored)
    token = stored[len(PREFIX):].encode()
    try:
        _fernet(keys[0]).decrypt(token)
        return stored  # already under SECRET_KEY
    except InvalidToken:
        pass
    try:
        return PREFIX + _ring(keys).rotate(token).decode()
    except InvalidToken:
        raise UndecryptableSecret(what) from None


def is_encrypted(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)
