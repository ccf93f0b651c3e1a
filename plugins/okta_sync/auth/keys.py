"""Loading the service app's private key: PEM (PKCS#8, PKCS#1, EC, encrypted) or JWK, from a file or inline text.

The result is a `SigningKey`: the key object, the JWS algorithm that follows from it, and the `kid`. It never
prints its key material.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from okta_sync.errors import PrivateKeyError

log = logging.getLogger(__name__)

RSA_ALGORITHMS = ("RS256", "RS384", "RS512")
EC_ALGORITHM_BY_CURVE = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
MIN_RSA_BITS = 2048


@dataclass(frozen=True)
class SigningKey:
    """A private key ready to sign client assertions. `repr`/`str` never show the key."""

    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = field(repr=False)
    algorithm: str
    key_id: str | None
    source: str  # where it came from ("file /path" or "inline"), for messages

    def __str__(self) -> str:
        return f"SigningKey({self.algorithm}, kid={self.key_id!r}, from {self.source})"

    __repr__ = __str__

    def private_bytes(self) -> bytes:
        """DER PKCS#8 of the key: input for deriving the run-scoped sealing key. Never log it."""
        return self.key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def public_jwk(self) -> dict[str, Any]:
        """The public JWK to register in Okta (what the app's JWKS holds)."""
        jwk = json.loads(_algorithm_impl(self.algorithm).to_jwk(self.key.public_key()))
        jwk.update({"use": "sig", "alg": self.algorithm})
        if self.key_id:
            jwk["kid"] = self.key_id
        return jwk


def _algorithm_impl(algorithm: str) -> Any:
    from cryptography.hazmat.primitives import hashes

    digest = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}[algorithm[-3:]]
    return RSAAlgorithm(digest) if algorithm.startswith("RS") else ECAlgorithm(digest)


def load_signing_key(
    *,
    private_key: str | None = None,
    private_key_path: str | os.PathLike[str] | None = None,
    passphrase: str | None = None,
    key_id: str | None = None,
    algorithm: str | None = None,
) -> SigningKey:
    """Load the key from inline text or a file, pick the algorithm and the kid, and refuse unusable keys.

    A key file that cannot be used (missing, not a regular file, larger than 64 KiB, unreadable, not a PEM or JWK
    private key) always gets the same message, so that whoever may edit a connection cannot use its Test button to
    learn whether a file exists or what it holds. Once a file holds a private key, what is wrong with the key
    (encrypted, wrong passphrase, too short, wrong curve) is said, as for an inline key.
    """
    if private_key:
        text, source, mode = private_key, "inline private key", None
    elif private_key_path:
        path = Path(private_key_path)
        text, mode = _read_key_file(path)
        source = f"file {private_key_path}"
    else:
        raise PrivateKeyError("private_key", "no private key given (inline text or private_key_path)")

    stripped = text.strip()
    try:
        if stripped.startswith("{"):
            key, jwk_kid = _parse_jwk(stripped, source)
        else:
            key, jwk_kid = _parse_pem(stripped, passphrase, source), None
    except _NotAKey as refused:
        if mode is not None:
            raise _unusable_key_file(path) from None
        raise PrivateKeyError("private_key", refused.message) from None
    chosen_algorithm = _algorithm_for(key, algorithm, source)
    if mode is not None:
        warn_if_key_file_is_exposed(path, mode)
    return SigningKey(key=key, algorithm=chosen_algorithm, key_id=key_id or jwk_kid, source=source)


MAX_KEY_FILE_BYTES = 64 * 1024


class _NotAKey(Exception):
    """The text is no PEM or JWK private key: said in full for inline text, as the one message for a file."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _unusable_key_file(path: Path) -> PrivateKeyError:
    return PrivateKeyError(
        "private_key_path",
        f"{str(path)!r} cannot be used: it must be a regular file of at most {MAX_KEY_FILE_BYTES // 1024} KiB, readable "
        f"by the worker, holding a PEM or JWK private key (every unusable file gets this same message)",
    )


def _read_key_file(path: Path) -> tuple[str, int]:
    """The file's text and mode. Never blocks (a FIFO), never reads more than the cap (/dev/zero)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a device or FIFO is not even opened
            raise _unusable_key_file(path)
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        raise _unusable_key_file(path) from None
    try:
        status = os.fstat(descriptor)  # what was opened, not what was checked
        if not stat.S_ISREG(status.st_mode) or status.st_size > MAX_KEY_FILE_BYTES:
            raise _unusable_key_file(path)
        data = _read_at_most(descriptor, MAX_KEY_FILE_BYTES + 1)
    except OSError:
        raise _unusable_key_file(path) from None
    finally:
        os.close(descriptor)
    if len(data) > MAX_KEY_FILE_BYTES:
        raise _unusable_key_file(path)
    try:
        return data.decode("utf-8"), status.st_mode
    except UnicodeDecodeError:  # DER, or not a key at all
        raise _unusable_key_file(path) from None


