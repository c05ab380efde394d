"""One workload's keys, advanced by whatever is due: the rules in :mod:`workload_ids.keys`,
in the order :meth:`KeyLifecycle.advance` applies them, over the cloud's
:class:`~workload_ids.providers.interface.KeyBackend`, a secret store and the workload lock."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .. import clock
from ..audit import Auditor
from ..durations import format_duration, parse_duration
from ..errors import UserError, WorkloadIdsError
from ..keys.lease import HeldLock, LockBusy, hold
from ..model import (
    JOURNAL_TAG,
    RETIRED_TAG,
    DesiredIdentity,
    IssuedKey,
    KeyInfo,
    RotationPolicy,
    SecretValue,
    StoredSecret,
)
from ..providers.interface import Backends, Holder, KeyBackend, KeyLock, SecretStore
from .journal import Journal, decode_retired, encode_retired


class ForeignKeyError(UserError):
    """A key on our identity that we did not issue."""


class VerificationError(WorkloadIdsError):
    """A new key did not work within its time budget."""


@dataclass
class KeyReport:
    """What rotate did for one workload and what comes next. Key ids only, never secrets."""

    workload: str
    identity: str
    secret: str
    actions: list[str] = field(default_factory=list)
    keys: list[dict[str, Any]] = field(default_factory=list)
    next_step: str = ""
    next_at: datetime | None = None
    error: str | None = None
    refused: bool = False
    busy: bool = False  # another run held the workload's lock: nothing changed, retry

    def as_json(self) -> dict[str, Any]:
        """The workload's key report as ``keys --format json`` prints it."""
        return {"workload": self.workload, "identity": self.identity, "secret": self.secret,
                "actions": self.actions, "keys": self.keys, "nextStep": self.next_step,
                "nextAt": clock.format_time(self.next_at) if self.next_at else None,
                "error": self.error, "refused": self.refused, "busy": self.busy}


@dataclass
class KeyState:
    """What the cloud and the store hold for one workload's keys."""

    keys: list[KeyInfo]
    stored: StoredSecret

    @property
    def journal(self) -> Journal | None:
        """The rotation journal in the store's tags; None when no rotation is in progress."""
        text = self.stored.tags.get(JOURNAL_TAG)
        return Journal.decode(text) if text else None

    @property
    def retired(self) -> dict[str, datetime]:
        """When each retired key's grace period started, by key id (empty when none is retired)."""
        return decode_retired(self.stored.tags.get(RETIRED_TAG, ""))

    def key(self, key_id: str | None) -> KeyInfo | None:
        """A key, dated by when we issued it (our clock) where the store knows it."""
        found = next((k for k in self.keys if k.key_id == key_id), None)
        if found is None:
            return None
        issued = self.stored.issued_at.get(found.key_id)
        return KeyInfo(found.key_id, found.status, issued) if issued else found

    def dated(self) -> list[KeyInfo]:
        """Every key on the identity, dated by our issue time where the store knows it."""
        return [k for k in (self.key(k.key_id) for k in self.keys) if k is not None]

    @property
    def current(self) -> KeyInfo | None:
        """The key the store's current version holds; None before the first key or if it left the cloud."""
        return self.key(self.stored.current_key())


