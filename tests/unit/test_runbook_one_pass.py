"""Every problem in one pass: the checks of meaning run on whatever parts of a runbook are
well-formed, and stay silent about what they cannot see (no consequence of a problem
already reported is reported again)."""

from __future__ import annotations

import pytest

from cutover.errors import RunbookError
from cutover.runbook import parse_runbook
from tests.unit.runbook_texts import MINIMAL


def problems_of(text: str) -> list[str]:
    with pytest.raises(RunbookError) as caught:
        parse_runbook(text, "rb.yaml", {})
    return [str(p) for p in caught.value.problems]


def edited(*edits: tuple[str, str]) -> str:
    text = MINIMAL
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def test_key_and_type_errors_and_meaning_errors_come_together():
    text = (
        edited(
            ("    depends_on: [gis]", "    depend_on: [gis]"),  # a key error in one application
            ("port: 5433", "port: five"),  # a type error in a site
            ("  end: 2027-07-19T06:00:00+02:00", "  end: 2027-07-15T06:00:00+02:00"),  # meaning: the window
            ("database: portal, query", "database: portl, query"),  # meaning: inside the broken application
        )
        + "gates: [{name: go, applications: [gis, portl]}]\n"
    )  # meaning: a gate
    assert problems_of(text) == [
        "rb.yaml:4:8: window.end: the window ends before it starts",
        "rb.yaml:9:39: sites.new.postgres.port: should be a valid integer, unable to parse string as an integer",
        "rb.yaml:23:5: applications[1].depend_on: unknown key 'depend_on' (did you mean 'depends_on'?)",
        "rb.yaml:27:36: applications[1].smoke[0].sql.database: unknown database 'portl' on site 'new' (did you mean 'portal'?)",
        "rb.yaml:28:40: gates[0].applications[1]: unknown application 'portl' (did you mean 'portal'?)",
    ]


def test_a_broken_database_entry_still_counts_as_a_database_of_its_sites():
    # jobs is out of bounds, but the smoke query's database 'portal' exists: no second problem
    text = edited(
        ("{name: portal, from: old, to: new, method: stream}", "{name: portal, from: old, to: new, method: stream, jobs: 99}")
    )
    assert problems_of(text) == ["rb.yaml:25:66: applications[1].databases[0].jobs: must be at most 32"]


def test_a_broken_database_entry_is_still_checked_for_its_sites():
    text = edited(("{name: portal, from: old, to: new, method: stream}", "{name: portal, from: odl, to: new, method: streem}"))
    assert problems_of(text) == [
        "rb.yaml:25:30: applications[1].databases[0].from: unknown site 'odl' (did you mean 'old'?)",
        "rb.yaml:25:52: applications[1].databases[0].method: should be 'stream', 'copy', 'file' or 'auto' (did you mean 'stream'?)",
    ]


def test_a_wrong_dns_section_is_not_reported_as_a_missing_one():
    text = edited(("  zone: example.test.", "  zone: example.test"))
    assert problems_of(text) == ["rb.yaml:14:9: dns.zone: zone must end with a dot: 'example.test.'"]


def test_a_wrong_site_is_not_reported_as_an_unknown_one():
    text = edited(("host: 127.0.0.1, port: 5433", "host: 'a b', port: 5433"))
    found = problems_of(text)
    assert len(found) == 1 and found[0].startswith("rb.yaml:9:22: sites.new.postgres.host: must be a host name"), found


def test_an_unreadable_application_name_hides_no_other_problem_and_invents_none():
    text = edited(
        ("  - name: gis\n", "  - name: GIS\n"), ("{name: gis, from: old, to: new}", "{name: gis, from: old, to: nowhere}")
    )
    assert problems_of(text) == [
        "rb.yaml:17:11: applications[0].name: must be lowercase letters, digits, '-' or '_', starting with a letter",
        "rb.yaml:19:36: applications[0].databases[0].to: unknown site 'nowhere'",
    ]


def test_a_document_with_nothing_right_reports_without_crashing():
    found = problems_of("cutover: 1\nwindow: 2\nsites: 3\napplications: 4\ngates: 5\ndns: 6\ndefaults: 7\n")
    assert len(found) == 7 and all(p.startswith("rb.yaml:") for p in found)
