"""The estate's size is a linear function of the scale, and the SQL scripts read exactly
the row counts the Python side sets."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cutover.errors import SandboxError
from cutover.sandbox import estate
from cutover.sandbox.info import ESTATE

DATABASES = [db for dbs in ESTATE.values() for db in dbs]


@pytest.mark.parametrize("database", DATABASES)
def test_row_counts_are_linear_in_the_scale(database: str):
    base = estate.row_counts(database, 1)
    assert all(rows > 0 for rows in base.values())
    assert set(estate.row_counts(database, 0).values()) == {0}
    for scale in (2, 7, 20):
        assert estate.row_counts(database, scale) == {t: rows * scale for t, rows in base.items()}


def test_a_negative_scale_is_refused():
    with pytest.raises(SandboxError, match="scale"):
        estate.row_counts("bzk", -1)


@pytest.mark.parametrize("database", DATABASES)
def test_each_script_reads_exactly_the_row_counts_that_are_set(database: str):
    script = (Path(estate.__file__).parent / f"{database}.sql").read_text()
    assert set(re.findall(r"current_setting\('estate\.(\w+)'\)", script)) == set(estate.ROWS_PER_SCALE[database])
    assert re.search(rf"create table {estate.MAIN_TABLE[database]} \(", script)


@pytest.mark.parametrize("database", DATABASES)
def test_each_script_grants_to_its_application_role_and_never_to_another(database: str):
    script = (Path(estate.__file__).parent / f"{database}.sql").read_text()
    grantees = set(re.findall(r"\bto (\w+_app)\b", script))
    assert grantees == {estate.app_role(estate.application_of(database))}
