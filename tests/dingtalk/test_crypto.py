"""Callback crypto, checked against values computed here from the primitives directly."""

from __future__ import annotations

import base64
import hashlib
import json
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from dingtalk.crypto import CallbackCrypto, is_check_url, signature
from dingtalk.errors import CallbackCryptoError

AES_KEY = "a" * 32 + "b" * 11  # 43 characters
TOKEN = "portaltoken123"
OWNER = "ding-demo-hko"


def independent_encrypt(message: str, prefix: bytes) -> str:
    key = base64.b64decode(AES_KEY + "=")
    raw = message.encode()
    plain = prefix + struct.pack(">I", len(raw)) + raw + OWNER.encode()
    pad = 32 - len(plain) % 32
    plain += bytes([pad]) * pad
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()


def independent_decrypt(encrypted: str) -> tuple[str, str]:
    key = base64.b64decode(AES_KEY + "=")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = decryptor.update(base64.b64decode(encrypted)) + decryptor.finalize()
    plain = plain[: -plain[-1]]
    (length,) = struct.unpack(">I", plain[16:20])
    return plain[20 : 20 + length].decode(), plain[20 + length :].decode()


@pytest.fixture
def crypto():
    return CallbackCrypto(TOKEN, AES_KEY, OWNER)


def test_encrypt_matches_an_independent_computation(crypto):
    prefix = bytes(range(16))
    message = '{"EventType":"check_url"}'
    assert crypto.encrypt(message, random_prefix=prefix) == independent_encrypt(message, prefix)


def test_decrypt_reads_an_independently_encrypted_message(crypto):
    encrypted = independent_encrypt("success 成功", b"\x07" * 16)
    assert crypto.decrypt(encrypted) == "success 成功"


def test_our_ciphertext_decrypts_independently_with_owner_key(crypto):
    assert independent_decrypt(crypto.encrypt("hello")) == ("hello", OWNER)


def test_signature_is_sha1_of_sorted_parts():
    expected = hashlib.sha1(  # noqa: S324 - DingTalk's signature is SHA-1
        "".join(sorted([TOKEN, "1700000000000", "nonce1", "ENC"])).encode()
    ).hexdigest()
    assert signature(TOKEN, "1700000000000", "nonce1", "ENC") == expected


def test_a_known_fixed_vector(crypto):
    # Recomputable by hand: AES-256-CBC of a fixed prefix, so the ciphertext is stable.
    encrypted = crypto.encrypt("success", random_prefix=b"0123456789abcdef")
    assert encrypted == independent_encrypt("success", b"0123456789abcdef")
    assert len(base64.b64decode(encrypted)) % 32 == 0


def test_check_url_handshake_round_trip(crypto):
    query, body = crypto.encrypt_request(
        {"EventType": "check_url"}, timestamp="1700000000000", nonce="abc123"
    )
    event = crypto.decrypt_request(
        query["msg_signature"], query["timestamp"], query["nonce"], json.dumps(body)
    )
    assert is_check_url(event)
    reply = crypto.encrypt_reply(timestamp="1700000000001", nonce="xyz")
    assert set(reply) == {"msg_signature", "timeStamp", "nonce", "encrypt"}
    assert reply["msg_signature"] == signature(TOKEN, "1700000000001", "xyz", reply["encrypt"])
    assert independent_decrypt(reply["encrypt"])[0] == "success"
    assert crypto.check_reply(json.dumps(reply))


def test_tampered_signature_or_other_owner_is_rejected(crypto):
    query, body = crypto.encrypt_request({"EventType": "user_add_org"})
    with pytest.raises(CallbackCryptoError, match="signature"):
        crypto.decrypt_request("0" * 40, query["timestamp"], query["nonce"], body)
    other = CallbackCrypto(TOKEN, AES_KEY, "another-app")
    with pytest.raises(CallbackCryptoError, match="owner"):
        other.decrypt(body["encrypt"])
    assert not crypto.check_reply(
        {"encrypt": crypto.encrypt("failure"), "msg_signature": "x", "timeStamp": "1", "nonce": "n"}
    )


def test_garbage_inputs_raise_typed_errors(crypto):
    for bad in ("not base64!!", base64.b64encode(b"short").decode(), ""):
        with pytest.raises(CallbackCryptoError):
            crypto.decrypt(bad)
    with pytest.raises(ValueError):
        CallbackCrypto(TOKEN, "tooshort", OWNER)
