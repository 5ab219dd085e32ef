"""The sandbox: a real estate on one machine (two PostgreSQL clusters, an OpenSSH server for
the cloud host, PowerDNS with its API, the applications at both sites).

``info`` is the contract other code reads; ``lifecycle`` has ``up``, ``status`` and ``down``.
"""
