"""Owners' attestations: "PERSON, a member of the owning group, confirms this workload
still needs its access", recorded in the audit trail and believed only when signed.

``workload-ids attest`` checks that the person is an active member of the group that
owns the workload (the owner in the identity's authenticated marker, as cleanup judges
it) in the owner directory, then writes one ``attest`` record per workload through the
auditor (the durable, signed sink when ``audit.sink`` is set). The record carries a MAC
made with the target's signing key (the key that authenticates markers, kept in the
cloud's own secret store), so whoever can write the audit file, or a manifest, cannot
make an attestation that is believed: ``review`` and cleanup check the MAC of every
attestation they read, and show a record that fails as not believed.

The person is a name the directory knows, given on the command line: the tool cannot
see who is typing. Who may run ``attest`` (with the tool's identity, which reads the
signing key) is what vouches for the typing; the record keeps both the person and the
local actor who ran it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import clock
from .errors import GuardrailError, UserError, WorkloadIdsError, one_line
from .signing import ATTESTATION

if TYPE_CHECKING:
    from .calls import CallSeam
    from .clouds import Clouds
    from .config import Config
    from .inventory import InventoryRow
    from .signing import SigningKey

ACTION = "attest"
# A note is a sentence for the next reviewer, not a document: long text in a record every
# reader of the trail loads (and in CI logs) is refused rather than cut silently.
NOTE_MAX = 500
PERSON_MAX = 128
_MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True, slots=True)
class Attestation:
    """One attestation record read back from the audit trail, and whether it is believed."""

    provider: str
    target: str
    workload: str  # ENVIRONMENT/NAME
    identity: str
    owner: str
    by: str
    at: datetime | None
    note: str
    believed: bool
    problem: str | None = None  # why it is not believed

    @property
    def key(self) -> tuple[str, str, str]:
        """(provider, target, workload): what an attestation is about."""
        return (self.provider, self.target, self.workload)

    def as_json(self) -> dict[str, Any]:
        """The attestation as ``attest`` and ``review`` print it in JSON."""
        return {"provider": self.provider, "target": self.target, "workload": self.workload,
                "identity": self.identity, "owner": self.owner, "by": self.by,
                "at": clock.format_time(self.at) if self.at else None, "note": self.note,
                "believed": self.believed, "problem": self.problem}


@dataclass
class AttestResult:
    """What ``attest`` recorded."""

    attestations: list[Attestation]
    where: str  # the audit store the records went to
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The result as ``attest --output json`` prints it."""
        return {"attested": [a.as_json() for a in self.attestations], "auditTrail": self.where,
                "notes": self.notes, "clock": clock.notice()}


def escape_note(note: str | None) -> str:
    """The note as stored: at most :data:`NOTE_MAX` characters as typed, on one line with
    control characters escaped (a note starting a line with ``::add-mask::`` would be a
    command to a CI runner wherever the record is printed)."""
    if note is None:
        return ""
    if len(note) > NOTE_MAX:
        raise UserError(f"--note is {len(note)} characters; an attestation note holds at most "
                        f"{NOTE_MAX}: say why the access is still needed in a sentence or two, and "
                        "link to anything longer (nothing was recorded)")
    return one_line(note.strip())


def _check_person(person: str) -> str:
    person = person.strip()
    if not person or len(person) > PERSON_MAX or one_line(person) != person or " " in person:
        raise UserError(f"--by {one_line(person)!r} is not a user name: give the attesting person's "
                        f"id in the owner directory (one word, at most {PERSON_MAX} characters); "
                        "nothing was recorded")
    return person


def signed_fields(provider: str, target: str, identity: str, workload: str, owner: str, by: str,
                  note: str, at: str) -> dict[str, str]:
    """What an attestation's MAC covers: every field a reader acts on."""
    return {"provider": provider, "target": target, "identity": identity, "workload": workload,
            "owner": owner, "by": by, "note": note, "at": at}


