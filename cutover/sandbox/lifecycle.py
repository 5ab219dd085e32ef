"""``up``, ``status`` and ``down`` of a sandbox estate in one directory.

``up`` picks free ports and generated secrets, records them in ``sandbox.json`` *before*
starting anything (so that ``down`` can always find what was started), then starts the two
PostgreSQL clusters, sshd, PowerDNS and the two application sites in parallel, builds the
old site's estate, and records every pid. A second ``up`` reuses what runs and restarts
only what does not. ``down`` stops exactly the recorded processes (after checking each pid
still is ours) and confirms that none of them, nor any of their children, is left.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import structlog

from cutover.errors import SandboxError
from cutover.sandbox import estate, postgres_cluster, powerdns_server, processes, ssh_server
from cutover.sandbox.info import (
    ESTATE,
    INFO_FILE,
    NEW_SITE_ADDRESS,
    OLD_SITE_ADDRESS,
    ZONE,
    AppInfo,
    PostgresInfo,
    PowerDnsInfo,
    SandboxInfo,
)
from cutover.sandbox.ports import PortPicker

log = structlog.get_logger()

SITES = {"onprem": OLD_SITE_ADDRESS, "cloud": NEW_SITE_ADDRESS}
MIGRATION_USER = "migrate"
DEFAULT_SCALE = 1


def _secret() -> str:
    return secrets.token_urlsafe(24)


def _paths(directory: Path) -> dict[str, Path]:
    return {
        "ssh": directory / "ssh",
        "work": directory / "cloud-host" / "work",
        "pdns": directory / "powerdns",
        "apps": directory / "apps",
    }


def app_config_file(directory: Path, site: str) -> Path:
    """The config file of a site's application process (also the marker in its cmdline)."""
    return directory / "apps" / f"{site}.json"


def _new_info(directory: Path, scale: int) -> SandboxInfo:
    """Every port, secret and path of a new sandbox; nothing started yet (keys are made)."""
    picker = PortPicker()
    root = postgres_cluster.clusters_root(directory)
    bin_dir = postgres_cluster.find_bin_dir()
    clusters = {}
    for site in SITES:
        data, sockets, _ = postgres_cluster.layout(root, site)
        clusters[site] = PostgresInfo(
            site=site,
            host="127.0.0.1",
            port=picker.pick(),
            user=MIGRATION_USER,
            password=_secret(),
            data_dir=str(data),
            socket_dir=str(sockets),
            bin_dir=bin_dir,
        )
    paths = _paths(directory)
    ssh = ssh_server.prepare(paths["ssh"], paths["work"], "127.0.0.1", picker.pick(), bin_dir)
    powerdns = PowerDnsInfo(
        api_url=f"http://127.0.0.1:{picker.pick()}",
        api_key=_secret(),
        server_id="localhost",
        dns_host="127.0.0.1",
        dns_port=picker.pick(udp=True),
        zone=ZONE,
    )
    apps = {}
    for name, databases in ESTATE.items():
        port = picker.pick(hosts=tuple(SITES.values()))
        apps[name] = AppInfo(
            name=name,
            port=port,
            databases=list(databases),
            db_user=estate.app_role(name),
            db_password=_secret(),
            old_url=f"http://{OLD_SITE_ADDRESS}:{port}",
            new_url=f"http://{NEW_SITE_ADDRESS}:{port}",
            hostname=f"{name}.{ZONE}",
        )
    return SandboxInfo(
        dir=str(directory),
        scale=scale,
        onprem=clusters["onprem"],
        cloud=clusters["cloud"],
        ssh=ssh,
        powerdns=powerdns,
        apps=apps,
    )


def _write_app_config(info: SandboxInfo, site: str) -> Path:
    pg = info.onprem if site == "onprem" else info.cloud
    entries = [
        {
            "name": app.name,
            "site": site,
            "address": SITES[site],
            "port": app.port,
            "database": app.databases[0],
            "table": estate.MAIN_TABLE[app.databases[0]],
            "db_host": pg.host,
            "db_port": pg.port,
            "db_user": app.db_user,
            "db_password": app.db_password,
            # The old site serves; the new one waits in maintenance for the cutover to start it.
            "maintenance": site == "cloud",
        }
        for app in info.apps.values()
    ]
    path = app_config_file(Path(info.dir), site)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.touch(mode=0o600)
    partial.write_text(json.dumps({"site": site, "apps": entries}, indent=2))
    partial.replace(path)
    return path