class KeyLifecycle:
    """Advances one workload's keys by whatever is due; see the module docstring."""

    def __init__(self, backend: KeyBackend, store: SecretStore, desired: DesiredIdentity,
                 policy: RotationPolicy, secret: str, *, sleep: Any = time.sleep,
                 auditor: Auditor | None = None, lock_factory: Callable[[], KeyLock] | None = None,
                 holder: Holder | None = None, lock_wait: timedelta = timedelta(0),
                 prefetched: StoredSecret | None = None) -> None:
        self.backend = backend
        self.store = store
        self.desired = desired
        self.policy = policy
        self.secret = secret
        self._sleep = sleep
        self.auditor = auditor or Auditor(None, "rotate")  # records nothing
        # The store's record from a batched read of the run, good for the first read only.
        self.prefetched = prefetched
        self.report = KeyReport(workload=desired.workload.label, identity=desired.name, secret=secret)
        # The workload lock, built on first use: runs with nothing due never need it.
        self.lock_factory = lock_factory
        self.holder = holder or Holder.this_process("rotate")
        self.lock_wait = lock_wait
        self._lock: KeyLock | None = None
        self._held: HeldLock | None = None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the workload's lock (see :mod:`.lease`) for the block."""
        if self._lock is None:
            if self.lock_factory is None:
                raise WorkloadIdsError(f"{self.desired.workload.label}: no workload lock is configured")
            self._lock = self.lock_factory()
        try:
            with hold(self._lock, self.secret, self.holder, self.desired.tags,
                      workload=self.desired.workload.label, wait=self.lock_wait,
                      sleep=self._sleep) as held:
                self._held = held
                yield
        finally:
            self._held = None

    def _failed(self, exc: WorkloadIdsError) -> None:
        """Report why this workload stopped: refused, busy, or an error."""
        self.report.refused = isinstance(exc, ForeignKeyError)
        self.report.busy = isinstance(exc, LockBusy)
        self.report.error = str(exc) if self.report.refused or self.report.busy else exc.diagnostics()

    def _check_lock(self) -> None:
        if self._held is not None:
            self._held.check(self.desired.workload.label)

    def _act(self, text: str) -> None:
        """Report an action, and record it in the audit log (key ids only)."""
        self.report.actions.append(text)
        w = self.desired.workload
        self.auditor.record(workload=w.label, provider=w.provider, target=w.target,
                            identity=self.desired.name, action=f"key-{text.split()[0]}",
                            after=text, detail={"secret": self.secret})

    def read(self) -> KeyState:
        """Read the keys and the secret; the prefetched secret serves only the first read."""
        stored = self.prefetched if self.prefetched is not None else self.store.describe(self.secret)
        self.prefetched = None  # good for the first read only; later reads see our changes
        return KeyState(keys=self.backend.list_keys(self.desired), stored=stored)

    # -- steps ---------------------------------------------------------------------------

    def recover(self, state: KeyState) -> KeyState:
        """Finish or undo what a dead run left behind (rule 1)."""
        journal = state.journal
        if journal is None:
            return state
        issued = state.stored.issued()
        for key in state.keys:
            # Not stored, and not there when the entry was written: the interrupted run's.
            if key.key_id not in issued and key.key_id not in journal.existing:
                self._check_lock()
                self.backend.delete_key(self.desired, key.key_id)
                self._act(f"deleted {key.key_id}: created by an interrupted run and "
                                           "never stored")
        state = self.read()
        current = state.stored.current_key()
        if current and current != journal.previous and state.key(current):
            self._verify(IssuedKey(current, self.store.read_key(self.secret, current), clock.now()))
            self._act(f"verified {current} (stored by an interrupted run)")
        self.store.remove_tags(self.secret, [JOURNAL_TAG])
        self._act("cleared the rotation journal")
        return self.read()

    def refuse_foreign(self, state: KeyState) -> None:
        """Rule 2."""
        issued = state.stored.issued()
        foreign = [k.key_id for k in state.keys if k.key_id not in issued]
        if foreign:
            raise ForeignKeyError(
                f"{self.desired.workload.label}: key(s) {', '.join(foreign)} on IAM user "
                f"{self.desired.name} were not issued by workload-ids (secret {self.secret} does not "
                "hold them); nothing was changed for this workload. Delete the key if it is "
                "unknown, or, if a service depends on it, rotate it away by hand first")

    def issue(self, state: KeyState, *, emergency: bool) -> KeyState:
        """Rule 3: journal, create, store, verify, clear. An existing secret must prove it
        is ours before anything else happens (a pre-created one could hand the key out)."""
        if state.stored.exists:
            self.store.adopt(self.secret, self.desired.tags, state.stored)
        state = self._make_room(state, emergency=emergency)
        previous = state.stored.current_key()
        journal = {JOURNAL_TAG: Journal(clock.now(), previous,
                                        tuple(k.key_id for k in state.keys)).encode()}
        self._check_lock()
        if state.stored.exists:
            self.store.set_tags(self.secret, journal)
        else:
            self.store.ensure(self.secret, {**self.desired.tags, **journal})
        self._check_lock()
        key = self.backend.create_key(self.desired)
        created = key.issued
        self.store.put_key(self.secret, key, self.backend.secret_document(key))
        self._act(f"issued {key.key_id} into {self.secret}")
        self._verify(key)
        self._act(f"verified {key.key_id}")
        self.store.remove_tags(self.secret, [JOURNAL_TAG])
        # The new state is known; reading it back would cost two calls per workload.
        # Stage names differ by store (Secrets Manager's AWSCURRENT, ours "current" elsewhere).
        versions = {k: tuple(s for s in stages
                             if s not in ("AWSCURRENT", "AWSPREVIOUS", "current", "previous"))
                    for k, stages in state.stored.versions.items()}
        if previous:
            versions[previous] = (*versions.get(previous, ()), "AWSPREVIOUS")
        versions[key.key_id] = ("AWSCURRENT",)
        tags = {k: v for k, v in state.stored.tags.items() if k != JOURNAL_TAG}
        stored = StoredSecret(self.secret, True, tags, versions,
                              {**state.stored.issued_at, key.key_id: created})
        return KeyState([*state.keys, KeyInfo(key.key_id, "active", created)], stored)

    def _make_room(self, state: KeyState, *, emergency: bool) -> KeyState:
        if len(state.keys) < self.backend.key_limit:
            return state
        current = state.stored.current_key()
        now = clock.now()
        retired = state.retired
        # Oldest first; only keys we issued (foreign keys were refused before).
        for key in sorted(state.dated(), key=lambda k: k.created):
            if len(state.keys) < self.backend.key_limit:
                return state
            if key.key_id == current:
                continue
            due = key.status == "inactive" and key.key_id in retired and \
                now >= retired[key.key_id] + self.policy.grace
            if not (emergency or due):
                continue
            if key.status == "active":
                self.backend.deactivate_key(self.desired, key.key_id)
            self.backend.delete_key(self.desired, key.key_id)
            self._act(f"deleted {key.key_id} to make room for a new key"
                                       + (" (emergency)" if emergency and not due else ""))
            state = KeyState([k for k in state.keys if k.key_id != key.key_id], state.stored)
        if len(state.keys) < self.backend.key_limit:
            return state
        raise _Waiting(f"the identity holds {len(state.keys)} keys, the limit is "
                       f"{self.backend.key_limit}; the previous key is still in its overlap or grace "
                       "period, so the new key waits")

    def _verify(self, key: IssuedKey) -> None:
        """Consecutive successes inside a time budget: new keys take seconds to work."""
        needed = self.policy.verify_successes
        budget = self.policy.verify_timeout.total_seconds()
        interval = self.policy.verify_interval.total_seconds()
        started = time.monotonic()
        slept = 0.0
        streak = 0
        attempts = 0
        # With no pause between attempts the budget is counted in attempts instead.
        most = needed + (int(budget / interval) if interval > 0 else needed * 4)
        while True:
            attempts += 1
            streak = streak + 1 if self.backend.verify_key(self.desired, key) else 0
            if streak >= needed:
                return
            # Elapsed counts the waits we asked for too, so a replaced sleep (tests)
            # still runs out of budget.
            elapsed = max(time.monotonic() - started, slept)
            if elapsed + interval > budget or attempts >= most:
                raise VerificationError(
                    f"{self.desired.workload.label}: new key {key.key_id} did not work "
                    f"{needed} times in a row within {format_duration(self.policy.verify_timeout)} "
                    f"({attempts} attempts). It is stored as current; the previous key stays "
                    "active. Rerun rotate to verify again")
            self._sleep(interval)
            slept += interval

    def retire_and_delete(self, state: KeyState, *, emergency: bool) -> KeyState:
        """Rules 4 and 5."""
        current = state.current
        if current is None:
            return state
        now = clock.now()
        retired = state.retired
        changed = False
        seen_in_use: bool | None = None
        for key in state.dated():
            if key.key_id == current.key_id:
                continue
            if key.status == "active":
                due = emergency or now >= current.created + self.policy.overlap
                if not due and self.policy.retire_on_use:
                    if seen_in_use is None:
                        used = self.backend.key_last_used(self.desired, current.key_id)
                        # The cloud's own dates on both sides (the clock may be overridden).
                        cloud = next((k.created for k in state.keys if k.key_id == current.key_id),
                                     current.created)
                        seen_in_use = used is not None and used >= cloud
                    due = seen_in_use
                if not due:
                    continue
                # Mark first: a run that dies between the two leaves a mark on an active
                # key, which the next run deactivates; never an inactive key without a mark.
                retired[key.key_id] = now
                self._check_lock()
                self.store.set_tags(self.secret, {RETIRED_TAG: encode_retired(retired)})
                self.backend.deactivate_key(self.desired, key.key_id)
                self._act(f"deactivated {key.key_id}" +
                                           (" (emergency)" if emergency else ""))
                changed = True
            elif key.key_id not in retired:
                retired[key.key_id] = now
                self.store.set_tags(self.secret, {RETIRED_TAG: encode_retired(retired)})
                changed = True
            elif now >= retired[key.key_id] + self.policy.grace:
                self._check_lock()
                self.backend.delete_key(self.desired, key.key_id)
                del retired[key.key_id]
                if retired:
                    self.store.set_tags(self.secret, {RETIRED_TAG: encode_retired(retired)})
                else:
                    self.store.remove_tags(self.secret, [RETIRED_TAG])
                self._act(f"deleted {key.key_id} (grace period over)")
                changed = True
        return self.read() if changed else state

    # -- driver ----------------------------------------------------------------------------

    def advance(self, *, emergency: bool = False, issue_only: bool = False) -> KeyReport:
        """Move this workload forward by whatever is due (``issue_only``: just make sure a
        verified key exists, as apply does)."""
        try:
            stored = self.prefetched if self.prefetched is not None else self.store.describe(self.secret)
            self.prefetched = None
            if not self._due_by_store(stored, emergency=emergency, issue_only=issue_only):
                state = KeyState(keys=self.backend.list_keys(self.desired), stored=stored)
                if not self._due(state, emergency=emergency, issue_only=issue_only):
                    self._describe(state)
                    return self.report
            with self._locked():
                state = self._advance(self._read_locked(stored), emergency=emergency,
                                      issue_only=issue_only)
            self._describe(state)
        except _Waiting as wait:
            self.report.next_step = str(wait)
            self._describe(self.read(), keep_step=True)
        except WorkloadIdsError as exc:
            self._failed(exc)
        return self.report

    def recover_now(self) -> KeyReport:
        """``workload-ids recover``: finish or undo what a dead run left, under the lock."""
        try:
            state = self.read()
            if state.journal is not None:
                with self._locked():
                    state = self.recover(self.read())
            self._describe(state)
        except WorkloadIdsError as exc:
            self._failed(exc)
        return self.report

    def _read_locked(self, before: StoredSecret) -> KeyState:
        """The state under the lock. The keys are read again; the store only when a key
        it did not hold appears. Another run that changed this workload since ``before``
        was read either issued a key (seen here, so the store is read again) or only
        retired or deleted one, whose marks matter only to keys still listed: a stale
        mark can delay a deletion, never hasten one."""
        keys = self.backend.list_keys(self.desired)
        if before.exists and all(k.key_id in before.issued() for k in keys):
            return KeyState(keys=keys, stored=before)
        return KeyState(keys=keys, stored=self.store.describe(self.secret))

    def _due_by_store(self, stored: StoredSecret, *, emergency: bool, issue_only: bool) -> bool:
        """Due on the store's metadata alone (then the keys are read once, under the lock)."""
        current = stored.current_key()
        if stored.tags.get(JOURNAL_TAG) or current is None or emergency:
            return True
        issued = stored.issued_at.get(current)
        return not issue_only and issued is not None and clock.now() >= issued + self.policy.max_age

    def _due(self, state: KeyState, *, emergency: bool, issue_only: bool) -> bool:
        """Whether this run may change anything (then it takes the lock). A key the store
        does not hold may be another run's, not yet stored: decided under the lock."""
        current = state.current
        if state.journal is not None or current is None or emergency:
            return True
        if any(k.key_id not in state.stored.issued() for k in state.keys):
            return True
        if issue_only:
            return False
        return len(state.keys) > 1 or clock.now() >= current.created + self.policy.max_age

    def _advance(self, state: KeyState, *, emergency: bool, issue_only: bool) -> KeyState:
        state = self.recover(state)
        self.refuse_foreign(state)
        if not issue_only and not emergency:
            # Retire and delete first: that frees the room a due rotation may need.
            state = self.retire_and_delete(state, emergency=False)
        current = state.current
        now = clock.now()
        if current is None or (not issue_only and (
                emergency or now >= current.created + self.policy.max_age)):
            state = self.issue(state, emergency=emergency)
        if emergency:
            state = self.retire_and_delete(state, emergency=True)
        return state

    def _describe(self, state: KeyState, *, keep_step: bool = False) -> None:
        now = clock.now()
        current = state.stored.current_key()
        retired = state.retired
        self.report.keys = [{
            "id": k.key_id, "status": k.status,
            "role": "current" if k.key_id == current else ("retired" if k.key_id in retired
                                                          else "previous"),
            "created": clock.format_time(k.created),
            "ageDays": round((now - k.created).total_seconds() / 86400, 1),
        } for k in state.dated()]
        if keep_step:
            return
        cur = state.current
        others = [k for k in state.dated() if cur is None or k.key_id != cur.key_id]
        if cur is None:
            self.report.next_step, self.report.next_at = "issue a key", now
        elif any(k.status == "inactive" for k in others):
            k = next(k for k in others if k.status == "inactive")
            start = retired.get(k.key_id, now)
            self.report.next_step = f"delete {k.key_id}"
            self.report.next_at = start + self.policy.grace
        elif others:
            self.report.next_step = f"deactivate {others[0].key_id} (or sooner, once {cur.key_id} is in use)"
            self.report.next_at = cur.created + self.policy.overlap
        else:
            self.report.next_step = f"rotate {cur.key_id}"
            self.report.next_at = cur.created + self.policy.max_age


def lifecycle(desired: DesiredIdentity, cloud: Backends, auditor: Auditor | None = None, *,
              command: str = "rotate", prefetched: StoredSecret | None = None) -> KeyLifecycle:
    """The key lifecycle of a key-mode workload, over ``cloud``'s key backend, its secret
    store in the workload's target and the workload lock that goes with it."""
    w = desired.workload
    if cloud.keys is None:
        raise UserError(f"{w.label}: key mode on {cloud.name} is not available in this version")
    policy = w.rotation_policy
    assert policy is not None  # compiled for every key-mode workload
    return KeyLifecycle(cloud.keys, cloud.store_for(w.target), desired, policy, w.secret_name,
                        sleep=cloud.seam.sleep, auditor=auditor,
                        lock_factory=lambda: cloud.lock_for(w.target),
                        holder=Holder.this_process(command),
                        lock_wait=parse_duration(cloud.config.credentials.lockTimeout),
                        prefetched=prefetched)


class _Waiting(Exception):
    """Nothing can be done yet (the key limit is reached within a grace period)."""


__all__ = ["ForeignKeyError", "IssuedKey", "KeyLifecycle", "KeyReport", "KeyState", "SecretValue",
           "VerificationError", "lifecycle"]
