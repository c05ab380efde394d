"""Authenticated ownership markers and the source an identity is bound to (review H2, H4).

A marker (workload, environment, owner, source, digest) is written as tags or a
description, which principals with ordinary rights can write too. It is believed only with
a MAC over the marker *and* the identity it sits on (provider, target, name and the cloud's
immutable id), keyed by the signing key the tool keeps in the cloud's own secret store
(created by ``workload-ids bootstrap --apply``). A marker copied onto another identity, or
edited, fails the check; so does a MAC copied from another identity.

The source says where an identity is declared: ``team:NAME`` when the config's ``teams``
claims the manifest's path, else that path relative to the config's folder. ``apply``
refuses to change an existing identity's owner or source unless the platform team
approved the move (``guardrails.approvedTransfers``) or cleanup made it.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import Diagnostic, UserError
from .model import Marker
from .signing import MAC_LENGTH, MARKER, SigningKey

if TYPE_CHECKING:
    from .config import Config
    from .manifest import LoadedWorkload

# Where bootstrap keeps the signing key: beside the key-mode secrets on AWS (the tool's
# ``workload-ids/`` namespace, which no ``{environment}/{name}`` secret can take: it has one
# slash fewer); GCP Secret Manager ids and Key Vault names allow no ``/``.
AWS_KEY_SECRET = "workload-ids/signing-key"  # nosec B105: the secret's name, not its value
KEY_SECRET = "workload-ids-signing-key"  # nosec B105: the secret's name, not its value

NOT_AUTHENTICATED = ("its marker is not authenticated (no valid workload-ids:mac; one made before "
                     "markers were signed gets its MAC at its next apply)")


class NoSigningKey(UserError):
    """The target has no signing key: nothing can be marked or believed there."""

    def __init__(self, where: str) -> None:
        self.where = where
        super().__init__(f"no signing key at {where}: run `workload-ids bootstrap --apply` "
                         "(for this provider and target) to create it; nothing was changed")


def sign(key: SigningKey, provider: str, target: str, name: str, immutable_id: str, marker: Marker,
         length: int = MAC_LENGTH) -> str:
    """The MAC that makes ``marker`` on this identity believable."""
    return key.mac(MARKER, marker.fields(provider, target, name, immutable_id), length)


def check(key: SigningKey, provider: str, target: str, name: str, immutable_id: str, marker: Marker,
          mac: str | None, length: int = MAC_LENGTH) -> str | None:
    """None when ``mac`` authenticates ``marker`` on this identity, else the reason to
    report it as forged."""
    if not immutable_id:
        return NOT_AUTHENTICATED
    if key.verify(MARKER, marker.fields(provider, target, name, immutable_id), mac, length):
        return None
    return NOT_AUTHENTICATED


class KeyCache:
    """The signing key of each target, read once per run (``read`` is one call through
    the seam; it returns None when the target has none) and shared between threads."""

    def __init__(self, read: Callable[[str], str | None], where: Callable[[str], str]) -> None:
        self._read = read
        self._where = where
        self._keys: dict[str, SigningKey] = {}
        self._lock = threading.Lock()

    def get(self, target: str) -> SigningKey:
        """The key of ``target``; raises :class:`NoSigningKey` when it has none."""
        with self._lock:
            cached = self._keys.get(target)
        if cached is not None:
            return cached
        where = self._where(target)
        text = self._read(target)
        if text is None:
            raise NoSigningKey(where)
        try:
            key = SigningKey.from_stored(text, where)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        with self._lock:
            return self._keys.setdefault(target, key)


# Tag values (AWS, Azure) and the description's space-separated fields (GCP) take letters,
# digits and _.:/=+-@ ; anything else in a path is written as '_'.
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:/=+@-]")
SOURCE_MAX = 200


def _glob(pattern: str) -> re.Pattern[str]:
    """``**`` any number of folders, ``*`` and ``?`` within one name."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


@functools.lru_cache(maxsize=1024)
def _base_of_folder(folder: str, config_base: str, has_config: bool) -> Path:
    """What sources are relative to: the config's folder when the manifest is inside it;
    else the manifest's git work tree (a config kept outside the repository, as CI should,
    or none at all: the source must not depend on where either sits or the command runs);
    else the config's folder (or the working directory) after all. Per folder, not per
    manifest."""
    base = Path(config_base).resolve()
    absolute = Path(folder)
    if has_config and absolute.is_relative_to(base):
        return base
    for parent in (absolute, *absolute.parents):
        if (parent / ".git").exists():
            return parent
    return base


