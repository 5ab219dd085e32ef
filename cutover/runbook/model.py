"""The runbook: what a migration team writes, as pydantic models.

Field names are the YAML keys. Every model forbids unknown keys, so a misspelled key is an
error (with a did-you-mean) rather than a silently ignored setting, and every number has an
upper bound, so a typo such as ``timeout_s: 1e41`` is an error rather than a step that
never times out. Names are checked in ``cutover.runbook.names``, hosts, DNS names and URLs
in ``cutover.runbook.addresses``. Cross-references (applications, sites, databases), cycles
and smoke SQL are checked in ``cutover.runbook.checks``; these models only check what one
value can tell on its own.
"""

from __future__ import annotations

import ipaddress
import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from cutover.runbook.addresses import (
    Directory,
    Host,
    HostPort,
    RecordName,
    RelativePath,
    Url,
    check_dns_name,
    is_ip_address,
)
from cutover.runbook.names import ApplicationName, DatabaseName, GateName, LoginName, Name, RoleName
from cutover.runbook.references import SecretRef

# Upper bounds. A cutover weekend is about 60 hours: nothing the tool waits for may take
# longer than a week, and no single check longer than an hour.
WEEK_S = 7 * 24 * 3600
HOUR_S = 3600
MAX_BYTES = 1 << 50  # 1 PiB: far beyond any database moved with pg_dump in a weekend
MAX_RETRY_DELAY_S = HOUR_S
MAX_CONCURRENCY = 64
HTTP_STATUS = {"ge": 100, "le": 599}


PersonName = Annotated[str, Field(min_length=1, max_length=100)]
"""Who decides a gate: a person's name as they give it in the form, or a team's name."""


class Model(BaseModel):
    # allow_inf_nan: a .inf or .nan would slip past every bound
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)


# --- defaults -------------------------------------------------------------------------


class Concurrency(Model):
    """How many heavy operations may run at once against one host."""

    dumps_per_host: int = Field(2, ge=1, le=MAX_CONCURRENCY, description="pg_dump processes per source host")
    restores_per_host: int = Field(2, ge=1, le=MAX_CONCURRENCY, description="pg_restore processes per target host")


class Defaults(Model):
    retries: int = Field(2, ge=0, le=20, description="retries of a failed step")
    retry_delay_s: float = Field(10, ge=0, le=MAX_RETRY_DELAY_S, description="seconds before the first retry; doubles each time")
    timeout_s: float = Field(3600, gt=0, le=WEEK_S, description="a step running longer than this fails")
    check_timeout_s: float = Field(30, gt=0, le=HOUR_S, description="timeout of one smoke or post-switch check")
    concurrency: Concurrency = Concurrency()
    stream_below_bytes: int = Field(
        64 << 20,
        ge=0,
        le=MAX_BYTES,
        description="method auto streams databases smaller than this, and copies the others table by table",
    )


# --- sites ----------------------------------------------------------------------------


class PostgresSite(Model):
    host: Host = Field(description="server address (host name or IP address), as the orchestrator and the target host reach it")
    port: int = Field(5432, ge=1, le=65535)
    user: LoginName = Field(description="a role that may dump (source) or create databases and roles (target)")
    password: SecretRef | None = Field(None, description="reference to the password")
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = Field(
        "verify-full", description="libpq sslmode; the default verifies the server certificate"
    )
    bin_dir: Directory | None = Field(None, description="where pg_dump/pg_restore for this site live")
    ca_bundle: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="a PEM file of the CA(s) the server's certificate must come from (verify-ca, verify-full), as the "
        "orchestrator sees it; sent along to pg_restore on the target host (default: libpq's ~/.postgresql/root.crt)",
    )
    smoke_user: LoginName | None = Field(
        None,
        description="a role that may only read, for smoke SQL on this site (default: user); "
        "smoke SQL runs in a read-only transaction either way",
    )
    smoke_password: SecretRef | None = Field(None, description="reference to smoke_user's password")

    @model_validator(mode="after")
    def _smoke_login(self) -> PostgresSite:
        if self.smoke_password is not None and self.smoke_user is None:
            raise ValueError("smoke_password needs smoke_user")
        return self


