"""The PowerDNS provider and the DNS client against the sandbox's real PowerDNS.

Records written here have throwaway names, deleted at the end of each test, so the
application records other tests rely on are never touched."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from structlog.testing import capture_logs

from cutover.dns.powerdns import PowerDnsProvider
from cutover.dns.provider import RecordChange
from cutover.dns.query import QueryAnswer, query
from cutover.errors import PermanentStepError, TransientStepError, UnsafeChange

pytestmark = pytest.mark.integration


@pytest.fixture
def provider(sandbox) -> Iterator[PowerDnsProvider]:
    pdns = sandbox.powerdns
    with PowerDnsProvider(pdns.api_url, pdns.api_key, pdns.zone, pdns.server_id) as provider:
        yield provider


@pytest.fixture
def scratch(sandbox) -> Iterator[str]:
    """A name in the zone that no other test uses; its records are deleted afterwards."""
    pdns = sandbox.powerdns
    name = f"cutover-test-{uuid.uuid4().hex[:10]}.{pdns.zone}"
    yield name
    url = f"{pdns.api_url}/api/v1/servers/{pdns.server_id}/zones/{pdns.zone}"
    rrsets = [{"name": name, "type": rtype, "changetype": "DELETE"} for rtype in ("A", "AAAA", "CNAME")]
    response = httpx.patch(url, headers={"X-API-Key": pdns.api_key}, json={"rrsets": rrsets}, timeout=10)
    assert response.status_code == 204, response.text


def ask(sandbox, name: str, rtype: str = "A") -> QueryAnswer:
    pdns = sandbox.powerdns
    return query(name, rtype, server_host=pdns.dns_host, server_port=pdns.dns_port)


def answered(sandbox, name: str, values: tuple[str, ...], rtype: str = "A", timeout_s: float = 10) -> QueryAnswer:
    """The server's answer once it holds ``values`` (a packet cache may lag a moment)."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = ask(sandbox, name, rtype)
        if answer.values == values or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_api_and_dns_server_agree_on_an_application_record(sandbox, provider: PowerDnsProvider) -> None:
    hostname = next(iter(sandbox.apps.values())).hostname
    record = provider.get(hostname, "A")
    assert record is not None and record.values and record.ttl > 0
    answer = ask(sandbox, hostname)
    assert answer.rcode == "NOERROR"
    assert sorted(answer.values) == sorted(record.values)


def test_missing_record_reads_as_none(provider: PowerDnsProvider, scratch: str) -> None:
    assert provider.get(scratch, "A") is None


def test_switch_is_applied_visible_in_dns_and_idempotent(sandbox, provider: PowerDnsProvider, scratch: str) -> None:
    assert provider.apply(RecordChange(scratch, "A", 60, ("127.0.0.2",), expect_current=())) is True
    assert answered(sandbox, scratch, ("127.0.0.2",)).values == ("127.0.0.2",)

    switch = RecordChange(scratch, "A", 30, ("127.0.0.3",), expect_current=("127.0.0.2",))
    assert provider.apply(switch) is True
    record = provider.get(scratch, "A")
    assert record is not None and (record.values, record.ttl) == (("127.0.0.3",), 30)
    answer = answered(sandbox, scratch, ("127.0.0.3",))
    assert (answer.values, answer.ttl) == (("127.0.0.3",), 30)

    with capture_logs() as logs:
        assert provider.apply(switch) is False  # already switched: success, nothing written
    assert [e["event"] for e in logs] == ["dns_unchanged"]


def test_unexpected_current_value_is_refused_and_left_alone(provider: PowerDnsProvider, scratch: str) -> None:
    provider.apply(RecordChange(scratch, "A", 60, ("10.1.2.3",)))  # somebody's hand edit
    with pytest.raises(UnsafeChange, match=r"holds \['10.1.2.3'\], expected \['127.0.0.2'\]"):
        provider.apply(RecordChange(scratch, "A", 60, ("127.0.0.3",), expect_current=("127.0.0.2",)))
    record = provider.get(scratch, "A")
    assert record is not None and record.values == ("10.1.2.3",)


def test_cname_is_followed_by_the_dns_client(sandbox, provider: PowerDnsProvider, scratch: str) -> None:
    app = next(iter(sandbox.apps.values())).hostname
    provider.apply(RecordChange(scratch, "CNAME", 60, (app,), expect_current=()))
    target = provider.get(app, "A")
    assert target is not None
    answer = answered(sandbox, scratch, tuple(sorted(target.values)))
    assert sorted(answer.values) == sorted(target.values)
    assert answer.aliases == (app,)
    assert ask(sandbox, scratch, "CNAME").values == (app,)


def test_aaaa_records_round_trip(sandbox, provider: PowerDnsProvider, scratch: str) -> None:
    provider.apply(RecordChange(scratch, "AAAA", 60, ("2001:db8::0001",)))
    assert answered(sandbox, scratch, ("2001:db8::1",), "AAAA").values == ("2001:db8::1",)
    # The same address in another spelling is the desired state already.
    assert provider.apply(RecordChange(scratch, "AAAA", 60, ("2001:0db8:0:0::1",))) is False


def test_name_outside_the_zone_is_refused_before_any_request(sandbox) -> None:
    pdns = sandbox.powerdns
    offline = PowerDnsProvider(f"http://127.0.0.1:{free_port()}", pdns.api_key, pdns.zone)
    with pytest.raises(PermanentStepError, match="not inside the zone"):
        offline.apply(RecordChange("www.example.org.", "A", 60, ("127.0.0.3",)))


def test_invalid_record_content_is_permanent_with_powerdns_reason(sandbox, provider: PowerDnsProvider, scratch: str) -> None:
    with pytest.raises(PermanentStepError, match="422") as caught:
        provider.apply(RecordChange(scratch, "A", 60, ("not-an-address",)))
    assert "not-an-address" in str(caught.value)  # PowerDNS's own explanation is passed on
    assert sandbox.powerdns.api_key not in str(caught.value)
    assert provider.get(scratch, "A") is None


def test_api_down_is_transient(sandbox) -> None:
    pdns = sandbox.powerdns
    down = PowerDnsProvider(f"http://127.0.0.1:{free_port()}", pdns.api_key, pdns.zone)
    with pytest.raises(TransientStepError, match="PowerDNS API GET") as caught:
        down.get(f"x.{pdns.zone}", "A")
    assert pdns.api_key not in str(caught.value)


def test_wrong_api_key_is_permanent_and_never_shown(sandbox) -> None:
    pdns = sandbox.powerdns
    wrong_key = f"wrong-{uuid.uuid4().hex}"
    with PowerDnsProvider(pdns.api_url, wrong_key, pdns.zone, pdns.server_id) as wrong:
        with pytest.raises(PermanentStepError, match="API key was refused") as caught:
            wrong.get(f"x.{pdns.zone}", "A")
        assert wrong_key not in str(caught.value) and wrong_key not in repr(wrong)


def test_unknown_zone_is_permanent(sandbox) -> None:
    pdns = sandbox.powerdns
    with (
        PowerDnsProvider(pdns.api_url, pdns.api_key, "no-such-zone.test.", pdns.server_id) as other,
        pytest.raises(PermanentStepError, match="not found"),
    ):
        other.get("www.no-such-zone.test.", "A")


def test_nonexistent_name_is_nxdomain_in_dns(sandbox) -> None:
    answer = ask(sandbox, f"never-created-{uuid.uuid4().hex[:10]}.{sandbox.powerdns.zone}")
    assert (answer.values, answer.rcode) == ((), "NXDOMAIN")
