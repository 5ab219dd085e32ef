"""Synthetic estates of any size, for benchmarks and property tests of the planner."""

from __future__ import annotations

from collections.abc import Sequence


def estate_yaml(applications: int, databases_per_app: int = 2, depends_on: Sequence[Sequence[int]] | None = None) -> str:
    """A valid runbook text with ``applications`` applications of ``databases_per_app``
    databases each. ``depends_on[i]`` lists the indices application i depends on; by
    default each application depends on the one before it (a chain)."""
    if depends_on is None:
        depends_on = [[i - 1] if i else [] for i in range(applications)]
    lines = [
        "cutover: synthetic",
        "window: {start: 2027-07-16T18:00:00+02:00, end: 2027-07-19T06:00:00+02:00}",
        "sites:",
        "  old:",
        "    postgres: {host: 127.0.0.1, user: migrate, password: env:OLD_PG_PASSWORD, sslmode: disable}",
        "  new:",
        "    postgres: {host: 127.0.0.1, port: 5433, user: migrate, password: env:NEW_PG_PASSWORD, sslmode: disable}",
        '    ssh: {host: 127.0.0.1, user: cutover, key: env:SSH_KEY, host_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5"}',
        "dns: {api: 'http://127.0.0.1:8081', api_key: env:PDNS_API_KEY, zone: example.test., nameserver: '127.0.0.1:53'}",
        "gates:",
        "  - {name: go-no-go}",
        "applications:",
    ]
    for i in range(applications):
        name = f"app{i:04d}"
        deps = ", ".join(f"app{d:04d}" for d in depends_on[i])
        lines.append(f"  - name: {name}")
        lines.append(f"    depends_on: [{deps}]")
        lines.append("    databases:" if databases_per_app else "    databases: []")
        for j in range(databases_per_app):
            method = ("stream", "file")[j % 2]
            lines.append(f"      - {{name: {name}_db{j}, from: old, to: new, method: {method}}}")
        lines.append(f"    smoke: [{{http: {{url: 'http://{name}.example.test/health'}}}}]")
        lines.append(f"    dns: [{{name: {name}.example.test., to: 192.0.2.{i % 250 + 1}}}]")
    return "\n".join(lines) + "\n"