class SshSite(Model):
    host: Host = Field(description="the host that runs pg_restore and receives uploads")
    port: int = Field(22, ge=1, le=65535)
    user: LoginName = Field(description="login user; key authentication only")
    key: SecretRef = Field(description="the client's private key (its text), as a reference")
    host_key: str = Field(description="the server's public host key, pinned: 'ssh-ed25519 AAAA...'")
    work_dir: Directory = Field("/var/tmp/cutover", description="where uploaded dumps are kept")
    pg_bin_dir: Directory | None = Field(None, description="PostgreSQL client tools on that host")
    files_root: Directory | None = Field(
        None,
        description="on that host: the directory every files entry to this site lands under (its target_path is relative to it)",
    )

    @field_validator("host_key")
    @classmethod
    def _host_key_shape(cls, value: str) -> str:
        parts = value.split()
        if "\n" in value or len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-")):
            raise ValueError("host_key must be a public key line such as 'ssh-ed25519 AAAA...'")
        return value


class HttpSite(Model):
    address: Host = Field(description="the address (host name or IP address) the site's applications are served at")


class Site(Model):
    """One place databases and applications live: the old site or the cloud."""

    postgres: PostgresSite | None = Field(None, description="the PostgreSQL server of this site")
    ssh: SshSite | None = Field(None, description="a host at this site for restores and uploads")
    http: HttpSite | None = Field(None, description="where this site's applications are served")
    files_root: Directory | None = Field(
        None,
        description="where this site's files are, as the orchestrator sees them (a mount of its file share): "
        "the source_path of every files entry from this site is relative to it",
    )


# --- DNS ------------------------------------------------------------------------------


class Dns(Model):
    provider: Literal["powerdns"] = Field("powerdns", description="the DNS provider's API")
    api: Url = Field(description="the provider's API base URL")
    api_key: SecretRef
    zone: str = Field(description="the zone, fully qualified with a trailing dot")
    server_id: str = Field(
        "localhost", pattern=r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,62}$", description="PowerDNS server id in the API path"
    )
    nameserver: HostPort = Field(description="host:port of an authoritative server, asked to confirm every switch")

    @field_validator("zone")
    @classmethod
    def _zone_fqdn(cls, value: str) -> str:
        if not value.endswith("."):
            raise ValueError(f"zone must end with a dot: '{value}.'")
        return check_dns_name(value)


# --- actions and checks ---------------------------------------------------------------

SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")


class HttpStep(Model):
    """An HTTP request with expectations; a failed expectation fails the step."""

    url: Url = Field(description="http:// or https:// URL; TLS certificates are verified")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "GET"
    headers: dict[str, str] = Field({}, description="Authorization, Cookie and X-API-Key values must be secret references")
    json_body: Any = Field(None, alias="json", description="a JSON request body")
    expect_status: Annotated[int, Field(**HTTP_STATUS)] | list[Annotated[int, Field(**HTTP_STATUS)]] = Field(
        200, description="the status (or statuses, each 100..599) that count as success"
    )
    expect_text: str | None = Field(None, description="text the response body must contain")
    max_latency_ms: float | None = Field(None, gt=0, le=HOUR_S * 1000, description="slower than this fails the check")
    timeout_s: float | None = Field(None, gt=0, le=HOUR_S, description="default: defaults.check_timeout_s")

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        from cutover.runbook.references import parse_reference

        for header, text in value.items():
            if not HEADER_NAME.match(header):
                raise ValueError("a header name is letters, digits and !#$%&'*+.^_`|~-")
            if "\n" in text or "\r" in text:
                raise ValueError(f"header {header}: a header value is one line")
            if header.lower() in SENSITIVE_HEADERS:
                try:
                    parse_reference(text)
                except ValueError as exc:
                    raise ValueError(f"header {header}: {exc}") from None
        return value

    @field_validator("json_body")
    @classmethod
    def _json(cls, value: Any) -> Any:
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise ValueError(
                "json must be JSON: mappings, lists, strings, numbers, true, false, null (no dates, no .inf)"
            ) from None
        return value


class SqlStep(Model):
    """A query on a site's database (one that the runbook moves from or to that site)."""

    site: Name = Field(description="the site whose postgres endpoint runs the query")
    database: DatabaseName = Field(description="a database moved from or to that site")
    query: str = Field(
        description="SQL; only the first column of the first row is compared; in smoke, one read-only query",
        max_length=65536,
    )
    expect: Any = Field(None, description="the first column of the first row must equal this")


