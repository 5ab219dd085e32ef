"""What the copy method connects to through its tunnel: the same server, by the tunnel's
address, with TLS still checked against the server's own name."""

from __future__ import annotations

from psycopg.conninfo import conninfo_to_dict

from cutover.postgres.endpoint import PgEndpoint
from cutover.ssh.tunnel import remote_address


def test_a_named_server_keeps_its_name_for_tls_and_is_reached_by_the_tunnel() -> None:
    server = PgEndpoint("db.cloud.internal", 5432, "migrate", "pw", sslmode="verify-full", sslrootcert="/ca.pem")
    through = server.through_tunnel(40123)
    params = conninfo_to_dict(through.conninfo("bzk"))
    assert (params["host"], params["hostaddr"], params["port"]) == ("db.cloud.internal", "127.0.0.1", "40123")
    assert (params["sslmode"], params["sslrootcert"]) == ("verify-full", "/ca.pem")
    env = through.libpq_env()
    assert (env["PGHOST"], env["PGHOSTADDR"], env["PGPORT"], env["PGSSLMODE"]) == (
        "db.cloud.internal",
        "127.0.0.1",
        "40123",
        "verify-full",
    )
    assert through.where == "db.cloud.internal:40123 (via 127.0.0.1)"
    assert "PGHOSTADDR" not in server.libpq_env() and "hostaddr" not in conninfo_to_dict(server.conninfo("bzk"))


def test_a_socket_directory_is_reached_plainly_by_the_tunnel() -> None:
    server = PgEndpoint("/var/run/postgresql", 5433, "migrate")
    through = server.through_tunnel(40124)
    assert (through.host, through.port, through.hostaddr) == ("127.0.0.1", 40124, None)
    assert remote_address("/var/run/postgresql/", 5433) == "/var/run/postgresql/.s.PGSQL.5433"


def test_the_forward_names_the_server_as_the_target_host_sees_it() -> None:
    assert remote_address("10.0.0.5", 5432) == "10.0.0.5:5432"
    assert remote_address("db.internal", 6432) == "db.internal:6432"
    assert remote_address("fd00::5", 5432) == "[fd00::5]:5432"
