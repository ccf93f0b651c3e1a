"""Private keys in every form Okta users have them, and the refusals that save a confusing 401 later."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from okta_sync import OktaConfig, PrivateKeyError, load_signing_key
from okta_sync.auth.assertion import PrivateKeyJWT
from okta_sync.errors import ConfigurationError
from tests import keys

TOKEN_URL = "https://dev-123.okta.com/oauth2/v1/token"


def _claims(signing_key, token_url=TOKEN_URL):
    assertion = PrivateKeyJWT("0oaclient", signing_key, lifetime=300).assertion(token_url)
    header = jwt.get_unverified_header(assertion)
    claims = jwt.decode(
        assertion, signing_key.key.public_key(), algorithms=[signing_key.algorithm], audience=token_url
    )
    return header, claims


@pytest.mark.parametrize(
    "make_pem, expected_alg",
    [
        (lambda: keys.pkcs8_pem(keys.rsa_key()), "RS256"),
        (lambda: keys.traditional_pem(keys.rsa_key()), "RS256"),
        (lambda: keys.pkcs8_pem(keys.ec_key("secp256r1")), "ES256"),
        (lambda: keys.traditional_pem(keys.ec_key("secp384r1")), "ES384"),
        (lambda: keys.pkcs8_pem(keys.ec_key("secp521r1")), "ES512"),
    ],
    ids=["pkcs8-rsa", "pkcs1-rsa", "ec-p256", "sec1-ec-p384", "ec-p521"],
)
def test_pem_forms_sign_verifiable_assertions(make_pem, expected_alg):
    signing_key = load_signing_key(private_key=make_pem(), key_id="kid-1")
    header, claims = _claims(signing_key)
    assert header["alg"] == expected_alg
    assert header["kid"] == "kid-1"
    assert claims["iss"] == claims["sub"] == "0oaclient"
    assert claims["aud"] == TOKEN_URL
    assert claims["exp"] - claims["iat"] == 300


@pytest.mark.parametrize("alg", ["RS384", "RS512"])
def test_rsa_algorithm_can_be_chosen(alg):
    signing_key = load_signing_key(private_key=keys.pkcs8_pem(keys.rsa_key()), algorithm=alg, key_id="k")
    header, _ = _claims(signing_key)
    assert header["alg"] == alg


def test_ec_key_refuses_an_algorithm_of_another_curve():
    with pytest.raises(PrivateKeyError, match="ES256"):
        load_signing_key(private_key=keys.pkcs8_pem(keys.ec_key()), algorithm="ES384")


def test_encrypted_pem_needs_the_right_passphrase(tmp_path):
    pem = keys.pkcs8_pem(keys.rsa_key(), passphrase=b"correct horse")
    path = keys.write_key(tmp_path / "key.pem", pem)
    assert load_signing_key(private_key_path=path, passphrase="correct horse", key_id="k").algorithm == "RS256"
    with pytest.raises(PrivateKeyError) as missing:
        load_signing_key(private_key_path=path)
    assert missing.value.field == "private_key_passphrase"
    with pytest.raises(PrivateKeyError, match="wrong passphrase") as wrong:
        load_signing_key(private_key_path=path, passphrase="battery staple")
    assert "correct horse" not in str(wrong.value)


def test_jwk_with_its_own_kid_and_an_overriding_kid():
    jwk = keys.private_jwk(keys.rsa_key(), kid="jwk-kid")
    assert load_signing_key(private_key=jwk).key_id == "jwk-kid"
    assert load_signing_key(private_key=jwk, key_id="configured").key_id == "configured"
    ec_jwk = keys.private_jwk(keys.ec_key("secp384r1"), kid="ec-kid")
    signing_key = load_signing_key(private_key=ec_jwk)
    assert (signing_key.algorithm, signing_key.key_id) == ("ES384", "ec-kid")


def test_public_jwk_and_jwks_are_refused_with_a_reason():
    import json

    public = json.loads(keys.private_jwk(keys.rsa_key()))
    del public["d"]
    with pytest.raises(PrivateKeyError, match="public JWK"):
        load_signing_key(private_key=json.dumps(public))
    with pytest.raises(PrivateKeyError, match="JWKS"):
        load_signing_key(private_key=json.dumps({"keys": [public]}))


@pytest.mark.parametrize(
    "make_pem, message",
    [
        (lambda: keys.pkcs8_pem(keys.rsa_key(1024)), "at least 2048"),
        (lambda: keys.pkcs8_pem(keys.dsa_key()), "DSA key"),
        (lambda: keys.pkcs8_pem(keys.ed25519_key()), "Ed25519 key"),
        (lambda: keys.pkcs8_pem(keys.ec_key("secp256k1")), "secp256k1"),
        (lambda: "-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n", "not a valid PEM"),
        (lambda: "just some text", "neither a PEM"),
    ],
    ids=["rsa-1024", "dsa", "ed25519", "secp256k1", "malformed-pem", "not-a-key"],
)
def test_unusable_keys_are_refused_clearly(make_pem, message):
    with pytest.raises(PrivateKeyError, match=message) as raised:
        load_signing_key(private_key=make_pem())
    assert "BEGIN" not in str(raised.value)


def _unusable_file_message(path) -> str:
    return (f"private_key_path: {str(path)!r} cannot be used: it must be a regular file of at most 64 KiB, readable by the "
            f"worker, holding a PEM or JWK private key (every unusable file gets this same message)")


def _fifo(tmp_path):
    os.mkfifo(tmp_path / "fifo.pem")  # nobody writes: a blocking open would wait forever
    return tmp_path / "fifo.pem"


def _shadow_like(tmp_path):
    path = tmp_path / "shadow"
    path.write_text("root:$6$saltsalt$hashhashhash:19000:0:99999:7:::\n")
    return path


def _too_big(tmp_path):
    pem = keys.pkcs8_pem(keys.rsa_key())  # a real key, padded past 64 KiB
    return keys.write_key(tmp_path / "big.pem", pem + "\n" * (64 * 1024), mode=0o600)


def _directory(tmp_path):
    (tmp_path / "dir.pem").mkdir()
    return tmp_path / "dir.pem"


def _der(tmp_path):
    path = tmp_path / "key.der"
    path.write_bytes(keys.rsa_key().private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return path


def _public_jwk(tmp_path):
    path = tmp_path / "public.json"
    public = load_signing_key(private_key=keys.pkcs8_pem(keys.rsa_key()), key_id="k").public_jwk()
    path.write_text(json.dumps(public))
    return path


@pytest.mark.parametrize("make_path", [
    lambda tmp_path: tmp_path / "missing.pem", _fifo, lambda tmp_path: Path("/dev/zero"), _directory, _shadow_like,
    _too_big, _der, _public_jwk,
], ids=["missing", "fifo", "dev-zero", "directory", "not-a-key", "over-64-KiB", "der", "public-jwk"])
def test_every_unusable_key_file_gets_the_same_message_at_once(tmp_path, make_path, caplog):
    path = make_path(tmp_path)
    outcome = {}

    def load():
        try:
            load_signing_key(private_key_path=path)
        except PrivateKeyError as exc:
            outcome["error"] = exc

    reader = threading.Thread(target=load, daemon=True)  # a blocking open of the FIFO must not hang the suite
    with caplog.at_level(logging.WARNING, logger="okta_sync.auth.keys"):
        reader.start()
        reader.join(timeout=30)
    assert not reader.is_alive(), f"reading {path} did not return"
    assert str(outcome["error"]) == _unusable_file_message(path)
    assert outcome["error"].field == "private_key_path"
    assert caplog.text == ""  # the loose-mode warning is for key files only: it would tell a file's mode


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file of mode 000")
def test_an_unreadable_key_file_gets_the_same_message(tmp_path):
    path = keys.write_key(tmp_path / "locked.pem", keys.pkcs8_pem(keys.rsa_key()), mode=0o000)
    with pytest.raises(PrivateKeyError) as raised:
        load_signing_key(private_key_path=path)
    assert str(raised.value) == _unusable_file_message(path)


def test_a_key_file_that_is_a_key_still_says_what_is_wrong_with_the_key(tmp_path):
    weak = keys.write_key(tmp_path / "weak.pem", keys.pkcs8_pem(keys.rsa_key(1024)), mode=0o600)
    with pytest.raises(PrivateKeyError, match="at least 2048"):
        load_signing_key(private_key_path=weak)
    link = tmp_path / "linked.pem"  # Kubernetes mounts secrets through symlinks
    link.symlink_to(keys.write_key(tmp_path / "real.pem", keys.pkcs8_pem(keys.rsa_key()), mode=0o600))
    assert load_signing_key(private_key_path=link, key_id="k").algorithm == "RS256"


def test_group_readable_key_file_draws_a_warning_naming_the_file_and_fix(tmp_path, caplog):
    path = keys.write_key(tmp_path / "loose.pem", keys.pkcs8_pem(keys.rsa_key()), mode=0o644)
    with caplog.at_level(logging.WARNING, logger="okta_sync.auth.keys"):
        load_signing_key(private_key_path=path, key_id="k")
    assert str(path) in caplog.text and "chmod 600" in caplog.text
    caplog.clear()
    keys.write_key(tmp_path / "tight.pem", keys.pkcs8_pem(keys.rsa_key()), mode=0o600)
    with caplog.at_level(logging.WARNING, logger="okta_sync.auth.keys"):
        load_signing_key(private_key_path=tmp_path / "tight.pem", key_id="k")
    assert caplog.text == ""


def test_signing_key_never_prints_its_material():
    pem = keys.pkcs8_pem(keys.rsa_key())
    signing_key = load_signing_key(private_key=pem, key_id="k")
    for text in (repr(signing_key), str(signing_key), repr(PrivateKeyJWT("c", signing_key))):
        assert "PRIVATE" not in text and pem.splitlines()[1][:20] not in text


def test_every_assertion_is_unique_and_short_lived():
    signing_key = load_signing_key(private_key=keys.pkcs8_pem(keys.ec_key()), key_id="k")
    client_auth = PrivateKeyJWT("0oaclient", signing_key)
    jtis = {jwt.decode(client_auth.assertion(TOKEN_URL), options={"verify_signature": False})["jti"] for _ in range(50)}
    assert len(jtis) == 50
    with pytest.raises(ConfigurationError):
        PrivateKeyJWT("0oaclient", signing_key, lifetime=3601)


@pytest.mark.parametrize(
    "settings, field",
    [
        ({"org_url": "http://dev-123.okta.com"}, "org_url"),
        ({"org_url": "https://dev-123.okta.com/oauth2/default"}, "org_url"),
        ({"org_url": "https://dev-123.okta.com?x=1"}, "org_url"),
        ({"client_id": ""}, "client_id"),
        ({"scopes": ""}, "scopes"),
        ({"scopes": []}, "scopes"),
        ({"assertion_lifetime": 7200}, "assertion_lifetime"),
        ({"dpop": "sometimes"}, "dpop"),
        ({"page_size": 500}, "page_size"),
        ({"rate_limit_fraction": 0}, "rate_limit_fraction"),
        ({"token_url": "http://example.com/token"}, "token_url"),
    ],
)
def test_bad_settings_name_the_field(settings, field):
    base = {"org_url": "https://dev-123.okta.com", "client_id": "0oa1", "private_key": "x"}
    with pytest.raises(ConfigurationError) as raised:
        OktaConfig(**{**base, **settings})
    assert raised.value.field == field


@pytest.mark.parametrize("org", ["http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:9"])
def test_plain_http_is_allowed_only_to_loopback(org):
    assert OktaConfig(org_url=org, client_id="c", private_key="x").org_url == org


def test_token_url_follows_the_authorization_server_setting():
    base = {"org_url": "https://dev-123.okta.com/", "client_id": "c", "private_key": "x"}
    assert OktaConfig(**base).resolved_token_url == "https://dev-123.okta.com/oauth2/v1/token"
    assert OktaConfig(**base, authorization_server_id="aus1").resolved_token_url == "https://dev-123.okta.com/oauth2/aus1/v1/token"
    explicit = "https://dev-123.okta.com/oauth2/aus9/v1/token"
    assert OktaConfig(**base, token_url=explicit).resolved_token_url == explicit


def test_from_mapping_coerces_strings_and_refuses_unknown_settings():
    config = OktaConfig.from_mapping(
        {"org_url": "https://x.okta.com", "client_id": "c", "private_key": "k", "page_size": "50", "scopes": "okta.users.read"}
    )
    assert config.page_size == 50 and config.scopes == ("okta.users.read",)
    with pytest.raises(ConfigurationError) as raised:
        OktaConfig.from_mapping({"org_url": "https://x.okta.com", "client_id": "c", "private_key": "k", "pagesize": 5})
    assert raised.value.field == "pagesize"