class SshStep(Model):
    """A shell command on a site's SSH host."""

    site: Name = Field(description="the site whose ssh endpoint runs the command")
    command: str = Field(description="run by the login shell, in its own process group")
    expect_exit: int = Field(0, ge=0, le=255, description="the exit status that counts as success")
    timeout_s: float | None = Field(None, gt=0, le=WEEK_S, description="default: defaults.check_timeout_s")


class Action(Model):
    """One action or check: exactly one of ``http``, ``sql``, ``ssh``."""

    http: HttpStep | None = None
    sql: SqlStep | None = None
    ssh: SshStep | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Action:
        given = [k for k in ("http", "sql", "ssh") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("an action needs exactly one of http, sql, ssh" + (f" (got {', '.join(given)})" if given else ""))
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("http", "sql", "ssh") if getattr(self, k) is not None)


# --- applications ---------------------------------------------------------------------


class RolePassword(Model):
    password: SecretRef


class DatabaseMove(Model):
    """One PostgreSQL database moved with pg_dump/pg_restore and verified by fingerprint."""

    name: DatabaseName = Field(description="the database on the source site")
    from_: Name = Field(alias="from", description="source site")
    to: Name = Field(description="target site")
    target_name: DatabaseName | None = Field(None, description="the database name on the target (default: name)")
    method: Literal["stream", "copy", "file", "auto"] = Field(
        "auto",
        description="stream: pg_dump piped over SSH into pg_restore on the target host; copy: COPY table by table, jobs at a time, through an SSH "
        "tunnel to the target cluster (resumable per table); file: dump files uploaded, then restored (resumable "
        "per file); auto: stream below defaults.stream_below_bytes, else copy",
    )
    jobs: int = Field(
        2,
        ge=1,
        le=32,
        description="tables (copy method) or pg_dump/pg_restore jobs (file method) at a time, per database; also the "
        "connections its fingerprint reads tables over, on the source at the freeze and on the target at verify",
    )
    roles: dict[RoleName, RolePassword] = Field({}, description="passwords for login roles created on the target")
    on_rollback: Literal["keep", "rename", "drop"] = Field(
        "rename", description="what rollback does with the imported target database"
    )
    keep_dump: bool = Field(
        False,
        description="keep the dump files (file method) after a verified import; by default they are removed "
        "on both hosts once verify passed. Kept dumps are listed in the report",
    )
    size_bytes: int | None = Field(None, ge=0, le=MAX_BYTES, description="expected size, for planning")
    shared_with: list[Name] = Field(
        [],
        max_length=100,
        description="other applications that use this database too: it moves once, with this application, and they all move together",
    )

    @property
    def target(self) -> str:
        return self.target_name or self.name


class FileMove(Model):
    """Files uploaded to the target host over SFTP, resumable, checked by sha256. Both paths
    are relative to their site's declared root and stay inside it: no ``..``, no absolute
    path, and no symbolic link that leads out (checked on both ends when the files move)."""

    name: Name = Field(description="names the step: APP/files/NAME")
    from_: Name = Field(alias="from", description="source site (needs files_root)")
    to: Name = Field(description="target site (needs ssh with files_root)")
    source_path: RelativePath = Field(description="file or directory under the source site's files_root")
    target_path: RelativePath = Field(description="path under the target site's ssh.files_root")


class DnsRecord(Model):
    """A record switched to the new site; its old value is recorded for rollback."""

    name: RecordName = Field(description="fully qualified name with a trailing dot, inside the zone")
    type: Literal["A", "AAAA", "CNAME"] = "A"
    to: str = Field(description="the new value: an IP address (A, AAAA) or a DNS name (CNAME)", max_length=254)
    ttl: int = Field(300, ge=1, le=86400, description="TTL of the switched record, seconds")
    check: HttpStep | None = Field(
        None, description="after the switch: a request through the name, e.g. {url: http://NAME:8080/health}"
    )

    @model_validator(mode="after")
    def _value_matches_type(self) -> DnsRecord:
        if self.type in ("A", "AAAA"):
            if not is_ip_address(self.to):
                raise ValueError(f"to: '{self.to}' is not an IP address, as a {self.type} record needs")
            address = ipaddress.ip_address(self.to)
            if (address.version == 4) != (self.type == "A"):
                raise ValueError(f"to: {self.to} is not an IPv{4 if self.type == 'A' else 6} address")
        elif not self.to.endswith("."):
            raise ValueError("to: a CNAME target must be fully qualified, ending with a dot")
        else:
            try:
                check_dns_name(self.to)
            except ValueError as exc:
                raise ValueError(f"to: {exc}") from None
        return self


