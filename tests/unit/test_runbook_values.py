"""Values checked for what they are: names that become step ids, hosts, DNS names, URLs,
directories, and numbers with upper bounds. Each refusal is a located one-line problem."""

from __future__ import annotations

import pytest

from cutover.errors import RunbookError
from cutover.runbook import parse_runbook
from tests.unit.runbook_texts import MINIMAL

PG_NAME_RULE = (
    "must be ASCII letters, digits, '_', '-' or '.', starting with a letter or '_' "
    "(no '/', space, quote or other separator: the name is part of step ids and file names)"
)
HOST_RULE = "must be a host name (letters, digits, '-', '_' and dots) or an IP address"


def problems_of(text: str) -> list[str]:
    with pytest.raises(RunbookError) as caught:
        parse_runbook(text, "rb.yaml", {})
    return [str(p) for p in caught.value.problems]


def edited(old: str, new: str, base: str = MINIMAL) -> str:
    assert old in base, "the test's edit must apply to the base runbook"
    return base.replace(old, new, 1)


REFUSED = [
    pytest.param(
        ("{name: gis, from", "{name: a/b, from"),
        [f"rb.yaml:19:16: applications[0].databases[0].name: {PG_NAME_RULE}"],
        id="database-name-with-slash",
    ),
    pytest.param(
        ("{name: gis, from", "{name: 'gis; drop database x', from"),
        [f"rb.yaml:19:16: applications[0].databases[0].name: {PG_NAME_RULE}"],
        id="database-name-with-semicolon-and-space",
    ),
    pytest.param(
        ("{name: gis, from", "{name: " + "g" * 64 + ", from"),
        ["rb.yaml:19:16: applications[0].databases[0].name: at most 63 characters"],
        id="database-name-longer-than-postgres-keeps",
    ),
    pytest.param(
        ("{name: gis, from: old, to: new}", "{name: gis, target_name: 'gis\\\\x', from: old, to: new}"),
        [f"rb.yaml:19:34: applications[0].databases[0].target_name: {PG_NAME_RULE}"],
        id="target-name-with-backslash",
    ),
    pytest.param(
        ("{name: gis, from: old, to: new}", "{name: gis, from: old, to: new, roles: {pg_monitor: {password: env:X}}}"),
        [
            "rb.yaml:19:49: applications[0].databases[0].roles.pg_monitor: role names starting with 'pg_' are reserved by PostgreSQL"
        ],
        id="role-name-reserved-by-postgres",
    ),
    pytest.param(
        ("{name: gis, from: old, to: new}", "{name: gis, from: old, to: new, roles: {'a\"b': {password: env:X}}}"),
        [f'rb.yaml:19:49: applications[0].databases[0].roles["a\\"b"]: {PG_NAME_RULE}'],
        id="role-name-with-quote",
    ),
    pytest.param(
        ("  - name: gis\n", "  - name: gate\n"),
        # (portal's depends_on [gis] is not reported: with a name unreadable, which names exist is unknown)
        ["rb.yaml:17:11: applications[0].name: 'gate' is reserved: step ids starting with 'gate/' belong to the tool"],
        id="application-named-like-the-gate-steps",
    ),
    pytest.param(
        ("applications:\n", "gates: [{name: go_no_go}]\napplications:\n"),
        [
            "rb.yaml:16:16: gates[0].name: must be lowercase letters, digits or '-', starting with a letter "
            "(a gate name is part of a Prefect pause key)"
        ],
        id="gate-name-with-underscore",
    ),
    pytest.param(
        ("host: 127.0.0.1, port: 5432", "host: 'db1; $(id)', port: 5432"),
        [f"rb.yaml:7:22: sites.old.postgres.host: {HOST_RULE}"],
        id="host-with-shell-command",
    ),
    pytest.param(
        ("host: 127.0.0.1, port: 5432", "host: /var/run/postgresql, port: 5432"),
        [f"rb.yaml:7:22: sites.old.postgres.host: {HOST_RULE}"],
        id="host-as-socket-directory",
    ),
    pytest.param(
        ("host: 127.0.0.1, port: 2222", "host: 300.1.2.3, port: 2222"),
        ["rb.yaml:10:17: sites.new.ssh.host: is not a valid IPv4 address"],
        id="ssh-host-not-an-address",
    ),
    pytest.param(
        ("user: cutover", "user: 'cutover -oProxyCommand=x'"),
        ["rb.yaml:10:46: sites.new.ssh.user: must be ASCII letters, digits, '_', '-', '.' or '@', starting with a letter or '_'"],
        id="ssh-user-with-option",
    ),
    pytest.param(
        ("api: http://127.0.0.1:8081", "api: 'http://127.0.0.1:8081/$(id) x'"),
        ["rb.yaml:12:8: dns.api: a URL has no spaces, backslashes or control characters (percent-encode them)"],
        id="api-url-with-space",
    ),
    pytest.param(
        ("nameserver: 127.0.0.1:5300", "nameserver: 127.0.0.1:70000"),
        ["rb.yaml:15:15: dns.nameserver: the port must be 1-65535"],
        id="nameserver-port-out-of-range",
    ),
    pytest.param(
        ("zone: example.test.", "zone: exa mple.test."),
        ["rb.yaml:14:9: dns.zone: DNS labels are 1-63 letters, digits, '-' or '_', not starting or ending with '-'"],
        id="zone-not-a-dns-name",
    ),
    pytest.param(
        ("{name: gis.example.test., to: 192.0.2.10}", "{name: 'gis..example.test.', to: 192.0.2.10}"),
        [
            "rb.yaml:21:16: applications[0].dns[0].name: DNS labels are 1-63 letters, digits, '-' or '_', not starting or ending with '-'"
        ],
        id="record-name-with-empty-label",
    ),
    pytest.param(
        ("{name: gis.example.test., to: 192.0.2.10}", "{name: gis.example.test., type: CNAME, to: 'x;y.example.'}"),
        [
            "rb.yaml:21:9: applications[0].dns[0]: to: DNS labels are 1-63 letters, digits, '-' or '_', not starting or ending with '-'"
        ],
        id="cname-target-not-a-dns-name",
    ),
    pytest.param(
        ("  - name: gis\n", "  - name: gis\n    smoke: [{http: {url: 'http://user:pw@gis.example.test/'}}]\n"),
        [
            "rb.yaml:18:26: applications[0].smoke[0].http.url: a password in a URL is an inline secret; put it in a header with a reference"
        ],
        id="url-with-password",
    ),
    pytest.param(
        (
            "  - name: gis\n",
            "  - name: gis\n    smoke: [{http: {url: 'http://gis/', headers: {'X-A': \"a\\r\\nSet-Cookie: x\"}}}]\n",
        ),
        ["rb.yaml:18:58: applications[0].smoke[0].http.headers.X-A: control character U+000D is not allowed in a value"],
        id="header-value-with-carriage-return",
    ),
    pytest.param(
        ("  - name: gis\n", "  - name: gis\n    smoke: [{http: {url: 'http://gis/', json: {at: 2027-07-16}}}]\n"),
        [
            "rb.yaml:18:47: applications[0].smoke[0].http.json: json must be JSON: mappings, lists, strings, numbers, true, false, "
            "null (no dates, no .inf)"
        ],
        id="json-body-that-is-not-json",
    ),
    pytest.param(
        ("ssh: {host: 127.0.0.1,", "ssh: {work_dir: /var/tmp/../etc, host: 127.0.0.1,"),
        ["rb.yaml:10:21: sites.new.ssh.work_dir: must not contain '..'"],
        id="work-dir-climbing-out",
    ),
    pytest.param(
        ("sslmode: disable}\n  new:", "sslmode: disable, bin_dir: 'bin; rm -rf /'}\n  new:"),
        ["rb.yaml:7:118: sites.old.postgres.bin_dir: must be an absolute path, starting with '/'"],
        id="bin-dir-not-a-path",
    ),
]