def _read_at_most(descriptor: int, limit: int) -> bytes:
    chunks = []
    size = 0
    while size < limit and (chunk := os.read(descriptor, limit - size)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def warn_if_key_file_is_exposed(path: Path, mode: int | None = None) -> bool:
    """Warn (and return True) when a key file is readable by group or others."""
    mode = path.stat().st_mode if mode is None else mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning(
            "Private key file %s is readable by group or others (mode %s). Fix: chmod 600 %s, or keep the key "
            "in a secrets backend (the connection's password field) instead of a file.",
            path,
            oct(stat.S_IMODE(mode)),
            path,
        )
        return True
    return False


def _parse_pem(text: str, passphrase: str | None, source: str) -> Any:
    if "-----BEGIN" not in text:
        raise _NotAKey(f"{source} is neither a PEM block nor a JWK (JSON)")
    password = passphrase.encode() if passphrase else None
    try:
        return serialization.load_pem_private_key(text.encode(), password=password)
    except TypeError:
        if password is None:
            raise PrivateKeyError(
                "private_key_passphrase", f"{source} is encrypted; set private_key_passphrase"
            ) from None
        raise PrivateKeyError(
            "private_key_passphrase", f"a passphrase was given but {source} is not encrypted; remove it"
        ) from None
    except ValueError:
        if password is not None and "ENCRYPTED" in text:
            raise PrivateKeyError("private_key_passphrase", f"wrong passphrase for {source}") from None
        raise _NotAKey(f"{source} is not a valid PEM private key") from None
    except Exception as exc:  # cryptography raises UnsupportedAlgorithm for DSA-in-odd-containers etc.
        raise _NotAKey(f"{source} cannot be loaded: {type(exc).__name__}") from None


def _parse_jwk(text: str, source: str) -> tuple[Any, str | None]:
    try:
        jwk = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _NotAKey(f"{source} looks like JSON but does not parse (line {exc.lineno})") from None
    if isinstance(jwk, dict) and "keys" in jwk:
        raise _NotAKey(f"{source} is a JWKS (a key set); give the single private JWK")
    if not isinstance(jwk, dict) or "kty" not in jwk:
        raise _NotAKey(f"{source} is not a JWK (no 'kty')")
    if "d" not in jwk:
        raise _NotAKey(f"{source} is a public JWK (no 'd'); the private key is needed to sign")
    kty = jwk["kty"]
    try:
        if kty == "RSA":
            key = RSAAlgorithm.from_jwk(jwk)
        elif kty == "EC":
            key = ECAlgorithm.from_jwk(jwk)
        else:
            raise _NotAKey(f"{source}: JWK key type {kty!r} is not supported; use RSA or EC")
    except _NotAKey:
        raise
    except Exception:
        raise _NotAKey(f"{source} is not a valid {kty} private JWK") from None
    return key, jwk.get("kid")


def _algorithm_for(key: Any, requested: str | None, source: str) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise PrivateKeyError(
                "private_key", f"{source} is RSA {key.key_size} bits; Okta needs at least {MIN_RSA_BITS}"
            )
        algorithm = requested or "RS256"
        if algorithm not in RSA_ALGORITHMS:
            raise PrivateKeyError("algorithm", f"{algorithm!r} does not fit an RSA key; use one of {RSA_ALGORITHMS}")
        return algorithm
    if isinstance(key, ec.EllipticCurvePrivateKey):
        expected = EC_ALGORITHM_BY_CURVE.get(key.curve.name)
        if expected is None:
            raise PrivateKeyError("private_key", f"{source} uses curve {key.curve.name}; use P-256, P-384 or P-521")
        if requested and requested != expected:
            raise PrivateKeyError("algorithm", f"{requested!r} does not fit a {key.curve.name} key; it signs {expected}")
        return expected
    kind = type(key).__name__.lstrip("_").replace("PrivateKey", "")
    raise PrivateKeyError("private_key", f"{source} is a {kind} key; Okta's private_key_jwt takes RSA or EC keys")