class Application(Model):
    """An application and everything that moves with it."""

    name: ApplicationName = Field(description="unique; the first part of its step ids")
    description: str = ""
    depends_on: list[Name] = Field([], description="applications it reads: they are frozen after it and switched before it")
    freeze: list[Action] = Field([], description="put the source application in maintenance")
    unfreeze: list[Action] = Field([], description="undo freeze at the source (used by rollback)")
    databases: list[DatabaseMove] = Field([], description="databases that move with it")
    files: list[FileMove] = Field([], description="files that move with it")
    start: list[Action] = Field([], description="bring the target application up (out of maintenance) once its data is verified")
    stop: list[Action] = Field([], description="undo start at the target (used by rollback)")
    smoke: list[Action] = Field([], description="checks against the target before the switch")
    dns: list[DnsRecord] = Field([], description="records switched to the new site")
    finalize: list[Action] = Field([], description="after the switch and its checks: close the move")

    def database(self, name: str) -> DatabaseMove:
        """The database move called ``name``; KeyError naming it when there is none."""
        for db in self.databases:
            if db.name == name:
                return db
        raise KeyError(f"no database {name!r} in application {self.name}")

    def files_entry(self, name: str) -> FileMove:
        """The files entry called ``name``; KeyError naming it when there is none."""
        for moved in self.files:
            if moved.name == name:
                return moved
        raise KeyError(f"no files entry {name!r} in application {self.name}")


class Gate(Model):
    """A go/no-go decision: the run pauses until an operator approves in the Prefect UI."""

    name: GateName
    before: Literal["dns_switch", "finalize"] = Field("dns_switch", description="the phase it holds back")
    applications: list[Name] | Literal["all"] = Field("all", description="the applications it holds back")
    description: str = ""
    approvers: list[PersonName] = Field(
        [],
        max_length=100,
        description="who may decide: people's names, or names of teams (see `teams`); empty: anyone who gives their name",
    )
    timeout_s: float = Field(4 * 3600, gt=0, le=WEEK_S, description="how long to wait for a decision before `on_timeout`")
    on_timeout: Literal["wait", "no_go"] = Field(
        "wait",
        description="no decision within timeout_s: `wait` keeps waiting and emits cutover.gate.overdue "
        "(again every timeout_s); `no_go` decides no-go, which rolls back",
    )
    auto_approve: bool = Field(False, description="approve by itself when every check before it passed (rehearsals, demo)")


class Window(Model):
    """The agreed maintenance window, with timezone."""

    start: datetime = Field(description="e.g. 2027-07-16T18:00:00+02:00")
    end: datetime = Field(description="must be after start")

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("needs a timezone, e.g. 2027-07-16T18:00:00+02:00")
        return value


class Tls(Model):
    """How HTTPS is checked: the API of the DNS provider, http actions and checks."""

    ca_bundle: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="a PEM file of CA certificates, as the orchestrator sees it: HTTPS servers must have a certificate "
        "from one of these (default: the system's trust store)",
    )
    insecure_skip_verify: bool = Field(
        False,
        description="DANGEROUS: do not check HTTPS certificates at all (anyone on the network path can read and change "
        "the traffic, DNS API key included); every request that goes out so is logged as a warning",
    )

    @model_validator(mode="after")
    def _one_way(self) -> Tls:
        if self.ca_bundle is not None and self.insecure_skip_verify:
            raise ValueError("ca_bundle and insecure_skip_verify contradict each other; give one")
        return self


