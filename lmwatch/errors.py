"""Domain errors: what lmwatch's own code refuses, in its own words, with no HTTP in them.

Routing, translation and the control plane raise these; the HTTP layer (`lmwatch.api.errors`) maps
each kind to a status and to the body shape of the API the request came in on (OpenAI or
Anthropic), so the domain never imports the API layer.
"""

from __future__ import annotations

from collections.abc import Sequence


class DomainError(Exception):
    """A request lmwatch cannot do. `code` and `param` name the reason and the field for clients."""

    def __init__(
        self, message: str, *, code: str | None = None, param: str | None = None, problems: Sequence[str] = ()
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.problems = tuple(problems)
        """`path: message` lines when the request was checked field by field (a config, a backend)."""


class InvalidRequest(DomainError):
    """The request itself is wrong: bad JSON, a missing field, a model that cannot do what it asks."""


class Forbidden(DomainError):
    """The caller may not do this (a client key's model or task limits)."""


class NotFound(DomainError):
    """It names something that does not exist: a model, a backend."""


class Conflict(DomainError):
    """It cannot be done in the current state: a name taken, a backend not probed yet."""


class UpstreamFailed(DomainError):
    """A backend failed to do it."""


class Unavailable(DomainError):
    """This lmwatch does not run the part that would do it."""
