"""A tamper-evident audit log: one JSON record per change any command makes.

Each record carries the SHA-256 of the previous record's canonical form (``prev``) and
of its own (``hash``), so editing, removing or reordering a record breaks the chain at
that line; ``workload-ids audit verify`` names the first bad line. Removing records from
the *end* leaves a shorter valid chain: keep the last hash elsewhere (``verify
--expect-head``) to catch that too. Records hold key ids and names, never secrets.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import getpass
import hashlib
import json
import os
import stat
import threading
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .. import clock
from ..errors import UserError
from .chain import GENESIS, Verification, digest

if TYPE_CHECKING:
    from ..calls import CallSeam
    from ..config import Config






class AuditSink(Protocol):
    """Where audit records go, and where every reader of the trail gets them back
    (restore bundles, recorded owners, transfers, quarantines, targets written to)."""

    #: Names the store in messages (a file path, a bucket URL).
    where: str
    #: Whether records outlive the runner (a cloud store that refuses edits and deletes).
    durable: bool

    def prepare(self) -> None:
        """Before a command's first change: raise :class:`UserError` if records cannot be
        written, or if the stored trail fails its automatic check."""

    def append(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Chain and store ``record``; return it as stored (with ``prev`` and ``hash``)."""

    def records(self) -> Iterator[dict[str, Any]]:
        """Every stored record, in order (none when the trail does not exist yet)."""

    def verify(self, expect_head: str | None = None) -> Verification:
        """Check the whole stored trail; name the first bad record."""

    def version(self) -> object:
        """Changes whenever the stored trail changes (readers cache on it)."""


