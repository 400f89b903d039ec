"""Integration secrets at rest and request signatures.

An HMAC secret cannot be stored as a one-way hash: verifying a signature needs the secret
itself. It is stored encrypted with Fernet under a key derived from SECRET_KEY by HKDF, so a
database dump alone reveals nothing, and the plain secret is shown only once, at creation or
rotation. Changing SECRET_KEY makes every stored secret unreadable: rotate them all after it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

SIGNATURE_PREFIX = "sha256="


def _fernet() -> Fernet:
    key = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"integrations.secret-at-rest.v1",
        info=b"integration HMAC secrets",
    ).derive(settings.SECRET_KEY.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def new_secret() -> str:
    """A fresh 256-bit secret, URL-safe text the caller can paste into a configuration file."""
    return "whsec_" + secrets.token_urlsafe(32)


def encrypt_secret(secret: str) -> str:
    return _fernet().encrypt(secret.encode()).decode()


def decrypt_secret(token: str) -> str | None:
    """The plain secret, or None when it was encrypted under another SECRET_KEY."""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        return None


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value for `body` sent at `timestamp` (Unix seconds as text)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return SIGNATURE_PREFIX + mac.hexdigest()


def signature_matches(secret: str, timestamp: str, body: bytes, given: str) -> bool:
    return hmac.compare_digest(sign(secret, timestamp, body), given.strip())


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
