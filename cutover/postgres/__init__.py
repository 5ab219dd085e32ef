"""PostgreSQL adapters: endpoints and connections, fingerprints, freezing, roles, dumps.

Plain library functions over psycopg and the PostgreSQL client programs; they take plain
parameters (never runbook models) and raise only :mod:`cutover.errors` types.
"""
