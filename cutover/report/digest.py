"""The report's digest: a sha256 of its JSON, so that a copy can be checked later.

The digest covers the whole report except the digest itself, as canonical JSON (keys
sorted, no spaces, UTF-8). To check a copy of the JSON format: take its object, remove the
``digest`` key, serialise it that way and hash it; :func:`check` does exactly that. The
HTML and Markdown formats show the same value: it is the digest of the JSON they were
rendered from.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from cutover.report.model import Digest, Report

HOW = "sha256 of this report's JSON without its digest field, keys sorted, no spaces (separators ',' and ':'), UTF-8"


def canonical(data: dict[str, Any]) -> bytes:
    return json.dumps(
        {k: v for k, v in data.items() if k != "digest"}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()


def sign(report: Report) -> Report:
    """The report with its digest filled in."""
    value = hashlib.sha256(canonical(dataclasses.replace(report, digest=None).to_dict())).hexdigest()
    return dataclasses.replace(report, digest=Digest(algorithm="sha256", of=HOW, value=value))


def check(data: dict[str, Any]) -> bool:
    """Whether a report's JSON object still matches the digest it carries."""
    digest = data.get("digest")
    if not isinstance(digest, dict) or not isinstance(digest.get("value"), str):
        return False
    return bool(hashlib.sha256(canonical(data)).hexdigest() == digest["value"])
