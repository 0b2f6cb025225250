r"""The local target's state: what is deployed (the CLI's) and how each server is doing (its supervisor's).

- ``<state_dir>/local-state.json``: the deployed models, written by ``deploy``/``delete`` atomically
  under ``.local-state.lock`` (concurrent invocations serialise their read-modify-write through it).
  It is the desired state: a supervisor whose entry is gone, or names another uid, stops its server.
- ``<state_dir>/pods/<model>.json``: the supervisor's :class:`~poolserve.targets.local.lifecycle.PodStatus`
  (one writer: the supervisor), read by ``status``/``wait``/``delete``.

The state directory is created readable by its owner only (0700) and every file in it 0600: the
server's environment is never written here, but its logs and command lines are the user's business.
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
from poolserve.targets.local.lifecycle import PodStatus, StopRequest

STATE_FILE = "local-state.json"
STATE_VERSION = 2
PODS_DIR = "pods"
DIR_MODE = 0o700
FILE_MODE = 0o600


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
    uid: str
    """This deployment's id: ``pid``/``pgid``/``ticks`` are its supervisor's, which runs the server and writes
    ``pods/<name>.json`` naming this uid."""
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


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) as 0700; an existing directory keeps its mode.

    Raises:
        OSError: when it cannot be created.
    """
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        os.chmod(path, DIR_MODE)  # mkdir's mode is masked by the umask


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file + rename), readable by the owner only.

    Raises:
        OSError: when the directory or file cannot be written (the temp file is removed).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def write_state(path: Path, state: LocalState) -> None:
    """Write the state file atomically (temp file + rename), 0600 in a 0700 directory.

    Raises:
        LocalRunError: the directory or file cannot be written (it names the file).
    """
    data = {"version": STATE_VERSION, "models": {n: asdict(e) for n, e in sorted(state.models.items())}}
    try:
        make_private_dir(path.parent)
        write_private(path, json.dumps(data, indent=2) + "\n")
    except OSError as err:
        raise fs_error(err, "write the local state", path) from err


def pod_path(state_dir: Path, name: str) -> Path:
    """``<state_dir>/pods/<name>.json``: the supervisor's status of model ``name``."""
    return state_dir / PODS_DIR / f"{name}.json"


def stop_path(state_dir: Path, name: str, uid: str) -> Path:
    """``<state_dir>/pods/<name>.<uid>.stop``: how ``delete`` asks the supervisor to stop (grace period)."""
    return state_dir / PODS_DIR / f"{name}.{uid}.stop"


def read_pod(state_dir: Path, name: str) -> PodStatus | None:
    """The supervisor's last written status of ``name``, or None (none written, or unreadable)."""
    try:
        return PodStatus.from_dict(json.loads(pod_path(state_dir, name).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def server_pgid(state_dir: Path, name: str) -> int | None:
    """The process group of model ``name``'s running server, from its supervisor's status (None: not running)."""
    pod = read_pod(state_dir, name)
    return pod.running.pgid if pod is not None and pod.running is not None else None


def write_pod(state_dir: Path, status: PodStatus) -> None:
    """Write a supervisor's status atomically.

    Raises:
        OSError: when it cannot be written.
    """
    path = pod_path(state_dir, status.name)
    make_private_dir(path.parent)
    write_private(path, json.dumps(status.to_dict(), indent=1) + "\n")


def write_stop(state_dir: Path, name: str, request: StopRequest) -> None:
    """Ask the supervisor of ``name`` (deployment ``request.uid``) to stop with ``request.grace_s``.

    Raises:
        OSError: when it cannot be written.
    """
    path = stop_path(state_dir, name, request.uid)
    make_private_dir(path.parent)
    write_private(path, json.dumps({"uid": request.uid, "grace_s": request.grace_s}) + "\n")


def read_stop(state_dir: Path, name: str, uid: str) -> StopRequest | None:
    """The stop request for deployment ``uid`` of ``name``, if ``delete`` wrote one."""
    try:
        data = json.loads(stop_path(state_dir, name, uid).read_text(encoding="utf-8"))
        return StopRequest(uid=str(data["uid"]), grace_s=float(data["grace_s"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextlib.contextmanager
def locked(state_dir: Path) -> Iterator[None]:
    """Serialise read-modify-write of the state between concurrent poolserve invocations.

    Raises:
        LocalRunError: the state directory or its lock file cannot be created or opened.
    """
    lock = state_dir / ".local-state.lock"
    try:
        make_private_dir(state_dir)
        f = os.fdopen(os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE), "a")
    except OSError as err:
        raise fs_error(err, "create the local state lock", err.filename or lock) from err
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)

