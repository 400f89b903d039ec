"""Crypto for DingTalk's HTTP event push (dingtalk-api.md §7.1).

AES-256-CBC with key = base64(aes_key + "="), IV = first 16 key bytes, PKCS#7 padding to a
32-byte block. Plaintext = 16 random bytes + 4-byte big-endian length + message + owner key
(the app key for console-configured subscriptions). Signature = SHA-1 hex of the sorted
concatenation of token, timestamp, nonce and the encrypted text.

The receiving side (Django view) uses :meth:`CallbackCrypto.decrypt_request` and answers
with :meth:`CallbackCrypto.encrypt_reply`; the simulator uses the same class to push
events and to check replies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import string
import struct
import time
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from dingtalk.errors import CallbackCryptoError

BLOCK_SIZE = 32
SUCCESS = "success"
_NONCE_ALPHABET = string.ascii_letters + string.digits


def pkcs7_pad(data: bytes, block_size: int = BLOCK_SIZE) -> bytes:
    amount = block_size - len(data) % block_size
    return data + bytes([amount]) * amount


def pkcs7_unpad(data: bytes, block_size: int = BLOCK_SIZE) -> bytes:
    if not data:
        raise CallbackCryptoError("empty plaintext")
    amount = data[-1]
    if not 1 <= amount <= block_size or data[-amount:] != bytes([amount]) * amount:
        raise CallbackCryptoError("bad padding")
    return data[:-amount]


def signature(token: str, timestamp: str, nonce: str, encrypted: str) -> str:
    joined = "".join(sorted([token, timestamp, nonce, encrypted]))
    return hashlib.sha1(joined.encode("utf-8")).hexdigest()  # noqa: S324 - DingTalk's protocol


def make_nonce(length: int = 8) -> str:
    return "".join(secrets.choice(_NONCE_ALPHABET) for _ in range(length))


class CallbackCrypto:
    """One app's event-push crypto: ``token`` (3-32 chars), ``aes_key`` (43 chars), owner key."""

    def __init__(self, token: str, aes_key: str, owner_key: str) -> None:
        if len(aes_key) != 43:
            raise ValueError("aes_key must be 43 characters")
        try:
            self._key = base64.b64decode(aes_key + "=")
        except binascii.Error as exc:
            raise ValueError("aes_key is not base64") from exc
        if len(self._key) != 32:
            raise ValueError("aes_key must decode to 32 bytes")
        self.token = token
        self.owner_key = owner_key

    def _cipher(self) -> Cipher[modes.CBC]:
        return Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16]))

    def encrypt(self, message: str, *, random_prefix: bytes | None = None) -> str:
        prefix = os.urandom(16) if random_prefix is None else random_prefix
        if len(prefix) != 16:
            raise ValueError("random_prefix must be 16 bytes")
        raw = message.encode("utf-8")
        plain = prefix + struct.pack(">I", len(raw)) + raw + self.owner_key.encode("utf-8")
        encryptor = self._cipher().encryptor()
        return base64.b64encode(encryptor.update(pkcs7_pad(plain)) + encryptor.finalize()).decode()

    def decrypt(self, encrypted: str) -> str:
        try:
            data = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CallbackCryptoError("encrypt is not base64") from exc
        if not data or len(data) % 16:
            raise CallbackCryptoError("encrypt has a bad length")
        decryptor = self._cipher().decryptor()
        plain = pkcs7_unpad(decryptor.update(data) + decryptor.finalize())
        if len(plain) < 20:
            raise CallbackCryptoError("plaintext too short")
        (length,) = struct.unpack(">I", plain[16:20])
        message, owner = plain[20 : 20 + length], plain[20 + length :]
        if len(message) != length:
            raise CallbackCryptoError("plaintext length mismatch")
        # A valid ciphertext for another app (or corp) must not be accepted as ours.
        if not hmac.compare_digest(owner, self.owner_key.encode("utf-8")):
            raise CallbackCryptoError("owner key mismatch")
        try:
            return message.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CallbackCryptoError("message is not UTF-8") from exc

    def sign(self, timestamp: str, nonce: str, encrypted: str) -> str:
        return signature(self.token, timestamp, nonce, encrypted)

    def verify(self, msg_signature: str, timestamp: str, nonce: str, encrypted: str) -> bool:
        return hmac.compare_digest(self.sign(timestamp, nonce, encrypted), msg_signature)

    def decrypt_request(
        self, msg_signature: str, timestamp: str, nonce: str, body: bytes | str | dict[str, Any]
    ) -> dict[str, Any]:
        """Verify and decrypt one push (query parameters + JSON body) into the event dict."""
        if isinstance(body, dict):
            payload: Any = body
        else:
            try:
                payload = json.loads(body)
            except ValueError as exc:
                raise CallbackCryptoError("body is not JSON") from exc
        encrypted = payload.get("encrypt") if isinstance(payload, dict) else None
        if not isinstance(encrypted, str):
            raise CallbackCryptoError("body has no encrypt field")
        if not self.verify(msg_signature, timestamp, nonce, encrypted):
            raise CallbackCryptoError("signature mismatch")
        try:
            event = json.loads(self.decrypt(encrypted))
        except ValueError as exc:
            raise CallbackCryptoError("event is not JSON") from exc
        if not isinstance(event, dict):
            raise CallbackCryptoError("event is not an object")
        return event

    def encrypt_reply(
        self, message: str = SUCCESS, *, timestamp: str | None = None, nonce: str | None = None
    ) -> dict[str, str]:
        """The JSON reply DingTalk expects: the encrypted ``success`` plus its signature."""
        ts = timestamp if timestamp is not None else str(int(time.time() * 1000))
        nc = nonce if nonce is not None else make_nonce()
        encrypted = self.encrypt(message)
        return {
            "msg_signature": self.sign(ts, nc, encrypted),
            "timeStamp": ts,
            "nonce": nc,
            "encrypt": encrypted,
        }

    def encrypt_request(
        self, event: dict[str, Any], *, timestamp: str | None = None, nonce: str | None = None
    ) -> tuple[dict[str, str], dict[str, str]]:
        """What DingTalk sends: (query parameters, JSON body) for one event."""
        ts = timestamp if timestamp is not None else str(int(time.time() * 1000))
        nc = nonce if nonce is not None else make_nonce()
        encrypted = self.encrypt(json.dumps(event, ensure_ascii=False, separators=(",", ":")))
        query = {"msg_signature": self.sign(ts, nc, encrypted), "timestamp": ts, "nonce": nc}
        return query, {"encrypt": encrypted}

    def check_reply(self, reply: bytes | str | dict[str, Any]) -> bool:
        """True if a receiver's reply is a correctly signed, encrypted ``success``."""
        try:
            data = reply if isinstance(reply, dict) else json.loads(reply)
            if not isinstance(data, dict):
                return False
            encrypted, sig = data["encrypt"], data["msg_signature"]
            ts, nc = str(data["timeStamp"]), str(data["nonce"])
            if not self.verify(sig, ts, nc, encrypted):
                return False
            return self.decrypt(encrypted) == SUCCESS
        except (KeyError, TypeError, ValueError, CallbackCryptoError):
            return False


def is_check_url(event: dict[str, Any]) -> bool:
    """The registration handshake; answer it with :meth:`CallbackCrypto.encrypt_reply`."""
    return event.get("EventType") == "check_url"
