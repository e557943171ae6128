"""The device side's one error type: a machine-readable code and a message that says what to do."""

from __future__ import annotations


class ProvisionError(Exception):
    """Enrollment or renewal failed; `code` is machine-readable, the message says what to do."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
