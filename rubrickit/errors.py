"""Exceptions raised by rubrickit.

Every error a user can cause derives from :class:`RubrickitError`; its message names the place (file, line,
field) and the next step. The hierarchy::

    RubrickitError
    ├── RubricError            a rubric or data file is malformed (file, line, field path)
    ├── ConversionError        a file in a format of the field cannot be converted
    ├── OutputExistsError      refusing to overwrite a file the user wrote
    ├── BackendSpecError       a judge spec string is malformed
    │   └── UnknownBackendError    no backend registered under that name
    ├── MissingDependencyError an optional SDK is not installed (names the extra to install)
    ├── MissingCredentialsError    an API key is missing (names the variable)
    └── BackendCallError       a backend call failed after retries
        └── JudgeUnavailableError  the judge cannot answer at all (auth, unknown model, outage): the run stops

None of these subclass ``KeyError``: its ``str()`` adds quotes around the message.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "RubrickitError",
    "RubricError",
    "ConversionError",
    "OutputExistsError",
    "BackendSpecError",
    "UnknownBackendError",
    "MissingDependencyError",
    "MissingCredentialsError",
    "BackendCallError",
    "JudgeUnavailableError",
]


class RubrickitError(Exception):
    """Base class of every error rubrickit raises on purpose."""

    exit_code: int = 1
    """The command line's exit status for this error (docs/reliability.md lists them)."""


class RubricError(RubrickitError, ValueError):
    """A rubric (or data) file or object is malformed.

    ``problems`` holds one entry per problem found, each already formatted as
    ``file:line: field.path: message``; ``str()`` joins them.
    """

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))

    @classmethod
    def at(cls, file: str | Path | None, line: int | None, field: str | None, message: str) -> RubricError:
        """Build an error for one place: ``file:line: field: message`` (parts that are unknown are left out)."""
        return cls(format_location(file, line, field, message))


def format_location(file: str | Path | None, line: int | None, field: str | None, message: str) -> str:
    """Format ``file:line: field: message``, leaving out the parts that are ``None``."""
    head = ""
    if file is not None:
        head = str(file)
        if line is not None:
            head += f":{line}"
        head += ": "
    elif line is not None:
        head = f"line {line}: "
    if field:
        head += f"{field}: "
    return head + message


class ConversionError(RubrickitError, ValueError):
    """A file in one of the field's formats (HealthBench, RaR, Prometheus, OpenRubrics) cannot be converted."""


class OutputExistsError(RubrickitError, FileExistsError):
    """The output file exists and overwriting it was not asked for."""


class BackendSpecError(RubrickitError, ValueError):
    """A judge spec string such as ``openai:gpt-4.1-mini`` is malformed."""


class UnknownBackendError(BackendSpecError):
    """No backend is registered under the name before the first colon of a spec."""


class MissingDependencyError(RubrickitError, ImportError):
    """An optional dependency is missing; the message names the ``pip install 'rubrickit[extra]'`` to run."""


class MissingCredentialsError(RubrickitError):
    """A backend needs an API key that is not set; the message names the environment variable."""


class BackendCallError(RubrickitError):
    """A backend call failed for good (after the retries the engine allows)."""


class JudgeUnavailableError(BackendCallError):
    """The judge cannot answer any call: authentication failed, the model does not exist, or the server stayed
    unreachable past the outage limit. The whole run stops (records finished so far stay valid and resumable)."""

    exit_code = 4