@pytest.mark.parametrize(("edit", "expected"), REFUSED)
def test_value_that_is_not_what_its_key_needs_is_a_located_problem(edit, expected):
    assert problems_of(edited(*edit)) == expected


BOUNDS = [
    pytest.param(
        "defaults: {timeout_s: 1e41}",
        ["rb.yaml:28:23: defaults.timeout_s: must be at most 604800 seconds (7 days)"],
        id="timeout-1e41",
    ),
    pytest.param(
        "defaults: {timeout_s: .inf}", ["rb.yaml:28:23: defaults.timeout_s: should be a finite number"], id="timeout-infinite"
    ),
    pytest.param(
        "defaults: {check_timeout_s: .nan}",
        ["rb.yaml:28:29: defaults.check_timeout_s: should be a finite number"],
        id="check-timeout-nan",
    ),
    pytest.param("defaults: {retries: 1000}", ["rb.yaml:28:21: defaults.retries: must be at most 20"], id="retries"),
    pytest.param(
        "defaults: {retry_delay_s: 86400}",
        ["rb.yaml:28:27: defaults.retry_delay_s: must be at most 3600 seconds (1 hours)"],
        id="retry-delay",
    ),
    pytest.param(
        "defaults: {retries: 20, retry_delay_s: 10}",
        ["rb.yaml:28:21: defaults.retries: 20 retries doubling from 10 s would wait 2913 hours for one step; at most 24 hours"],
        id="retries-waiting-for-months",
    ),
    pytest.param(
        "defaults: {concurrency: {dumps_per_host: 100000}}",
        ["rb.yaml:28:42: defaults.concurrency.dumps_per_host: must be at most 64"],
        id="dumps-per-host",
    ),
    pytest.param(
        "defaults: {stream_below_bytes: 1.0e+18}",
        ["rb.yaml:28:32: defaults.stream_below_bytes: must be at most 1125899906842624 bytes (1 PiB)"],
        id="stream-below-bytes",
    ),
    pytest.param(
        "defaults: {timeout_s: 1" + "0" * 5000 + "}",
        ["rb.yaml:28:23: defaults.timeout_s: cannot read this value: too many digits"],
        id="five-thousand-digits",
    ),
    pytest.param(
        "gates: [{name: go, timeout_s: 1e9}]",
        ["rb.yaml:28:31: gates[0].timeout_s: must be at most 604800 seconds (7 days)"],
        id="gate-timeout",
    ),
]


