"""Shared by the HTTP-layer tests: a scripted loopback org that hands out tokens, and one RSA key per module."""

import pytest

from tests import keys
from tests.scripted_server import ScriptedServer, token_reply

TOKEN = "/oauth2/v1/token"


@pytest.fixture
def server():
    with ScriptedServer() as s:
        s.route("POST", TOKEN, token_reply())
        yield s


@pytest.fixture(scope="module")
def rsa_pem():
    return keys.pkcs8_pem(keys.rsa_key())
