"""What a running sandbox is: every address, port, credential and pid that ``up`` chose.

``up`` writes it to ``<dir>/sandbox.json``; tests, the demo and ``status``/``down`` read it.
The environment variables the demo runbook's ``env:`` and ``${...}`` references read are
derived from it (``environment()``) and also written to ``<dir>/env`` for a shell to source.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

INFO_FILE = "sandbox.json"
ENV_FILE = "env"

# The demo estate: application -> its databases (one per application domain).
ESTATE: dict[str, tuple[str, ...]] = {
    "burgerzaken": ("bzk",),
    "zaaksysteem": ("zaken", "documenten"),
    "gis": ("gis",),
    "belastingen": ("woz", "heffingen"),
    "portaal": ("portaal",),
}
ZONE = "werkendam.test."
OLD_SITE_ADDRESS = "127.0.0.2"
NEW_SITE_ADDRESS = "127.0.0.3"


@dataclass
class PostgresInfo:
    site: str  # "onprem" or "cloud"; also the cluster's cluster_name setting
    host: str
    port: int
    user: str  # a superuser used by the migration
    password: str = field(repr=False)
    data_dir: str
    socket_dir: str
    bin_dir: str  # where pg_ctl, pg_dump, pg_restore of this cluster's version live
    pid: int | None = None


@dataclass
class SshInfo:
    host: str
    port: int
    user: str
    private_key: str = field(repr=False)  # OpenSSH private key text (the client's)
    private_key_file: str
    host_key: str  # "ssh-ed25519 AAAA..." public host key line, for pinning
    work_dir: str  # a writable directory on the "cloud host" for uploaded dumps
    pg_bin_dir: str  # PostgreSQL client tools usable from the SSH shell
    pid: int | None = None


@dataclass
class PowerDnsInfo:
    api_url: str  # http://127.0.0.1:PORT
    api_key: str = field(repr=False)
    server_id: str  # "localhost"
    dns_host: str
    dns_port: int
    zone: str
    pid: int | None = None


@dataclass
class AppInfo:
    name: str
    port: int  # the same port on both sites
    databases: list[str]
    db_user: str  # the application's login role, e.g. burgerzaken_app
    db_password: str = field(repr=False)
    old_url: str  # http://127.0.0.2:PORT
    new_url: str  # http://127.0.0.3:PORT
    hostname: str  # burgerzaken.werkendam.test.


@dataclass
class SandboxInfo:
    dir: str
    scale: int
    onprem: PostgresInfo
    cloud: PostgresInfo
    ssh: SshInfo
    powerdns: PowerDnsInfo
    apps: dict[str, AppInfo]
    app_pids: dict[str, int] = field(default_factory=dict)  # "burgerzaken@onprem" -> pid

    def save(self) -> None:
        path = Path(self.dir) / INFO_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.chmod(0o600)
        tmp.replace(path)
        env = Path(self.dir) / ENV_FILE
        env.write_text("".join(f"export {k}={_shell_quote(v)}\n" for k, v in self.environment().items()))
        env.chmod(0o600)

    @classmethod
    def load(cls, directory: str | Path) -> SandboxInfo:
        data = json.loads((Path(directory) / INFO_FILE).read_text())
        return cls(
            dir=data["dir"],
            scale=data["scale"],
            onprem=PostgresInfo(**data["onprem"]),
            cloud=PostgresInfo(**data["cloud"]),
            ssh=SshInfo(**data["ssh"]),
            powerdns=PowerDnsInfo(**data["powerdns"]),
            apps={k: AppInfo(**v) for k, v in data["apps"].items()},
            app_pids=data.get("app_pids", {}),
        )

    def environment(self) -> dict[str, str]:
        """The variables ``runbooks/demo.yaml`` reads."""
        env = {}
        for prefix, pg in (("CUTOVER_ONPREM_PG", self.onprem), ("CUTOVER_CLOUD_PG", self.cloud)):
            env.update(
                {
                    f"{prefix}_HOST": pg.host,
                    f"{prefix}_PORT": str(pg.port),
                    f"{prefix}_USER": pg.user,
                    f"{prefix}_PASSWORD": pg.password,
                    f"{prefix}_BIN": pg.bin_dir,
                }
            )
        env.update(
            {
                "CUTOVER_CLOUD_SSH_HOST": self.ssh.host,
                "CUTOVER_CLOUD_SSH_PORT": str(self.ssh.port),
                "CUTOVER_CLOUD_SSH_USER": self.ssh.user,
                "CUTOVER_CLOUD_SSH_KEY": self.ssh.private_key,
                "CUTOVER_CLOUD_SSH_HOST_KEY": self.ssh.host_key,
                "CUTOVER_CLOUD_SSH_WORK_DIR": self.ssh.work_dir,
                "CUTOVER_CLOUD_SSH_PG_BIN": self.ssh.pg_bin_dir,
                "CUTOVER_PDNS_API": self.powerdns.api_url,
                "CUTOVER_PDNS_API_KEY": self.powerdns.api_key,
                "CUTOVER_PDNS_DNS": f"{self.powerdns.dns_host}:{self.powerdns.dns_port}",
            }
        )
        for app in self.apps.values():
            key = app.name.upper()
            env[f"CUTOVER_APP_{key}_PORT"] = str(app.port)
            env[f"CUTOVER_APP_{key}_DB_PASSWORD"] = app.db_password
        return env


def _shell_quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"
