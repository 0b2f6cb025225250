r"""The local target's state: one JSON file of the servers it started, written atomically under a lock.

``<state_dir>/local-state.json`` lets ``status``/``logs``/``delete`` in a later invocation find the
processes; concurrent invocations serialise their read-modify-write through ``.local-state.lock``.
File-system failures (typically a ``.poolserve`` created by another user) become one-line
:class:`~poolserve.errors.LocalRunError`\ s naming the path.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from poolserve.errors import LocalRunError

STATE_FILE = "local-state.json"
STATE_VERSION = 1


@dataclass(frozen=True)
class LocalEntry:
    """One started model, as recorded in ``local-state.json``."""

    name: str
    pid: int
    pgid: int
    port: int
    url: str
    log: str
    started_at: float
    """Wall-clock time (epoch seconds)."""
    argv: tuple[str, ...]
    served_model: str
    runtime: str
    fingerprint: str
    ticks: int | None = None
    """The pid's start time in clock ticks since boot: tells our process from a recycled pid."""
    stopped: bool = False
    """Stopped on purpose (``poolserve stop``, or ``stopped: true`` in the config): not restarted by ``wait``."""


@dataclass(frozen=True)
class LocalState:
    """The content of ``local-state.json``."""

    models: Mapping[str, LocalEntry] = field(default_factory=dict)


def read_state(path: Path) -> LocalState:
    """Load the state file (a missing file is an empty state).

    Raises:
        LocalRunError: when the file is not valid state (it names the file).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return LocalState()
    except PermissionError as err:
        raise fs_error(err, "read the local state", path) from None
    except (OSError, json.JSONDecodeError) as err:
        raise LocalRunError(f"{path}: unreadable local state ({err}); stop stray vLLM processes and remove it") \
            from None
    try:
        models = {name: LocalEntry(**{**e, "argv": tuple(e["argv"])}) for name, e in data["models"].items()}
    except (KeyError, TypeError) as err:
        raise LocalRunError(f"{path}: unexpected local state format ({err}); remove the file") from None
    return LocalState(models)


def fs_error(err: OSError, doing: str, path: Path | str | None = None) -> LocalRunError:
    """A one-line LocalRunError for a file-system failure in the state or cache directories.

    Typical cause: ``.poolserve`` was created by another user (often root, e.g. via ``sudo``).
    """
    where = path if path is not None else (err.filename if err.filename is not None else "?")
    if isinstance(err, PermissionError):
        hint = ("run poolserve as the user that owns it, or point local.state_dir/local.cache_dir at a directory "
                "you can write, e.g. --set local.state_dir=DIR")
    else:
        hint = "point local.state_dir/local.cache_dir elsewhere, e.g. --set local.state_dir=DIR"
    return LocalRunError(f"{where}: cannot {doing}: {err.strerror or err}", hint=hint)


def write_state(path: Path, state: LocalState) -> None:
    """Write the state file atomically (temp file + rename).

    Raises:
        LocalRunError: the directory or file cannot be written (it names the file).
    """
    data = {"version": STATE_VERSION, "models": {n: asdict(e) for n, e in sorted(state.models.items())}}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise fs_error(err, "write the local state", path) from err


@contextlib.contextmanager
def locked(state_dir: Path) -> Iterator[None]:
    """Serialise read-modify-write of the state between concurrent poolserve invocations.

    Raises:
        LocalRunError: the state directory or its lock file cannot be created or opened.
    """
    lock = state_dir / ".local-state.lock"
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        f = lock.open("a")
    except OSError as err:
        raise fs_error(err, "create the local state lock", err.filename or lock) from err
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)

