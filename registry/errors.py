"""Domain errors shared by the services, the API and the CLI.

Each error carries a stable machine-readable ``code`` and a message that says what to fix. The API
maps the error classes to HTTP statuses (``registry.api.errors``); nothing here knows about HTTP.
"""

from __future__ import annotations


class RegistryError(Exception):
    """Base of every error the registry reports to a user."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class InvalidInput(RegistryError):
    """The request is malformed or names something invalid (a bad name, a bad ref, bad JSON)."""

    code = "invalid_input"


class InvalidAdapter(InvalidInput):
    """The adapter's files are not a valid PEFT LoRA adapter for its base model."""

    code = "invalid_adapter"


class InvalidSafetensors(InvalidAdapter):
    """A safetensors file is truncated, hostile or otherwise unreadable."""

    code = "invalid_safetensors"


class DigestMismatch(InvalidInput):
    """Uploaded bytes do not hash to the digest they were declared under."""

    code = "digest_mismatch"


class TooLarge(InvalidInput):
    """An upload exceeds the configured size limit."""

    code = "too_large"


class NotFound(RegistryError):
    code = "not_found"


class UnknownBase(NotFound):
    """An adapter names a base model SHA the registry has not registered."""

    code = "unknown_base"


class Conflict(RegistryError):
    code = "conflict"


class BaseMismatch(Conflict):
    """An adapter was asked for on a base model other than the one it was made for."""

    code = "base_mismatch"


class StaleExpectation(Conflict):
    """A compare-and-set tag move found the tag somewhere other than expected."""

    code = "stale_expectation"


class Gone(RegistryError):
    """The version exists but was yanked; it is reachable only by digest."""

    code = "yanked"


class Unavailable(RegistryError):
    """A service the registry relies on (e.g. a Hugging Face Hub) could not be reached or failed: not the
    caller's input, so worth retrying."""

    code = "unavailable"


class Unauthorized(RegistryError):
    """No valid credentials: a token is missing, malformed, unknown, revoked or expired."""

    code = "unauthorized"


class Forbidden(RegistryError):
    """Valid credentials without the right: a scope too low, or another namespace."""

    code = "forbidden"
