"""Redaction as plain functions over strings and event dicts: no logging involved."""

from __future__ import annotations

import sys
from collections import namedtuple
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from cutover.redaction import (
    REDACTED,
    forget_secrets,
    is_sensitive_key,
    redact_event,
    redact_text,
    redact_value,
    register_secret,
)

SECRET = "Tr0ub4dor&3-horse"


def _private_key() -> str:
    """A fresh OpenSSH private key (no key is kept in the repository)."""
    key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()


PRIVATE_KEY = _private_key()
KEY_HEADER, PEM_BODY = PRIVATE_KEY.splitlines()[:2]


@pytest.fixture(autouse=True)
def registered():
    forget_secrets()
    register_secret(SECRET)
    register_secret(PRIVATE_KEY)
    yield
    forget_secrets()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"connecting with {SECRET} now", f"connecting with {REDACTED} now"),
        (f"{SECRET}{SECRET}", f"{REDACTED}{REDACTED}"),
        ("Tr0ub4dor%263-horse in a query", f"{REDACTED} in a query"),  # percent-encoded
        (f"key body {PEM_BODY} quoted", f"key body {REDACTED} quoted"),  # one line of a multi-line secret
        (f"'{KEY_HEADER}\\n{PEM_BODY[:4]}", None),  # escaped form: checked below
        ("postgresql://migrate:other-pw@db1:5432/bzk", f"postgresql://migrate:{REDACTED}@db1:5432/bzk"),
        ("host=db1 user=migrate password=plain-pw dbname=bzk", f"host=db1 user=migrate password={REDACTED} dbname=bzk"),
        ("https://api/x?api_key=abc123&zone=z", f"https://api/x?api_key={REDACTED}&zone=z"),
        ("client_secret='a b c' next", f"client_secret={REDACTED} next"),
        ("Authorization: Bearer eyJhbGciOi.x.y", f"Authorization: {REDACTED}"),
        ("{'X-API-Key': 'k', 'authorization': 'Basic dXNlcjpwdw=='}", None),
        ("nothing secret here: abc, password_env=SRC_PG_PASSWORD", "nothing secret here: abc, password_env=SRC_PG_PASSWORD"),
        ("", ""),
    ],
)
def test_redact_text_replaces_secrets_and_password_fragments(text, expected):
    redacted = redact_text(text)
    if expected is not None:
        assert redacted == expected
    assert SECRET not in redacted
    assert PEM_BODY not in redacted
    assert "Basic dXNlcjpwdw==" not in redacted


def test_escaped_multiline_secret_is_redacted_as_a_whole():
    # A multi-line key shows up with \n escapes in a repr or a JSON string.
    assert redact_text(repr(PRIVATE_KEY)) == f"'{REDACTED}'"
    assert redact_text(f"raise X({PRIVATE_KEY!r})") == f"raise X('{REDACTED}')"


def test_redact_text_is_idempotent():
    text = f"password=abc postgresql://u:{SECRET}@h/db Authorization: Bearer t0k3n"
    once = redact_text(text)
    assert redact_text(once) == once


def test_values_shorter_than_four_characters_are_not_registered():
    register_secret("abc")
    register_secret("   ")
    register_secret(None)
    assert redact_text("abc and abcd") == "abc and abcd"


def test_forgotten_secrets_are_no_longer_redacted():
    forget_secrets()
    assert redact_text(f"x {SECRET}") == f"x {SECRET}"


def test_longest_secret_wins_when_one_contains_another():
    register_secret("hunter2hunter2")
    register_secret("hunter2")
    assert redact_text("pw=hunter2hunter2!") == f"pw={REDACTED}!"