SitePhase = Literal[
    "freeze",
    "export",
    "transfer",
    "import",
    "stream",
    "verify",
    "files",
    "start",
    "smoke",
    "source_check",
    "dns_switch",
    "post_switch",
    "finalize",
]
"""A phase whose steps a site's worker may run (a gate pauses the flow run, so it stays there)."""

# The import goes with the export: it checks the dump it sent against the target host's
# copy and reads the roles from the source, then runs pg_restore on the target host over SSH.
AT_SOURCE: tuple[SitePhase, ...] = ("freeze", "export", "transfer", "import", "stream", "files", "source_check")
AT_TARGET: tuple[SitePhase, ...] = ("verify", "start", "smoke", "dns_switch", "post_switch", "finalize")


class Placement(Model):
    """Which site's worker runs the steps of each phase: the source site of the step's
    database (or files entry; an application's first one for its freeze and actions) or
    its target site. A phase in neither list, and every gate, runs in the flow run's own
    process. Each site needs a step worker (`cutover step-worker --site NAME`)."""

    at_source: list[SitePhase] = Field(
        list(AT_SOURCE),
        description="phases run by the worker of the source site: freeze, export, transfer, import (pg_restore runs on the target host over SSH)...",
    )
    at_target: list[SitePhase] = Field(
        list(AT_TARGET), description="phases run by the worker of the target site: verify, start, smoke, the DNS switch..."
    )

    @model_validator(mode="after")
    def _one_site_per_phase(self) -> Placement:
        both = sorted(set(self.at_source) & set(self.at_target))
        if both:
            raise ValueError(f"a phase runs at one site only: {', '.join(both)} is in at_source and in at_target")
        return self


class Runbook(Model):
    """A whole cutover: where things are, what moves, in what order, and the safety rails."""

    cutover: Name = Field(description="the cutover's name; part of every cache key and event")
    description: str = ""
    window: Window = Field(description="when the cutover may run")
    point_of_no_return: Literal["dns_switch", "finalize"] = Field(
        "dns_switch", description="from this phase on, failures pause for a decision instead of rolling back"
    )
    on_failure: Literal["roll_back_all", "roll_back_affected"] = Field(
        "roll_back_all",
        description="before the point of no return, a failure rolls back every application (roll_back_all), or only the "
        "application that failed, what depends on it and what moves with it (roll_back_affected); the others go on",
    )
    move_together: list[list[Name]] = Field(
        [],
        max_length=1000,
        description="groups of applications that move together: a failure of one rolls back all of them",
    )
    defaults: Defaults = Field(Defaults(), description="retries, timeouts, concurrency")
    sites: dict[Name, Site] = Field(description="the old site and the new one, by name")
    dns: Dns | None = Field(None, description="the DNS provider that switches records")
    tls: Tls = Field(Tls(), description="HTTPS certificate checks: on by default, a CA bundle may be pinned")
    applications: list[Application] = Field(description="everything that moves")
    gates: list[Gate] = Field([], description="go/no-go decisions")
    placement: Placement | None = Field(
        None,
        description="run each step on the worker of the site its data is at (absent: every step runs in the flow run's "
        "process, on the one worker); `placement: {}` takes the defaults. Needs a step worker per site and result "
        "storage every machine reaches (docs/topology.md); measured up to 300 applications (docs/benchmarks.md, "
        "'Past one machine')",
    )
    teams: dict[Name, list[PersonName]] = Field(
        {}, description="named groups of people, for gate approvers: {migration-leads: [Anna de Vries, Joost Bakker]}"
    )

    def application(self, name: str) -> Application:
        """The application called ``name``; KeyError naming it when there is none."""
        for app in self.applications:
            if app.name == name:
                return app
        raise KeyError(f"no application {name!r} in runbook {self.cutover}")

    def gate(self, name: str) -> Gate:
        """The gate called ``name``; KeyError naming it when there is none."""
        for gate in self.gates:
            if gate.name == name:
                return gate
        raise KeyError(f"no gate {name!r} in runbook {self.cutover}")

    def approvers(self, gate: Gate) -> list[str]:
        """The people who may decide ``gate``: its approvers, teams expanded, in order; empty
        when the gate names none (anyone who gives a name may)."""
        people: list[str] = []
        for entry in gate.approvers:
            for person in self.teams.get(entry, [entry]):
                if person not in people:
                    people.append(person)
        return people
