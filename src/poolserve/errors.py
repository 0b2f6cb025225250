"""The exceptions a user is meant to read.

Anything a user can cause or fix raises a :class:`PoolserveError` subclass. The CLI prints
``error: <message>`` on one line and exits with the error's ``exit_code``; every other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self


@dataclass(frozen=True)
class Diagnosis:
    """A recognised failure (:func:`poolserve.vllm.diagnose.diagnose`): a short cause and what to do about it."""

    cause: str
    fix: str
    evidence: str

    def __str__(self) -> str:
        return f"{self.cause}: {self.fix}"


class PoolserveError(Exception):
    """Base class: a failure the user can act on. ``str(err)`` is one line."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} ({hint})")

    def with_message(self, message: str) -> Self:
        """The same error (same class, exit code, hint and details) saying ``message`` instead."""
        new = type(self).__new__(type(self))  # not copy.copy: it would call __init__ with args alone
        new.__dict__.update(self.__dict__)
        new.message = message
        new.args = (message if self.hint is None else f"{message} ({self.hint})",)
        return new


class SpecError(PoolserveError):
    """The config file is unreadable or invalid."""

    exit_code = 2


class LintError(PoolserveError):
    """Rendered objects break a rule KServe, vLLM or the dashboard enforces."""

    exit_code = 1


class DriftError(PoolserveError):
    """Committed manifests differ from a fresh render."""

    exit_code = 1


class ClusterUnreachable(PoolserveError):
    """The Kubernetes API could not be reached or the credentials are invalid."""

    exit_code = 3


class Forbidden(PoolserveError):
    """The API refused the request (403: missing RBAC). An expired login (401) is ClusterUnreachable."""

    exit_code = 4


class NotFound(PoolserveError):
    """An object or a CRD does not exist."""

    exit_code = 5


class Conflict(PoolserveError):
    """Another field manager owns a field, or the object changed underneath us."""

    exit_code = 6


class Invalid(PoolserveError):
    """The API server or an admission webhook rejected an object."""

    exit_code = 7


class NotReady(PoolserveError):
    """A deployment did not become ready in time, or failed while starting."""

    exit_code = 8


class EndpointError(PoolserveError):
    """An HTTP endpoint failed: connection, TLS, auth, or an error response.

    ``kind`` names the failure for scripts (``connection``, ``tls``, ``timeout``, ``auth``,
    ``wrong_task``, ``not_found``, ``model_not_found``, ``input_too_long``, ``bad_request``,
    ``unavailable``, ``server_error``, ``bad_response``; see :mod:`poolserve.check.client`);
    ``server_message`` is the server's own error text (vLLM's ``error.message``), unchanged.
    """

    exit_code = 9

    def __init__(
        self, message: str, *, status: int | None = None, url: str | None = None, hint: str | None = None,
        kind: str = "http", server_message: str | None = None,
    ) -> None:
        self.status = status
        self.url = url
        self.kind = kind
        self.server_message = server_message
        super().__init__(message, hint=hint)


class LocalRunError(PoolserveError):
    """A local vLLM process could not be started or died."""

    exit_code = 10


class LocalStartError(LocalRunError):
    """The vLLM process exited while starting. The message ends with the log tail."""

    def __init__(self, message: str, *, diagnosis: Diagnosis | None, log_tail: Sequence[str],
                 returncode: int | None) -> None:
        self.diagnosis = diagnosis
        self.log_tail = tuple(log_tail)
        self.returncode = returncode
        super().__init__(message)


class Interrupted(PoolserveError):
    """Ctrl-C while waiting: what was started keeps running, and the message says how to stop it."""

    exit_code = 130


class ReferenceUnavailable(PoolserveError):
    """The reference model cannot be computed here (extra not installed, model not found)."""

    exit_code = 2


class MissingDependency(PoolserveError):
    """An optional dependency (an extra such as ``cluster``) is not installed for what was asked."""

    exit_code = 11


class CheckFailed(PoolserveError):
    """``poolserve test`` ran, and at least one check failed."""

    exit_code = 1


class InsecureTransportWarning(UserWarning):
    """TLS verification is off, or a token is about to travel over plain HTTP (printed as ``warning:``)."""



class FingerprintMoved(PoolserveError):
    """``test --fingerprint check`` (or ``deploy --check-fingerprint``): the outputs moved, re-index.

    Its own exit code, so a pipeline tells "the vectors moved" from "the check could not run".
    """

    exit_code = 12


class CapacityError(PoolserveError):
    """``plan --from``: the benchmark cannot answer the question; the message names the ``poolserve bench`` to run."""

    exit_code = 2