def _site_pid(info: SandboxInfo, site: str) -> int | None:
    pids = {pid for key, pid in info.app_pids.items() if key.endswith(f"@{site}")}
    return pids.pop() if len(pids) == 1 else None


def _start_site(info: SandboxInfo, site: str) -> int:
    """Start the site's application process unless ours runs; wait until every app answers."""
    config = app_config_file(Path(info.dir), site)
    pid = _site_pid(info, site)
    if processes.is_ours(pid, str(config)):
        assert pid is not None
        return pid
    _write_app_config(info, site)
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    log_file = config.with_suffix(".log")
    pid = processes.start_detached(
        [sys.executable, "-m", "cutover.sandbox.site_apps", "--config", str(config)], log_file, env=env
    )
    urls = [f"http://{SITES[site]}:{app.port}/maintenance" for app in info.apps.values()]
    deadline = time.monotonic() + 30
    with httpx.Client(timeout=2) as client:
        for url in urls:
            while True:
                if not processes.alive(pid):
                    tail = log_file.read_text(errors="replace").strip().splitlines()[-1:] if log_file.exists() else []
                    raise SandboxError(
                        f"the {site} application process exited at start ({log_file}: {tail[0] if tail else 'no output'})"
                    )
                try:
                    if client.get(url).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SandboxError(f"the {site} application at {url} did not answer within 30s (log: {log_file})")
                time.sleep(0.05)
    log.info("sandbox_apps_started", site=site, pid=pid)
    return pid


def _timed(timings: dict[str, float], name: str, work: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        started = time.monotonic()
        work()
        timings[name] = round(time.monotonic() - started, 2)

    return run


def up(directory: str | Path, scale: int | None = None) -> SandboxInfo:
    """Bring the sandbox in ``directory`` up and return its description (also saved to
    ``<directory>/sandbox.json`` and ``<directory>/env``).

    Idempotent: services that run are reused, stopped ones are restarted with their
    recorded ports and data. ``scale`` defaults to the recorded one (1 for a new sandbox);
    asking for another scale than the recorded one is a SandboxError.
    """
    directory = Path(directory).absolute()
    started = time.monotonic()
    fresh = not (directory / INFO_FILE).exists()
    if fresh:
        if scale is not None and scale < 0:
            raise SandboxError(f"--scale must be 0 or more, not {scale}")
        try:
            # Traversable but not listable: the cluster user must reach <dir>/postgres;
            # every file holding a secret is 0600 on its own.
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o711)
            info = _new_info(directory, DEFAULT_SCALE if scale is None else scale)
            info.save()
        except OSError as exc:
            raise SandboxError(
                f"cannot create the sandbox in {directory}: {exc.strerror or exc} ({exc.filename or directory})"
            ) from exc
    else:
        info = load(directory)
        if scale is not None and scale != info.scale:
            raise SandboxError(
                f"the sandbox in {directory} was built at scale {info.scale}, not {scale}; "
                f"run `cutover sandbox down --purge --dir {directory}` first"
            )
    timings: dict[str, float] = {}
    paths = _paths(directory)
    saving = threading.Lock()

    def record() -> None:
        # Each pid is on disk as soon as its process runs: an interrupted up stays stoppable.
        with saving:
            info.save()

    def onprem() -> None:
        postgres_cluster.create(info.onprem)
        info.onprem.pid = postgres_cluster.start(info.onprem)
        record()
        estate.build(info.onprem, info.apps, info.scale)

    def cloud() -> None:
        postgres_cluster.create(info.cloud)
        info.cloud.pid = postgres_cluster.start(info.cloud)
        record()

    def ssh() -> None:
        info.ssh.pid = ssh_server.start(info.ssh, paths["ssh"])
        record()

    def powerdns() -> None:
        powerdns_server.prepare(paths["pdns"], info.powerdns)
        info.powerdns.pid = powerdns_server.start(info.powerdns, paths["pdns"])
        record()
        powerdns_server.ensure_zone(info.powerdns, info.apps)

    def site(name: str) -> Callable[[], None]:
        def run() -> None:
            pid = _start_site(info, name)
            for app in info.apps:
                info.app_pids[f"{app}@{name}"] = pid
            record()

        return run

    work = {
        "onprem": onprem,
        "cloud": cloud,
        "sshd": ssh,
        "powerdns": powerdns,
        "apps@onprem": site("onprem"),
        "apps@cloud": site("cloud"),
    }
    with ThreadPoolExecutor(max_workers=len(work), thread_name_prefix="sandbox-up") as pool:
        futures: dict[str, Future[None]] = {name: pool.submit(_timed(timings, name, job)) for name, job in work.items()}
    failures = [(name, f.exception()) for name, f in futures.items() if f.exception() is not None]
    info.save()  # whatever started is recorded, so that down can stop it
    if failures:
        name, first = failures[0]
        if fresh:
            try:
                down(directory)
            except SandboxError as cleanup:
                log.warning("sandbox_cleanup_failed", error=str(cleanup))
        if isinstance(first, SandboxError):
            raise first
        raise SandboxError(f"starting {name} in {directory} failed: {type(first).__name__}: {first}") from first
    log.info("sandbox_up", dir=str(directory), scale=info.scale, seconds=round(time.monotonic() - started, 2), **timings)
    return info