def attest(workloads: Sequence[str], person: str, config: Config, seam: CallSeam, *,
           note: str | None = None) -> AttestResult:
    """Record ``person``'s attestation of each workload (``ENVIRONMENT/NAME`` or a manifest
    path). Everything is checked before anything is recorded: a workload that does not
    exist raises :class:`UserError` (with the nearest name); a person who is not an active
    member of the owning group raises :class:`GuardrailError` (exit 3)."""
    from .audit import auditor_for, open_store
    from .clouds import Clouds
    from .owners import open_directory
    from .owners.interface import membership
    person = _check_person(person)
    text = escape_note(note)
    if not workloads:
        raise UserError("name at least one workload to attest (ENVIRONMENT/NAME or its manifest)")
    directory = open_directory(config)
    if directory is None:
        raise UserError("attest checks the person against the owner directory, and the config "
                        "names none; add owners: (a file or SCIM) to workload-ids.yaml, then "
                        "rerun (nothing was recorded)")
    store = open_store(config, seam)
    if store is None:
        raise UserError("attest records into the audit trail, and the config keeps none; set "
                        "audit.path or audit.sink in workload-ids.yaml, then rerun (nothing was "
                        "recorded)")
    clouds = Clouds(config, seam)
    rows = _resolve(workloads, config, seam, clouds)
    refusals = []
    for owner in sorted({r.owner for r in rows}):
        answer = membership(directory, owner, person)
        if answer.refused:
            names = ", ".join(sorted(f"{r.environment}/{r.workload}" for r in rows if r.owner == owner))
            refusals.append(f"{names} (owned by {owner}): {answer.refused}")
    if refusals:
        raise GuardrailError(f"{person} may not attest: " + "; ".join(refusals)
                             + ". Nothing was recorded")
    # Every key before the first record: a target without one stops the run with nothing written.
    keys = {(r.provider, r.target): clouds[r.provider].identities.signing_key(r.target)
            for r in rows}
    auditor = auditor_for(config, "attest", seam)
    out: list[Attestation] = []
    for r in rows:
        at = clock.now()
        label = f"{r.environment}/{r.workload}"
        key = keys[(r.provider, r.target)]
        fields = signed_fields(r.provider, r.target, r.identity, label, r.owner, person, text,
                               clock.format_time(at))
        auditor.record(workload=label, provider=r.provider, target=r.target, identity=r.identity,
                       action=ACTION, after={
                           "owner": r.owner, "by": person, "note": text, "at": fields["at"],
                           "keyId": key.key_id, "mac": key.mac(ATTESTATION, fields)})
        out.append(Attestation(r.provider, r.target, label, r.identity, r.owner, person,
                               clock.parse_time(fields["at"]), text, True))
    return AttestResult(out, store.where)


