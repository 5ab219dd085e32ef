"""A small valid runbook, as text, that tests bend into broken ones line by line."""

MINIMAL = """\
cutover: test-estate
window:
  start: 2027-07-16T18:00:00+02:00
  end: 2027-07-19T06:00:00+02:00
sites:
  old:
    postgres: {host: 127.0.0.1, port: 5432, user: migrate, password: env:OLD_PG_PASSWORD, sslmode: disable}
  new:
    postgres: {host: 127.0.0.1, port: 5433, user: migrate, password: env:NEW_PG_PASSWORD, sslmode: disable}
    ssh: {host: 127.0.0.1, port: 2222, user: cutover, key: env:SSH_KEY, host_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE"}
dns:
  api: http://127.0.0.1:8081
  api_key: env:PDNS_API_KEY
  zone: example.test.
  nameserver: 127.0.0.1:5300
applications:
  - name: gis
    databases:
      - {name: gis, from: old, to: new}
    dns:
      - {name: gis.example.test., to: 192.0.2.10}
  - name: portal
    depends_on: [gis]
    databases:
      - {name: portal, from: old, to: new, method: stream}
    smoke:
      - sql: {site: new, database: portal, query: "select 1", expect: 1}
"""
