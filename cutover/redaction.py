"""Removing secrets from anything on its way to a log line, a report or a web page.

Two rules, applied together:

* **Registered values.** Every secret the runbook resolves (``env:``/``secret:`` references)
  is handed to :func:`register_secret`; from then on that value is replaced by
  ``[redacted]`` wherever it occurs inside any string: messages, field values nested in
  dicts/lists/tuples, exception text and tracebacks. Values shorter than
  :data:`MIN_SECRET_LENGTH` characters are ignored: replacing every "abc" would mangle
  every line and protect nothing. The URL-encoded and JSON/backslash-escaped spellings of
  a value are registered with it (a password travels percent-encoded in a DSN, a private
  key travels with ``\\n`` escapes in a repr), and so is each long line of a multi-line
  value (a PEM key quoted in part is still a leak).
* **Sensitive names.** A value stored under a key whose name says it is a credential is
  replaced by ``[redacted]`` whatever it is, see :func:`is_sensitive_key` for the rule.

A few patterns are scrubbed from text even without registration, as a safety net: the
password in a URL's userinfo (``postgresql://user:pw@host``), ``password=...``-style
pairs (libpq conninfo, query strings) and ``Authorization: ...`` header values.

Everything here is plain Python with no logging dependency, so the status page and the
reports use the same functions as the log pipeline (:func:`redact_text`,
:func:`redact_value`), and :func:`redact_event` is a structlog processor that is unit
tested with plain dicts.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import traceback
import urllib.parse
from collections.abc import Iterable, MutableMapping
from typing import Any

REDACTED = "[redacted]"
MIN_SECRET_LENGTH = 4
# A line of a multi-line secret is registered on its own only when it is this long, so
# that short lines ("", "}", a PEM armour line) do not become "secrets" themselves.
_MIN_SECRET_LINE_LENGTH = 16

_lock = threading.Lock()
_secrets: set[str] = set()
# Rebuilt under the lock on every registration and swapped in one assignment, so readers
# never take the lock.
_pattern: re.Pattern[str] | None = None

# --- registered values ------------------------------------------------------------------


def _spellings(value: str) -> set[str]:
    """The value and the other spellings it commonly takes on the way into a log line."""
    spellings = {value}
    spellings.add(urllib.parse.quote(value, safe=""))
    spellings.add(urllib.parse.quote_plus(value, safe=""))
    spellings.add(json.dumps(value)[1:-1])  # JSON escaping: \n, \", \\, \uXXXX
    spellings.add(repr(value)[1:-1])  # Python repr escaping, as in tracebacks and reprs
    if "\n" in value:
        for line in value.splitlines():
            line = line.strip()
            if len(line) >= _MIN_SECRET_LINE_LENGTH and not line.startswith("-----"):
                spellings.add(line)
    return {s for s in spellings if len(s) >= MIN_SECRET_LENGTH}


def register_secret(value: str | None) -> None:
    """Make ``value`` (and its encoded spellings) disappear from everything redacted from
    now on, in this process. ``None``, blank values and values shorter than
    :data:`MIN_SECRET_LENGTH` are ignored. Registering the same value again is harmless."""
    global _pattern
    if value is None:
        return
    if not isinstance(value, str):
        value = str(value)
    if len(value.strip()) < MIN_SECRET_LENGTH or value in REDACTED:
        return
    with _lock:
        before = len(_secrets)
        _secrets.update(_spellings(value))
        if len(_secrets) != before:
            # Longest first, so that a secret containing another one is replaced whole.
            ordered = sorted(_secrets, key=len, reverse=True)
            _pattern = re.compile("|".join(re.escape(s) for s in ordered))


def register_secrets(values: Iterable[str | None]) -> None:
    """:func:`register_secret` for each of ``values``."""
    for value in values:
        register_secret(value)


def forget_secrets() -> None:
    """Forget every registered value. Meant for tests and for a process that starts an
    unrelated run; production code has no reason to forget a secret."""
    global _pattern
    with _lock:
        _secrets.clear()
        _pattern = None


# --- patterns scrubbed without registration ---------------------------------------------

_URL_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/?#@\s]*:)(?P<pw>[^@/?#\s]+)(?P<at>@)")
_KEYWORD_VALUE = re.compile(
    r"(?P<head>\b[\w-]*?(?:password|passwd|passphrase|secret|token|api[_-]?key|apikey|private[_-]?key)"
    r"\s*=\s*)"
    r"(?!\[redacted\])(?P<value>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s'\"&,;)\]}]+)",
    re.IGNORECASE,
)
_AUTHORIZATION = re.compile(
    r"(?P<head>\b(?:proxy-)?authorization['\"]?\s*[:=]\s*['\"]?)(?P<value>(?:(?:bearer|basic|token|digest)\s+)?[^\s'\",;]+)",
    re.IGNORECASE,
)


def redact_text(text: str) -> str:
    """``text`` with every registered secret and every password-looking fragment
    (URL userinfo, ``password=...``, ``Authorization: ...``) replaced by ``[redacted]``.
    Text without secrets comes back unchanged (the same object)."""
    if not text:
        return text
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    if "@" in text:
        text = _URL_USERINFO.sub(lambda m: m["head"] + REDACTED + m["at"], text)
    if "=" in text:
        text = _KEYWORD_VALUE.sub(lambda m: m["head"] + REDACTED, text)
    if ":" in text or "=" in text:
        text = _AUTHORIZATION.sub(lambda m: m["head"] + REDACTED, text)
    return text


def _redact_bytes(data: bytes) -> bytes:
    for secret in sorted(_secrets, key=len, reverse=True):
        data = data.replace(secret.encode("utf-8", "surrogateescape"), REDACTED.encode())
    return data


# --- sensitive key names ----------------------------------------------------------------

# A key holding any of these words holds a credential.
_SENSITIVE_WORDS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "passphrase",
        "pgpassword",
        "secret",
        "secrets",
        "token",
        "tokens",
        "apikey",
        "authorization",
        "credential",
        "credentials",
        "cookie",
        "cookies",
        "privatekey",
    }
)
# A key ending in one of these words *describes* a credential without holding it
# (``password_env``, ``secret_name``, ``key_path``, ``token_expires``): keeping those
# visible is what makes a log useful when a credential is wrong.
_METADATA_WORDS = frozenset(
    {
        "path",
        "file",
        "filename",
        "id",
        "name",
        "ref",
        "reference",
        "env",
        "type",
        "fingerprint",
        "length",
        "len",
        "count",
        "expires",
        "expiry",
        "source",
        "set",
        "present",
        "configured",
        "algorithm",
        "bits",
        "url",
    }
)
# ``key`` alone or ``*_key`` holds a credential (``ssh_key``, ``api_key``, ``X-API-Key``),
# except after these words, where it names something public or structural.
_PUBLIC_KEY_PREFIXES = frozenset(
    {
        "host",
        "public",
        "pub",
        "cache",
        "primary",
        "foreign",
        "sort",
        "partition",
        "idempotency",
        "lookup",
        "group",
        "dict",
        "map",
        "storage",
        "object",
        "step",
        "result",
        "unique",
        "run",
        "attempt",
        "pause",
    }
)
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def _words(key: str) -> list[str]:
    spaced = _CAMEL_BOUNDARY.sub("_", key).lower()
    return [w for w in _NON_ALNUM.split(spaced) if w]


def is_sensitive_key(key: object) -> bool:
    """Whether a value stored under ``key`` must be hidden whatever it is.

    The name is split into words (``_``, ``-``, ``.``, spaces and camelCase). It is
    sensitive when its last word does not merely describe a credential (path, file, id,
    name, ref, env, type, fingerprint, ...) and either one of its words names a credential
    (password, passwd, secret, token, apikey, authorization, credential, cookie,
    pgpassword, cookie) or it is ``key``/``*_key`` not preceded by a public or
    structural word (host, public, cache, primary, sort, step, ...). So ``password``,
    ``PGPASSWORD``, ``api_key``, ``X-API-Key``, ``ssh_key``, ``private_key`` and
    ``Authorization`` are sensitive; ``key_path``, ``host_key``, ``password_env``,
    ``secret_name`` and ``cache_key`` are not.
    """
    if not isinstance(key, str):
        return False
    words = _words(key)
    if not words or words[-1] in _METADATA_WORDS:
        return False
    if any(w in _SENSITIVE_WORDS for w in words):
        return True
    if words[-1] == "key":
        return len(words) == 1 or words[-2] not in _PUBLIC_KEY_PREFIXES
    joined = "".join(words)
    return joined in _SENSITIVE_WORDS or joined.endswith(("apikey", "privatekey", "password"))


# --- values and event dicts -------------------------------------------------------------

_PLAIN_TYPES = (int, float, bool, type(None))


def redact_value(value: Any) -> Any:
    """A copy of ``value`` with secrets removed: strings are passed through
    :func:`redact_text`; dicts, lists, tuples and sets are walked (a dict entry under a
    sensitive key becomes ``[redacted]`` unless it is ``None`` or a bool); bytes lose the
    registered values; any other object whose ``str`` or ``repr`` contains a secret is
    replaced by its redacted text. Values without secrets are returned as they are."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, _PLAIN_TYPES):
        return value
    if isinstance(value, dict):
        return {redact_value(k) if isinstance(k, str) else k: _redact_entry(k, v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [redact_value(v) for v in value]
        if isinstance(value, list):
            return items
        if isinstance(value, tuple) and hasattr(value, "_fields"):  # named tuple
            return type(value)(*items)
        return type(value)(items)
    if isinstance(value, (bytes, bytearray)):
        return _redact_bytes(bytes(value)) if _secrets else value
    if isinstance(value, BaseException):
        return redact_text(_exception_line(value))
    # Unknown objects end up as str() in JSON and repr() on the console: check both.
    for render in (repr, str):
        try:
            text = render(value)
        except Exception:  # a broken __repr__ must not break logging
            continue
        redacted = redact_text(text)
        if redacted != text:
            return redacted
    return value


def _redact_entry(key: Any, value: Any) -> Any:
    if is_sensitive_key(key) and value is not None and not isinstance(value, bool) and value != "":
        return REDACTED
    return redact_value(value)


def _exception_line(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def exception_text(exc_info: Any) -> str | None:
    """The traceback text for an ``exc_info`` as structlog and logging accept it (``True``
    for the exception being handled, an exception, or a ``(type, value, tb)`` tuple), or
    ``None`` when there is no exception. Not redacted: pass it to :func:`redact_text`."""
    if exc_info is True:
        exc_info = sys.exc_info()
    if isinstance(exc_info, BaseException):
        exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
    if not isinstance(exc_info, tuple) or len(exc_info) != 3 or exc_info[0] is None:
        return None
    return "".join(traceback.format_exception(*exc_info)).rstrip("\n")


# Keys that carry the logging machinery's own objects (structlog's ProcessorFormatter puts
# the LogRecord under "_record"): never walked, never rendered.
_META_KEYS = frozenset({"_record", "_from_structlog", "_logger", "_name"})


def redact_event(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: remove secrets from ``event_dict`` before any renderer sees it.

    ``exc_info`` is first rendered to traceback text under ``exception`` (then redacted like
    every other string), so no renderer gets the live exception object and its frames.
    Sensitive keys are hidden at every depth. The dict is modified in place and returned.
    """
    exc_info = event_dict.pop("exc_info", None)
    if exc_info:
        text = exception_text(exc_info)
        if text is not None and "exception" not in event_dict:
            event_dict["exception"] = text
    for key in list(event_dict):
        if key in _META_KEYS:
            continue
        value = event_dict[key]
        new_key = redact_text(key) if isinstance(key, str) else key
        new_value = _redact_entry(key, value) if key not in ("event", "exception", "stack") else redact_value(value)
        if new_key != key:
            del event_dict[key]
        event_dict[new_key] = new_value
    return event_dict
