"""Handing one access token from process to process without ever storing it in clear.

Tasks of one DAG run share a token (one token per run per scope set, as Okta advises). The token travels sealed
with AES-256-GCM under a key derived with HKDF from the service app's private key and the run's identity, so only
holders of the private key can open it, and a value copied to another run or app does not open. A DPoP-bound
token travels with its proof key inside the same sealed value.
"""

from __future__ import annotations

import base64
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from okta_sync.auth.dpop import DPoPKey
from okta_sync.auth.keys import SigningKey
from okta_sync.auth.tokens import AccessToken
from okta_sync.errors import SealedTokenError

VERSION = "okta-sync-token-v1"


def _key(signing_key: SigningKey, context: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=VERSION.encode(), info=context.encode("utf-8")
    ).derive(signing_key.private_bytes())


def seal_token(token: AccessToken, signing_key: SigningKey, context: str) -> str:
    """Encrypt the token (and its DPoP key) for holders of `signing_key` in this `context` (run id, app, scopes)."""
    payload = {
        "value": token.value,
        "token_type": token.token_type,
        "expires_at": token.expires_at,
        "scopes": list(token.scopes),
        "dpop_key": token.dpop_key.to_pem().decode() if token.dpop_key else None,
    }
    nonce = os.urandom(12)
    ciphertext = AESGCM(_key(signing_key, context)).encrypt(
        nonce, json.dumps(payload).encode(), context.encode("utf-8")
    )
    return f"{VERSION}.{base64.urlsafe_b64encode(nonce + ciphertext).decode()}"


MAX_SEALED_LENGTH = 64 * 1024  # a token and its DPoP key seal to a few KB; the XCom is writable by people


def open_sealed_token(sealed: str, signing_key: SigningKey, context: str) -> AccessToken:
    if not isinstance(sealed, str) or len(sealed) > MAX_SEALED_LENGTH:
        raise SealedTokenError(f"the run token XCom is not a sealed token (text of at most {MAX_SEALED_LENGTH} "
                               "characters)")
    prefix, _, body = sealed.partition(".")
    if prefix != VERSION or not body:
        raise SealedTokenError(f"not a sealed token of format {VERSION}")
    try:
        raw = base64.urlsafe_b64decode(body.encode())
        plaintext = AESGCM(_key(signing_key, context)).decrypt(raw[:12], raw[12:], context.encode("utf-8"))
    except (InvalidTag, ValueError):
        raise SealedTokenError(
            "the sealed token does not open with this private key and run (another run, key or app sealed it)"
        ) from None
    payload = json.loads(plaintext)
    dpop_pem = payload.get("dpop_key")
    return AccessToken(
        value=payload["value"],
        token_type=payload["token_type"],
        expires_at=float(payload["expires_at"]),
        scopes=tuple(payload["scopes"]),
        dpop_key=DPoPKey.from_pem(dpop_pem.encode()) if dpop_pem else None,
    )
