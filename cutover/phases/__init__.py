"""What each step of a cutover does, as plain functions over the runbook and the adapters.

No Prefect here: the tasks in ``tasks/`` wrap these with retries, caching and events, and
everything below can be called and tested on its own. Every function looks at the world
before it acts, so running it again after a crash does no harm.
"""