@pytest.mark.parametrize(
    ("key", "sensitive"),
    [
        ("password", True),
        ("PGPASSWORD", True),
        ("db_password", True),
        ("passwd", True),
        ("secret", True),
        ("client_secret", True),
        ("token", True),
        ("access_token", True),
        ("api_key", True),
        ("apikey", True),
        ("apiKey", True),
        ("X-API-Key", True),
        ("key", True),
        ("ssh_key", True),
        ("private_key", True),
        ("privateKey", True),
        ("Authorization", True),
        ("Proxy-Authorization", True),
        ("Set-Cookie", True),
        ("credentials", True),
        ("passphrase", True),
        # describe a credential without holding it
        ("key_path", False),
        ("key_file", False),
        ("password_env", False),
        ("secret_name", False),
        ("token_expires", False),
        ("key_fingerprint", False),
        # public or structural keys
        ("host_key", False),
        ("public_key", False),
        ("cache_key", False),
        ("run_key", False),
        ("primary_key", False),
        ("step_key", False),
        # ordinary fields
        ("event", False),
        ("step_id", False),
        ("monkey", False),
        ("keyboard", False),
        ("rows", False),
        (42, False),
    ],
)
def test_sensitive_key_names(key, sensitive):
    assert is_sensitive_key(key) is sensitive


def test_redact_event_hides_sensitive_keys_and_secret_values_at_every_depth():
    Pair = namedtuple("Pair", "name value")
    event = {
        "event": f"login {SECRET}",
        "password": "anything",
        "password_env": "SRC_PG_PASSWORD",
        "token": None,
        "key_path": "/etc/cutover/id_ed25519",
        "headers": {"Authorization": "Bearer abc", "Accept": "application/json"},
        "argv": ["pg_dump", f"--dbname=postgresql://u:{SECRET}@h/db"],
        "pair": Pair("dsn", f"x{SECRET}"),
        "nested": ({"inner": [{"api_key": 12345}, f"..{SECRET}.."]},),
        "rows": 3,
        "ok": True,
        "_record": object(),  # machinery: left alone
    }
    out = redact_event(None, "info", event)
    assert out["event"] == f"login {REDACTED}"
    assert out["password"] == REDACTED
    assert out["password_env"] == "SRC_PG_PASSWORD"
    assert out["token"] is None
    assert out["key_path"] == "/etc/cutover/id_ed25519"
    assert out["headers"] == {"Authorization": REDACTED, "Accept": "application/json"}
    assert out["argv"] == ["pg_dump", f"--dbname=postgresql://u:{REDACTED}@h/db"]
    assert out["pair"] == Pair("dsn", f"x{REDACTED}") and isinstance(out["pair"], Pair)
    assert out["nested"] == ({"inner": [{"api_key": REDACTED}, f"..{REDACTED}.."]},)
    assert out["rows"] == 3 and out["ok"] is True
    assert out["_record"] is event["_record"]


def test_redact_event_renders_exc_info_to_redacted_traceback_text():
    try:
        raise ConnectionError(f"could not connect with {SECRET}")
    except ConnectionError:
        out = redact_event(None, "error", {"event": "connect_failed", "exc_info": True})
    assert "exc_info" not in out
    assert out["exception"].startswith("Traceback (most recent call last):")
    assert f"ConnectionError: could not connect with {REDACTED}" in out["exception"]
    assert SECRET not in out["exception"]


@pytest.mark.parametrize("form", ["exception", "tuple"])
def test_redact_event_accepts_exception_objects_and_tuples(form):
    try:
        raise RuntimeError(SECRET)
    except RuntimeError as exc:
        exc_info = exc if form == "exception" else sys.exc_info()
    out = redact_event(None, "error", {"event": "x", "exc_info": exc_info})
    assert f"RuntimeError: {REDACTED}" in out["exception"]


def test_secret_in_a_key_name_is_redacted_too():
    out = redact_event(None, "info", {"event": "x", f"user_{SECRET}": 1})
    assert out == {"event": "x", f"user_{REDACTED}": 1}


def test_unknown_objects_are_replaced_by_redacted_text_only_when_they_leak():
    @dataclass
    class Conn:
        host: str
        password: str

    leaky = Conn("db1", SECRET)
    assert redact_value(leaky).endswith(f"Conn(host='db1', password={REDACTED})")
    # the password=... pattern applies to reprs too, even with an unregistered value
    assert redact_value(Conn("db1", "n/a")).endswith(f"Conn(host='db1', password={REDACTED})")

    @dataclass
    class Endpoint:
        host: str
        port: int

    clean = Endpoint("db1", 5432)
    assert redact_value(clean) is clean
    assert redact_value(ValueError(f"bad {SECRET}")) == f"ValueError: bad {REDACTED}"
    assert redact_value(f"x{SECRET}".encode()) == f"x{REDACTED}".encode()
