"""Prefect flows: the cutover (and, later, rollback and preflight)."""