class JsonlAuditLog:
    """A local JSON Lines file; appends are locked so concurrent runs keep one chain.

    The file is opened when the log is made, so a command refuses a bad audit path before
    its first cloud change, never after it. It is created 0600 in directories created 0700
    (records name identities, key ids and restore bundles), and a symbolic link at its path
    is refused rather than followed: a link could send the records anywhere the runner can
    write, or let another local user read them.
    """

    durable = False

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        self._lock = threading.Lock()

    def prepare(self) -> None:
        """AuditSink.prepare: opens (and creates 0600) the file now, so a bad path fails before any change."""
        os.close(_open_log(self.path))

    def records(self) -> Iterator[dict[str, Any]]:
        """AuditSink.records: the file's records in order; none when the file does not exist yet."""
        if not self.path.is_file():
            return iter(())
        return records(self.path)

    def verify(self, expect_head: str | None = None) -> Verification:
        """AuditSink.verify; with no anchor here, a cut end shows only against ``expect_head``."""
        return verify(self.path, expect_head)

    def version(self) -> object:
        """AuditSink.version: the file's path, mtime and size (None when it cannot be read)."""
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (str(self.path), st.st_mtime_ns, st.st_size)

    def append(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """AuditSink.append, under an exclusive flock so concurrent local runs keep one chain."""
        with self._lock, os.fdopen(_open_log(self.path), "a+", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                prev = _last_hash(fh)
                stored = {**record, "prev": prev}
                stored["hash"] = digest(stored)
                fh.seek(0, os.SEEK_END)
                fh.write(json.dumps(stored, sort_keys=True, ensure_ascii=False, default=str) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return stored


def _make_parents(folder: Path) -> None:
    """Create the missing directories of ``folder``, each 0700 (mkdir -p would use the
    umask's default for the intermediate ones)."""
    missing: list[Path] = []
    while not folder.exists() and not folder.is_symlink():
        missing.append(folder)
        folder = folder.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # a concurrent run made it
            directory.mkdir(mode=0o700)


def _open_log(path: Path) -> int:
    """The audit file, opened for appending (and reading the last record to chain onto),
    created 0600; a symbolic link or anything but a regular file is refused."""
    try:
        _make_parents(path.parent)
        # O_RDWR, not O_WRONLY: the last record's hash is read to chain onto it. O_APPEND keeps
        # every write at the end whatever the file offset.
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UserError(
                f"audit log {path} is a symbolic link; the audit log is never written through a "
                "link, which could send the records anywhere. Set audit.path in "
                "workload-ids.yaml to the real file, or replace the link with the file, then "
                "rerun (nothing was changed)") from None
        raise UserError(f"cannot open audit log {path}: {exc.strerror}; fix audit.path in "
                        "workload-ids.yaml or the folder's permissions, then rerun (nothing was "
                        "changed)") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UserError(f"audit log {path} is not a regular file; set audit.path in "
                        "workload-ids.yaml to a file, then rerun (nothing was changed)")
    return fd


def _last_hash(fh: Any) -> str:
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    if size == 0:
        return GENESIS
    # Read backwards for the last line: logs grow large, appends must stay cheap.
    block = min(size, 65536)
    while True:
        fh.seek(size - block)
        tail = fh.read(block)
        lines = tail.rstrip("\n").split("\n")
        if len(lines) > 1 or block == size:
            break
        block = min(size, block * 2)
    try:
        return str(json.loads(lines[-1])["hash"])
    except (ValueError, KeyError, TypeError):
        # A damaged last line: chain onto its text so verify reports it, never hides it.
        return hashlib.sha256(lines[-1].encode()).hexdigest()


def verify(path: Path, expect_head: str | None = None) -> Verification:
    """Check every record's hash and link; name the first bad line (1-based)."""
    prev = GENESIS
    count = 0
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                return Verification(False, count, prev, number, "empty line")
            try:
                record = json.loads(line)
            except ValueError:
                return Verification(False, count, prev, number, "not a JSON record")
            if not isinstance(record, dict) or "hash" not in record or "prev" not in record:
                return Verification(False, count, prev, number, "record without prev/hash")
            if record["prev"] != prev:
                return Verification(False, count, prev, number,
                                    "chain broken: a record before this one was removed, "
                                    "inserted or reordered")
            if digest(record) != record["hash"]:
                return Verification(False, count, prev, number, "record edited: its hash does not match")
            prev = record["hash"]
            count += 1
    if expect_head and prev != expect_head:
        return Verification(False, count, prev, count + 1,
                            f"the log ends at {prev[:12]}…, not at the expected head "
                            f"{expect_head[:12]}…: records were removed from the end")
    return Verification(True, count, prev)


def records(path: Path) -> Iterator[dict[str, Any]]:
    """Every record, in order (no verification)."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


class Auditor:
    """What commands use: fills in time, actor and command, then appends to the sink."""

    def __init__(self, sink: AuditSink | None, command: str, actor: str | None = None) -> None:
        self.sink = sink
        if sink is not None:
            sink.prepare()
        self.command = command
        self.actor = actor or _local_actor()
        # (provider, target) -> the cloud identity the run acts as there.
        self.callers: dict[tuple[str, str], str] = {}

    def record(self, *, workload: str, provider: str, target: str, identity: str, action: str,
               before: Any = None, after: Any = None, result: str = "ok",
               detail: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """Store one change with its actor and cloud caller; None (nothing written) without a sink."""
        if self.sink is None:
            return None
        caller = self.callers.get((provider, target))
        entry: dict[str, Any] = {
            "time": clock.format_time(clock.now()),
            "actor": f"{self.actor} as {caller}" if caller else self.actor, "command": self.command,
            "workload": workload, "provider": provider, "target": target, "identity": identity,
            "action": action, "before": before, "after": after, "result": result,
        }
        if detail:
            entry["detail"] = dict(detail)
        return self.sink.append(entry)


# One sink state per loaded config: the runs of one command share its lock, key and tail.
_SINKS: weakref.WeakKeyDictionary[Config, Any] = weakref.WeakKeyDictionary()
_SINKS_LOCK = threading.Lock()


def open_store(config: Config, seam: CallSeam | None = None) -> AuditSink | None:
    """The store ``config``'s records go to and are read from, or None when it keeps no
    audit trail: the cloud sink when ``audit.sink`` is set (its calls through ``seam``,
    the command's, when given), else the local file."""
    audit = config.data.audit
    if audit is not None and audit.sink is not None:
        from .sink import SinkCache, open_sink
        with _SINKS_LOCK:
            cache = _SINKS.setdefault(config, SinkCache())
        return open_sink(config, seam, cache)
    path = config.audit_path()
    return JsonlAuditLog(path) if path else None


def auditor_for(config: Config, command: str, seam: CallSeam | None = None) -> Auditor:
    """An :class:`Auditor` for ``command`` (a no-op without a trail). Pass the command's
    ``seam``: a cloud sink that cannot be written then stops it."""
    return Auditor(open_store(config, seam), command)


def _local_actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    runner = os.environ.get("GITHUB_ACTOR") or os.environ.get("CI_JOB_ID")
    return f"{user} ({'github:' + runner if os.environ.get('GITHUB_ACTOR') else runner})" if runner else user
