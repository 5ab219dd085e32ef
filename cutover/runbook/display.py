"""A runbook's own text, shown safely in a one-line problem.

Problems quote what the user wrote (a key, a name, a value). Printed raw, a quoted newline
would split one problem over two lines, an escape sequence would drive the terminal, and a
text-direction control would make the line read other than it is; a 4 MiB key would bury
everything else. So quoted text is escaped and shortened here, once, for every problem.
"""

from __future__ import annotations

import json
import re

UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")
SIMPLE_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
MAX_LINE = 500
MAX_KEY = 60


def one_line(text: str, limit: int = MAX_LINE) -> str:
    """``text`` with every unprintable character escaped (``\\n``, ``\\x1b``, ``\\u202e``),
    at most ``limit`` characters."""
    escaped = UNPRINTABLE.sub(_escape, text)
    return escaped if len(escaped) <= limit else escaped[: limit - 1] + "…"


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(char) or (
        f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"
    )


def format_path(path: tuple[str | int, ...]) -> str:
    """``applications[2].databases[0].name``; a key that is not a plain word is quoted:
    ``sites["old site"]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif SIMPLE_KEY.match(part) and len(part) <= MAX_KEY:
            out += f".{part}" if out else part
        else:
            shown = part if len(part) <= MAX_KEY else part[: MAX_KEY - 1] + "…"
            out += f"[{json.dumps(shown, ensure_ascii=False)}]"
    return one_line(out)
