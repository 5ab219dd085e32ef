"""The rules every DNS provider's apply follows: zone membership, supported types,
idempotence, and refusing to overwrite an unexpected value."""

from __future__ import annotations

import pytest

from cutover.dns.provider import RecordChange, RecordSet, check, in_zone, needs_write, normalise, problems
from cutover.errors import PermanentStepError, UnsafeChange

ZONE = "werkendam.test."
SUPPORTS = frozenset({"A", "AAAA", "CNAME"})


@pytest.mark.parametrize(
    ("name", "inside"),
    [
        ("werkendam.test.", True),
        ("burgerzaken.werkendam.test.", True),
        ("Burgerzaken.Werkendam.Test", True),
        ("a.b.werkendam.test.", True),
        ("evilwerkendam.test.", False),
        ("werkendam.test.evil.", False),
        ("test.", False),
    ],
)
def test_in_zone_compares_whole_labels(name: str, inside: bool) -> None:
    assert in_zone(name, ZONE) is inside


def test_problems_lists_every_reason_a_change_cannot_be_applied() -> None:
    change = RecordChange("app.other.test.", "MX", 0, ())
    found = problems(change, zone=ZONE, supports=SUPPORTS)
    assert len(found) == 4
    assert any("MX is not supported" in p for p in found)
    assert any("not inside the zone werkendam.test." in p for p in found)
    assert any("no values" in p for p in found)
    assert any("ttl 0" in p for p in found)
    with pytest.raises(PermanentStepError, match="not inside the zone"):
        check(change, zone=ZONE, supports=SUPPORTS)


def test_a_valid_change_has_no_problems() -> None:
    assert problems(RecordChange("app.werkendam.test.", "A", 60, ("127.0.0.3",)), zone=ZONE, supports=SUPPORTS) == []


def test_values_compare_as_canonical_sets() -> None:
    assert normalise("AAAA", ["::0001", "2001:DB8::1"]) == ("2001:db8::1", "::1")
    assert normalise("A", ["127.0.0.3", "127.0.0.2", "127.0.0.3"]) == ("127.0.0.2", "127.0.0.3")
    assert normalise("CNAME", ["App.Werkendam.Test"]) == ("app.werkendam.test.",)


def current(*values: str, ttl: int = 60) -> RecordSet:
    return RecordSet("app.werkendam.test.", "A", ttl, values)


def switch(expect: tuple[str, ...] | None = ("127.0.0.2",), ttl: int = 60) -> RecordChange:
    return RecordChange("app.werkendam.test.", "A", ttl, ("127.0.0.3",), expect_current=expect)


def test_expected_current_value_is_replaced() -> None:
    assert needs_write(current("127.0.0.2"), switch()) is True


def test_already_desired_state_needs_no_write() -> None:
    assert needs_write(current("127.0.0.3"), switch()) is False


def test_same_values_with_another_ttl_is_written() -> None:
    assert needs_write(current("127.0.0.3", ttl=3600), switch()) is True


def test_unexpected_current_value_is_refused() -> None:
    with pytest.raises(UnsafeChange, match=r"holds \['10.9.9.9'\], expected \['127.0.0.2'\]"):
        needs_write(current("10.9.9.9"), switch())


def test_expecting_no_record_refuses_an_existing_one() -> None:
    assert needs_write(None, switch(expect=())) is True
    with pytest.raises(UnsafeChange, match="expected no record"):
        needs_write(current("127.0.0.2"), switch(expect=()))


def test_no_expectation_overwrites_anything() -> None:
    assert needs_write(current("10.9.9.9"), switch(expect=None)) is True