@pytest.mark.parametrize(("added", "expected"), BOUNDS)
def test_number_past_its_bound_is_a_located_problem(added, expected):
    assert problems_of(MINIMAL + added + "\n") == expected


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "{name: gis, from: old, to: new}",
            "{name: gis, from: old, to: new, jobs: 64}",
            "applications[0].databases[0].jobs: must be at most 32",
        ),
        (
            "{name: gis, from: old, to: new}",
            "{name: gis, from: old, to: new, size_bytes: 1.0e+18}",
            "applications[0].databases[0].size_bytes: must be at most 1125899906842624 bytes (1 PiB)",
        ),
        (
            "{name: gis.example.test., to: 192.0.2.10}",
            "{name: gis.example.test., to: 192.0.2.10, ttl: 1.0e+6}",
            "applications[0].dns[0].ttl: must be at most 86400",
        ),
        (
            'query: "select 1", expect: 1}',
            'query: "select 1", expect: 1}\n      - http: {url: "http://portal/", expect_status: 1000}',
            "applications[1].smoke[1].http.expect_status: must be at most 599",
        ),
    ],
    ids=["jobs", "size", "ttl", "http-status"],
)
def test_bounds_inside_applications(old, new, expected):
    found = problems_of(edited(old, new))
    assert len(found) == 1 and found[0].split(": ", 1)[1] == expected, found


ACCEPTED = [
    ("host: 127.0.0.1, port: 5432", "host: db1.werkendam.intern, port: 5432"),
    ("host: 127.0.0.1, port: 5432", "host: '::1', port: 5432"),
    ("host: 127.0.0.1, port: 5432", "host: db_1.intern., port: 5432"),
    ("{name: gis, from", "{name: Gis_2024.v2-prod, from"),
    ("user: migrate, password: env:OLD", "user: migrate@pgserver, password: env:OLD"),
    ("{name: gis.example.test., to: 192.0.2.10}", "{name: '*.gis.example.test.', to: 192.0.2.10}"),
    ("{name: gis.example.test., to: 192.0.2.10}", "{name: gis.example.test., type: AAAA, to: '2001:db8::10'}"),
    ("api: http://127.0.0.1:8081", "api: 'https://[::1]:8081/api'"),
]


@pytest.mark.parametrize(("old", "new"), ACCEPTED)
def test_real_world_forms_are_accepted(old, new):
    parse_runbook(edited(old, new), "rb.yaml", {})