def _resolve(workloads: Sequence[str], config: Config, seam: CallSeam,
             clouds: Clouds) -> list[InventoryRow]:
    """The managed identity of each named workload, read from the cloud (its marker says
    who owns it); every name that matches none is reported at once, with the nearest."""
    import difflib

    from .inventory import inventory_report
    paths: list[str | Path] = [w for w in workloads if Path(w).exists()]
    names = [w for w in workloads if not Path(w).exists()]
    problems: list[str] = []
    for name in names:
        if name.endswith(_MANIFEST_SUFFIXES):
            problems.append(f"{one_line(name)}: no such manifest file")
    declared: list[tuple[str, str, str, str]] = []  # provider, target, label, manifest
    if paths:
        from .validate import validate
        checked = validate(paths, config)
        checked.raise_for_errors()
        declared = [(c.provider, c.target, c.label, c.source.path) for c in checked.compiled]
    report = inventory_report(paths, config, seam, clouds=clouds)
    mine = [r for r in report.rows if r.forged is None]
    forged = {(r.provider, r.target, f"{r.environment}/{r.workload}"): r.forged
              for r in report.rows if r.forged is not None}
    chosen: dict[tuple[str, str, str], InventoryRow] = {}
    for provider, target, label, manifest in declared:
        found = [r for r in mine if (r.provider, r.target, f"{r.environment}/{r.workload}")
                 == (provider, target, label)]
        if found:
            chosen.update({(r.provider, r.target, r.identity): r for r in found})
        elif (provider, target, label) in forged:
            problems.append(f"{label} ({manifest}): its identity in {provider}:{target} "
                            f"{forged[(provider, target, label)]}; it is not ours to attest")
        else:
            problems.append(f"{label} ({manifest}) has no identity in {provider}:{target}: run "
                            "`workload-ids apply` for it first, then attest")
    labels = sorted({f"{r.environment}/{r.workload}" for r in mine})
    for name in names:
        if name.endswith(_MANIFEST_SUFFIXES):
            continue
        found = [r for r in mine if name == f"{r.environment}/{r.workload}"]
        if not found:
            close = difflib.get_close_matches(name, labels, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(f"no workload {one_line(name)!r} is managed in the targets read "
                            f"({len(report.scopes.read)}){hint} Name it ENVIRONMENT/NAME as "
                            "`workload-ids inventory` lists it, or give its manifest")
        chosen.update({(r.provider, r.target, r.identity): r for r in found})
    if problems:
        raise UserError("cannot attest: " + "; ".join(problems) + " (nothing was recorded)")
    return [chosen[k] for k in sorted(chosen)]


def read_attestations(config: Config, clouds: Clouds,
                      records: Iterable[dict[str, Any]] | None = None) -> list[Attestation]:
    """Every ``attest`` record of the config's audit trail, in order, each checked: its
    MAC against the signing key of the target it names. A record without a valid MAC (one
    written by hand into the file, copied from another workload, or edited) comes back
    with ``believed`` False and the reason; a key that cannot be read makes the records of
    that target unbelieved too, never believed."""
    from .audit import open_store
    if records is None:
        store = open_store(config, clouds.seam)
        if store is None:
            return []
        records = store.records()
    keys: dict[tuple[str, str], SigningKey | str] = {}
    out: list[Attestation] = []
    for r in records:
        if r.get("action") != ACTION or r.get("result", "ok") != "ok":
            continue
        out.append(_checked(r, clouds, keys))
    return out


def _checked(r: dict[str, Any], clouds: Clouds,
             keys: dict[tuple[str, str], SigningKey | str]) -> Attestation:
    after = r.get("after") if isinstance(r.get("after"), dict) else {}
    assert isinstance(after, dict)

    def text(value: Any) -> str:
        return value if isinstance(value, str) else ""
    provider, target = text(r.get("provider")), text(r.get("target"))
    identity, workload = text(r.get("identity")), text(r.get("workload"))
    owner, by, note, at_text = (text(after.get(k)) for k in ("owner", "by", "note", "at"))
    try:
        at = clock.parse_time(at_text) if at_text else None
    except clock.ClockError:
        at = None

    def result(problem: str | None) -> Attestation:
        # What is shown of an unbelieved record is escaped like the note: anyone wrote it.
        return Attestation(provider, target, one_line(workload), one_line(identity), one_line(owner),
                           one_line(by), at, one_line(note), problem is None, problem)
    if provider not in ("aws", "gcp", "azure") or not target or at is None:
        return result("not an attestation workload-ids wrote (fields missing or malformed)")
    mac = after.get("mac")
    if not isinstance(mac, str) or not mac:
        return result("unsigned: it carries no attestation MAC, so anyone who can write the "
                      "audit trail could have written it")
    if (provider, target) not in keys:
        try:
            keys[(provider, target)] = clouds[provider].identities.signing_key(target)
        except WorkloadIdsError as exc:
            keys[(provider, target)] = f"the signing key of {provider}:{target} cannot be read ({exc})"
        except Exception as exc:  # no credentials for that cloud at all: a record anyone can
            # append must not stop review or cleanup; it is only not believed.
            keys[(provider, target)] = (f"the signing key of {provider}:{target} cannot be read "
                                        f"({type(exc).__name__})")
    key = keys[(provider, target)]
    if isinstance(key, str):
        return result(f"cannot be checked: {key}")
    fields = signed_fields(provider, target, identity, workload, owner, by, note, at_text)
    if not key.verify(ATTESTATION, fields, mac):
        return result("bad signature: not made with the signing key of "
                      f"{provider}:{target}; it was written or edited by someone else")
    return result(None)


def latest(attestations: Iterable[Attestation]) -> dict[tuple[str, str, str], Attestation]:
    """The last believed attestation of each (provider, target, workload), by time."""
    out: dict[tuple[str, str, str], Attestation] = {}
    for a in attestations:
        if not a.believed or a.at is None:
            continue
        held = out.get(a.key)
        if held is None or (held.at is not None and a.at >= held.at):
            out[a.key] = a
    return out


__all__ = ["ACTION", "NOTE_MAX", "AttestResult", "Attestation", "attest", "escape_note", "latest",
           "read_attestations", "signed_fields"]
