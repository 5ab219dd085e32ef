"""The files of ``config/`` (see config/README.md): read once, as plain data."""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"


@functools.cache
def read(name: str) -> dict[str, Any]:
    """The TOML file ``config/<name>``; an empty table when the file is not there (an
    installed package without the checkout's config/ runs on the code's defaults)."""
    path = CONFIG_DIR / name
    if not path.exists():
        return {}
    with path.open("rb") as handle:
        return tomllib.load(handle)


def prefect_settings(section: str) -> dict[str, str]:
    """The Prefect settings of ``config/prefect-local.toml`` for ``server`` or ``worker``."""
    return {str(k): str(v) for k, v in read("prefect-local.toml").get(section, {}).items()}


def library_log_levels() -> dict[str, str]:
    return {str(k): str(v) for k, v in read("logging.toml").get("libraries", {}).items()}
