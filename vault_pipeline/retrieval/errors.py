"""Why the operator's restore of one document did not happen: it could not (`RetrievalError`), the
records or the bytes disagree (`RetrievalRefused`), or the cold site is still restoring (`StillRestoring`).
"""

from __future__ import annotations


class RetrievalError(RuntimeError):
    """The restore cannot be done (unknown key or version, not replicated, missing records, server); the
    message is one line that says why. Exit status 2 in the command."""


class RetrievalRefused(RuntimeError):
    """The records or the bytes disagree: the document is not restored (and no file is left). Exit 1."""


class StillRestoring(RuntimeError):
    """The timeout came before the cold site finished restoring; a rerun resumes waiting."""

    def __init__(self, message: str, *, waited: float, header: str | None) -> None:
        super().__init__(message)
        self.waited = waited
        self.header = header
