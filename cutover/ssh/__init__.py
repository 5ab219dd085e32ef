"""Reaching a remote host over SSH: connect with a pinned host key (``target``), run a
command in its own killable process group (``remote``), pipe a byte stream into a remote
command with sha256 on both ends (``stream``), and upload files or dump directories over
SFTP with resume (``upload``). Plain library code: no Prefect, no runbook model."""
