"""Where things are: hosts, DNS names, URLs and directories, checked for what they are.

A runbook value that names a host reaches libpq, SSH, Prefect concurrency limit names,
log lines and (through the tool's quoting) remote shell commands, so it is refused unless it
is plainly one of:

- a **host**: an IPv4 or IPv6 address, or a host name of labels of ASCII letters, digits,
  ``-`` and ``_`` (some internal hosts have one), each 1-63 characters and not starting or
  ending with ``-``, at most 253 characters, optionally ending with a dot. No Unix socket
  directory: the orchestrator and the target host must both reach a server over TCP.
- a **DNS name** (records, zones, CNAME targets): fully qualified with the trailing dot,
  the same labels, ``*`` allowed as the whole first label of a record (a wildcard);
  internationalised names in their ``xn--`` form.
- a **URL**: ``http`` or ``https``, a host as above (an IPv6 address in brackets), an
  optional port 1-65535, no spaces or control characters, no password.
- a **directory** on a host: an absolute POSIX path of ASCII letters, digits and ``._+@~-``
  between slashes, with no ``..`` part.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from typing import Annotated

from pydantic import AfterValidator

LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")
DIRECTORY = re.compile(r"^(/[A-Za-z0-9._+@~-]+)+/?$|^/$")
URL_FORBIDDEN = re.compile(r"[\s\x00-\x1f\x7f\\]")
MAX_HOST = 253


def is_ip_address(text: str) -> bool:
    """An IPv4 or IPv6 address, without an IPv6 zone (``%eth0``: free text, and local)."""
    if "%" in text:
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def host_problem(text: str) -> str | None:
    """Why ``text`` is not a host name or IP address, or None when it is one."""
    if is_ip_address(text):
        return None
    name = text[:-1] if text.endswith(".") else text
    if not name or len(name) > MAX_HOST:
        return f"must be a host name or an IP address (at most {MAX_HOST} characters)"
    if all(LABEL.match(label) for label in name.split(".")):
        if name.replace(".", "").isdigit():
            return "is not a valid IPv4 address"
        return None
    return "must be a host name (letters, digits, '-', '_' and dots) or an IP address"


def check_host(text: str) -> str:
    problem = host_problem(text)
    if problem:
        raise ValueError(problem)
    return text


def dns_name_problem(text: str, *, wildcard: bool = False) -> str | None:
    """Why ``text`` is not a fully qualified DNS name, or None when it is one."""
    if not text.endswith("."):
        return (
            f"must be fully qualified, ending with a dot: '{text}.'"
            if len(text) <= MAX_HOST
            else "must be fully qualified, ending with a dot"
        )
    name = text[:-1]
    if not name:
        return "the root '.' is not a name this tool switches"
    if len(name) > MAX_HOST:
        return f"a DNS name has at most {MAX_HOST} characters"
    labels = name.split(".")
    if wildcard and labels[0] == "*":
        labels = labels[1:]
        if not labels:
            return "a wildcard needs a domain: '*.example.org.'"
    if not all(LABEL.match(label) for label in labels):
        if not name.isascii():
            return "internationalised names are written in their xn-- form"
        return "DNS labels are 1-63 letters, digits, '-' or '_', not starting or ending with '-'"
    return None


def check_dns_name(text: str) -> str:
    problem = dns_name_problem(text)
    if problem:
        raise ValueError(problem)
    return text.lower()


def check_record_name(text: str) -> str:
    problem = dns_name_problem(text, wildcard=True)
    if problem:
        raise ValueError(problem)
    return text.lower()


def url_problem(text: str) -> str | None:
    """Why ``text`` is not an http(s) URL this tool may request, or None."""
    if URL_FORBIDDEN.search(text):
        return "a URL has no spaces, backslashes or control characters (percent-encode them)"
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError as exc:
        return f"not a valid URL: {exc}"
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "url must start with http:// or https:// and name a host"
    if parts.password is not None:
        return "a password in a URL is an inline secret; put it in a header with a reference"
    host = parts.hostname or ""
    problem = host_problem(host)
    if problem:
        return f"the URL's host {problem}"
    if "[" in parts.netloc and ":" not in host:
        return "only an IPv6 address goes in brackets in a URL"
    if port is not None and not 1 <= port <= 65535:
        return "the URL's port must be 1-65535"
    return None


def check_url(text: str) -> str:
    problem = url_problem(text)
    if problem:
        raise ValueError(problem)
    return text


def check_host_port(text: str) -> str:
    """``host:port``, as the DNS client reads it: the part after the last colon is the port."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not port.isascii():
        raise ValueError("must be host:port, e.g. 127.0.0.1:53")
    if ":" in host or host.startswith("["):
        raise ValueError("an IPv6 nameserver is not supported yet; give an IPv4 address or a host name")
    problem = host_problem(host)
    if problem:
        raise ValueError(f"the host {problem}")
    if not 1 <= int(port) <= 65535:
        raise ValueError("the port must be 1-65535")
    return text


def check_directory(text: str) -> str:
    if not text.startswith("/"):
        raise ValueError("must be an absolute path, starting with '/'")
    if any(part == ".." for part in text.split("/")):
        raise ValueError("must not contain '..'")
    if not DIRECTORY.match(text):
        raise ValueError("must be an absolute path of ASCII letters, digits and '._+@~-' between slashes")
    return text


def check_relative_path(text: str) -> str:
    """A path below a declared root: not absolute, no ``..``, no empty or ``.`` part, no
    control character. Any other character is allowed (quotes, ``;``, ``$(...)``, spaces,
    unicode): the path is never given to a shell unquoted."""
    if not text:
        raise ValueError("must not be empty")
    if text.startswith(("/", "~")):
        raise ValueError("must be relative to the site's files_root: no leading '/' or '~'")
    parts = text.split("/")
    if any(part == ".." for part in parts):
        raise ValueError("must not contain '..': it stays under the site's files_root")
    if any(part in ("", ".") for part in parts):
        raise ValueError("must not contain empty or '.' parts ('//', './', a trailing '/')")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise ValueError("must not contain control characters (a newline, a tab...)")
    if len(text.encode()) > 1024 or any(len(part.encode()) > 255 for part in parts):
        raise ValueError("is too long: at most 1024 bytes, 255 per part")
    return text


Host = Annotated[str, AfterValidator(check_host)]
"""A host name or an IP address."""

DnsName = Annotated[str, AfterValidator(check_dns_name)]
"""A fully qualified DNS name with its trailing dot, lowercased."""

RecordName = Annotated[str, AfterValidator(check_record_name)]
"""A DNS record's name: a DNS name, or a wildcard ``*.zone.``."""

Url = Annotated[str, AfterValidator(check_url)]
"""An http or https URL."""

HostPort = Annotated[str, AfterValidator(check_host_port)]
"""``host:port``."""

Directory = Annotated[str, AfterValidator(check_directory)]
"""An absolute directory path on a host."""

RelativePath = Annotated[str, AfterValidator(check_relative_path)]
"""A path relative to a declared root, that stays under it."""
