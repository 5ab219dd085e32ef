"""DNS: the provider contract and its safety rules (``provider``), PowerDNS through its
HTTP API (``powerdns``), and a small client asking one server one question (``query``).
Plain library code: no Prefect, no runbook model."""
