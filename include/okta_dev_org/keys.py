"""The default client's key pair and the files a client needs: private key (0600), public JWK, connection.json."""
from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

PRIVATE_KEY_FILE = "client_private_key.pem"
CLIENT_FILE = "client.json"
CONNECTION_FILE = "connection.json"
READY_FILE = "ready.json"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def jwk_thumbprint(jwk: dict) -> str:
    """RFC 7638 SHA-256 thumbprint, base64url: Okta-style kid and DPoP cnf.jkt."""
    if jwk["kty"] == "RSA":
        members = {"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}
    elif jwk["kty"] == "EC":
        members = {"crv": jwk["crv"], "kty": "EC", "x": jwk["x"], "y": jwk["y"]}
    else:
        raise ValueError(f"unsupported kty {jwk['kty']!r}")
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return b64url(hashlib.sha256(canonical).digest())


def public_jwk(public_key) -> dict:
    algorithm = RSAAlgorithm if isinstance(public_key, rsa.RSAPublicKey) else ECAlgorithm
    return json.loads(algorithm.to_jwk(public_key))


def write_private_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


def ensure_client(state_dir: Path, default_client_id: str) -> dict:
    """Create (first start) or load the default client: {client_id, kid, jwk, private_key_path}."""
    state_dir.mkdir(parents=True, exist_ok=True)
    key_path = state_dir / PRIVATE_KEY_FILE
    client_path = state_dir / CLIENT_FILE
    if key_path.exists() and client_path.exists():
        client = json.loads(client_path.read_text())
        client["private_key_path"] = str(key_path.resolve())
        return client
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private_file(key_path, pem)
    jwk = public_jwk(private_key.public_key())
    jwk.update({"kid": jwk_thumbprint(jwk), "use": "sig", "alg": "RS256"})
    client = {"client_id": default_client_id, "kid": jwk["kid"], "jwk": jwk}
    client_path.write_text(json.dumps(client, indent=2) + "\n")
    client["private_key_path"] = str(key_path.resolve())
    return client


def write_json_atomically(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)