@functools.lru_cache(maxsize=1024)
def _real_folder(folder: str) -> str:
    return os.path.realpath(folder)


@functools.lru_cache(maxsize=1024)
def _links_in(folder: str) -> frozenset[str]:
    """The names of the symbolic links in ``folder``: one listing per folder and run."""
    try:
        with os.scandir(folder) as entries:
            return frozenset(e.name for e in entries if e.is_symlink())
    except OSError:
        return frozenset()


@functools.lru_cache(maxsize=1)
def _cwd() -> str:
    return os.getcwd()


_scopes = 0  # runs inside folders_resolved_once()
_scopes_lock = threading.Lock()


@contextmanager
def folders_resolved_once() -> Iterator[None]:
    """Within: each folder is listed and resolved once, the working directory read once,
    and the answers dropped when the last run ends (each run sees the file system as it
    starts)."""
    global _scopes
    with _scopes_lock:
        _scopes += 1
    try:
        yield
    finally:
        with _scopes_lock:
            _scopes -= 1
            if not _scopes:
                for cached in (_base_of_folder, _real_folder, _links_in, _cwd):
                    cached.cache_clear()


def _resolved(path: str) -> str:
    """``os.path.realpath(path)``; inside :func:`folders_resolved_once` without a system
    call per manifest: a fleet plan checks its manifests while its reading threads parse
    the accounts' answers, and a call that releases the interpreter's lock waits up to
    its switch interval to get it back."""
    if not _scopes:
        return os.path.realpath(path)
    absolute = os.path.normpath(path if os.path.isabs(path) else os.path.join(_cwd(), path))
    folder, name = os.path.split(absolute)
    if name in _links_in(folder):
        return os.path.realpath(absolute)
    return os.path.join(_real_folder(folder), name)


def relative_path(path: str, config: Config) -> str:
    """The manifest's path relative to the config's folder, ``/``-separated."""
    absolute = _resolved(path)
    folder = os.path.dirname(absolute)
    base = str(_base_of_folder(folder, str(config.base), config.path is not None) if _scopes
               else _base_of_folder.__wrapped__(folder, str(config.base), config.path is not None))
    if absolute.startswith(base.rstrip(os.sep) + os.sep):
        return Path(absolute[len(base.rstrip(os.sep)) + 1:]).as_posix()
    return Path(os.path.relpath(absolute, base)).as_posix()


def teams_of(rel: str, config: Config) -> list[str]:
    """The teams whose ``manifests`` patterns match ``rel``."""
    return sorted(name for name, team in config.teams.items()
                  if any(_glob(p).fullmatch(rel) for p in team.manifests))


def source_of(lw: LoadedWorkload, config: Config) -> tuple[str, list[Diagnostic]]:
    """The source a workload's identity is bound to, and any problem deciding it (a
    manifest two teams claim)."""
    rel = relative_path(lw.source.path, config)
    teams = teams_of(rel, config)
    if len(teams) > 1:
        where = config.position("teams") or lw.position("metadata")
        return "", [Diagnostic(lw.position("metadata"),
                               f"manifest {rel} matches the manifests of teams {', '.join(teams)} "
                               f"in the config ({where}); a manifest belongs to one team: narrow "
                               "the patterns")]
    if teams:
        return f"team:{teams[0]}", []
    text = _UNSAFE.sub("_", rel)
    if len(text) > SOURCE_MAX:
        # The path stays recognisable; the digest keeps two long paths apart.
        import hashlib
        text = text[:SOURCE_MAX - 17] + "~" + hashlib.sha256(rel.encode()).hexdigest()[:16]
    return text, []


def source_move_approved(config: Config, workload: str, owner_from: str, owner_to: str,
                         source_from: str, source_to: str) -> bool:
    """Whether ``guardrails.approvedTransfers`` approves moving this workload's identity
    from (owner, source) to (owner, source)."""
    return any(t.workload == workload and t.from_ == owner_from and t.to == owner_to
               and t.fromSource == source_from and t.toSource == source_to
               for t in config.guardrails.approvedTransfers)
