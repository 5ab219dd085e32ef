"""The ``cutover`` command line; the app is assembled in ``cutover.cli.main``."""