def load(directory: str | Path) -> SandboxInfo:
    """The recorded sandbox in ``directory``; SandboxError when there is none."""
    directory = Path(directory).absolute()
    try:
        return SandboxInfo.load(directory)
    except FileNotFoundError:
        raise SandboxError(
            f"no sandbox in {directory} ({INFO_FILE} not found); start one with `cutover sandbox up --dir {directory}`"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise SandboxError(f"{directory / INFO_FILE} is not a readable sandbox description: {type(exc).__name__}") from exc


@dataclass(frozen=True)
class ServiceState:
    """One service of the sandbox as ``status`` sees it."""

    name: str
    address: str
    pid: int | None
    up: bool
    detail: str = ""


def _postgres_state(pg: PostgresInfo) -> ServiceState:
    address = f"{pg.host}:{pg.port}"
    pid = postgres_cluster.postmaster_pid(pg)
    if not pid:
        return ServiceState(f"postgres@{pg.site}", address, pg.pid, False, "not running")
    try:
        with estate.connect(pg, "postgres", autocommit=True) as conn:
            row = conn.execute("select current_setting('cluster_name')").fetchone()
    except SandboxError:
        return ServiceState(f"postgres@{pg.site}", address, pid, False, "running but refuses connections")
    ok = row is not None and row[0] == pg.site
    return ServiceState(f"postgres@{pg.site}", address, pid, ok, "" if ok else f"cluster_name is {row and row[0]!r}")


def status(directory: str | Path) -> list[ServiceState]:
    """Each service of the sandbox in ``directory``: is it our process, and does it answer?"""
    info = load(directory)
    paths = _paths(Path(info.dir))
    states = [_postgres_state(info.onprem), _postgres_state(info.cloud)]
    ssh_ours = processes.is_ours(info.ssh.pid, str(ssh_server.config_file(paths["ssh"])))
    states.append(
        ServiceState(
            "sshd",
            f"{info.ssh.host}:{info.ssh.port}",
            info.ssh.pid,
            ssh_ours and ssh_server.banner(info.ssh.host, info.ssh.port),
            "" if ssh_ours else "not running",
        )
    )
    pdns = info.powerdns
    pdns_ours = processes.is_ours(pdns.pid, f"--config-dir={paths['pdns']}")
    pdns_up = False
    if pdns_ours:
        try:
            pdns_up = (
                httpx.get(
                    f"{pdns.api_url}/api/v1/servers/{pdns.server_id}/zones/{pdns.zone}",
                    headers={"X-API-Key": pdns.api_key},
                    timeout=5,
                ).status_code
                == 200
            )
        except httpx.HTTPError:
            pass
    states.append(
        ServiceState(
            "powerdns",
            f"{pdns.api_url} dns {pdns.dns_host}:{pdns.dns_port}",
            pdns.pid,
            pdns_up,
            "" if pdns_ours else "not running",
        )
    )
    with httpx.Client(timeout=5) as client:
        for site in SITES:
            pid = _site_pid(info, site)
            ours = processes.is_ours(pid, str(app_config_file(Path(info.dir), site)))
            for app in info.apps.values():
                url = app.old_url if site == "onprem" else app.new_url
                answered = False
                if ours:
                    try:
                        answered = client.get(f"{url}/maintenance").status_code == 200
                    except httpx.HTTPError:
                        pass
                states.append(ServiceState(f"{app.name}@{site}", url, pid, answered, "" if ours else "not running"))
    return states


def _recorded(info: SandboxInfo) -> list[tuple[str, int | None, str]]:
    """(service, pid, marker) of every process ``up`` recorded."""
    paths = _paths(Path(info.dir))
    found: list[tuple[str, int | None, str]] = [
        ("postgres@onprem", postgres_cluster.postmaster_pid(info.onprem) or info.onprem.pid, info.onprem.data_dir),
        ("postgres@cloud", postgres_cluster.postmaster_pid(info.cloud) or info.cloud.pid, info.cloud.data_dir),
        ("sshd", info.ssh.pid, str(ssh_server.config_file(paths["ssh"]))),
        ("powerdns", info.powerdns.pid, f"--config-dir={paths['pdns']}"),
    ]
    for site in SITES:
        found.append((f"apps@{site}", _site_pid(info, site), str(app_config_file(Path(info.dir), site))))
    return found


def down(directory: str | Path, purge: bool = False) -> list[int]:
    """Stop every process of the sandbox in ``directory`` and confirm none is left.

    Only recorded pids whose command line still points into this sandbox are signalled.
    Returns the pids that were stopped (with their children). With ``purge``, also deletes
    the sandbox's files (and the clusters' fallback dir). A directory without a sandbox is
    already down: nothing to do.
    """
    directory = Path(directory).absolute()
    if not (directory / INFO_FILE).exists():
        log.info("sandbox_not_found", dir=str(directory))
        return []
    info = load(directory)
    ours = [(name, pid, marker) for name, pid, marker in _recorded(info) if processes.is_ours(pid, marker)]
    family: set[int] = set()
    for _, pid, _ in ours:
        assert pid is not None
        family |= processes.descendants(pid) | {pid}

    def stop(name: str, pid: int, marker: str) -> None:
        if name.startswith("postgres@"):
            postgres_cluster.stop(info.onprem if name.endswith("onprem") else info.cloud)
        else:
            processes.stop_group(pid, marker, name)

    errors: list[str] = []
    with ThreadPoolExecutor(max_workers=max(len(ours), 1), thread_name_prefix="sandbox-down") as pool:
        futures = [pool.submit(stop, name, pid, marker) for name, pid, marker in ours if pid]
    errors += [str(f.exception()) for f in futures if f.exception() is not None]
    left = processes.wait_gone(family, 5)
    if left:
        errors.append(f"processes {sorted(left)} of the sandbox in {directory} are still running")
    if errors:
        raise SandboxError("; ".join(errors))
    info.onprem.pid = info.cloud.pid = info.ssh.pid = info.powerdns.pid = None
    info.app_pids = {}
    if purge:
        _purge(directory, info)
    else:
        info.save()
    log.info("sandbox_down", dir=str(directory), stopped=len(family), purged=purge)
    return sorted(family)


# What ``up`` creates in the sandbox dir; ``--purge`` deletes these and nothing else.
_CREATED = ("sandbox.json", "sandbox.tmp", "env", "postgres", "ssh", "cloud-host", "powerdns", "apps")


def _purge(directory: Path, info: SandboxInfo) -> None:
    clusters = Path(info.onprem.data_dir).parent.parent
    if (clusters / postgres_cluster.FALLBACK_MARKER).exists():
        shutil.rmtree(clusters)
    for name in _CREATED:
        entry = directory / name
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        elif entry.exists() or entry.is_symlink():
            entry.unlink()
    try:
        directory.rmdir()
    except OSError:
        pass  # not empty: someone else's files live there too
