"""Joiner and mover on GCP: a service account per workload, custom roles per permission
set, project-policy bindings (plain or conditional), resource bindings, and the account's
own policy for Workload Identity Federation and for the deployers that may attach it to a
runtime (``attachedTo``: roles/iam.serviceAccountUser on this account only). Every call goes through the seam
(``GcpClients``); policy edits go through :mod:`.policies`.

The ownership marker lives in the service account's and each custom role's description
(service accounts have no labels), read by ``Marker.from_text`` before any change, and is
believed only with its MAC (``mac=``). A custom role whose MAC does not verify (its
description copied onto a role someone else made) is ``forged``: never updated, deleted,
unbound or bundled; apply re-marks one only at an id it wants itself (the workload's and
the permission set's), which it then converges to exactly the role it would create.
Project policy edits are read-modify-write with the etag, redone whole on a conflict, and
touch only our member's entries in bindings of our roles (or, for roles not ours, only
our own member: a workload holds exactly what its manifest grants).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ...calls import NOT_FOUND
from ...config import Config
from ...errors import CloudError, ConflictError, Diagnostic, UserError
from ...markers import check, sign
from ...model import (
    FORGED,
    IMMUTABLE_ID,
    UNAUTHENTICATED,
    Change,
    DesiredIdentity,
    Marker,
    ObservedIdentity,
)
from ...signing import SHORT_MAC_LENGTH, SigningKey
from ..interface import IdentityBackend, TransferCheck
from . import render
from .clients import ABORTED, ALREADY_EXISTS, FAILED_PRECONDITION, GcpClients
from .holdings import Holdings, desired_trust_rows, permission_pairs_held, service_accounts, trust_rows
from .policies import POLICY_ATTEMPTS, GcpPolicies, binding_key

# A custom role has no immutable id: its MAC binds the marker to the role's full name,
# which no other role holds while it exists (GCP keeps a deleted role's id 37 days more).
ROLE_ID = "custom-role"
# A role read's key (see _roles_of) when its marker's MAC does not verify.
ROLE_FORGED = "forged"

# A new service account can answer NOT_FOUND for a while (GCP propagates in seconds to
# minutes): it counts as there after this many successful reads in a row, as
# terraform-provider-google does, within a bounded wait.
VISIBLE_READS = 3
VISIBLE_WAIT_SECONDS = 180.0



def trust_diff(have: set[str], want: set[str]) -> dict[str, list[dict[str, str]]]:
    """Who may obtain credentials, added and removed, in words (the workload identity pool
    and the subject it vouches for), as an AWS plan shows its trust policy's changes."""
    def rows(members: set[str]) -> list[dict[str, str]]:
        out = []
        for member in sorted(members):
            name = member.removeprefix("principal://iam.googleapis.com/")
            pool, sep, subject = name.partition("/subject/")
            out.append({"principal": pool, "subject": subject} if sep else
                       {"principal": member, "subject": "*"})
        return out
    return {"added": rows(want - have), "removed": rows(have - want)}

def attachment_rows(workload: Any) -> list[dict[str, str]]:
    """The runtimes the manifest attaches the account to, in words, as plan rows: GCP
    holds no record of them (whoever may attach the account picks the runtime), so they
    show on a create, for the reviewer, and change nothing in the cloud after."""
    from ...model import AttachedTrust
    return [{"principal": t.describe(), "subject": "runs as the service account (attachedTo); "
             "deployed by " + (", ".join(t.deployers) or "whoever holds iam.serviceAccounts.actAs on it")}
            for t in workload.trust if isinstance(t, AttachedTrust)]


def deployer_diff(have: set[str], want: set[str]) -> dict[str, list[dict[str, str]]]:
    """Deployers added and removed, as "who may obtain credentials" rows: whoever may
    attach the account to a runtime may run code as it."""
    def rows(members: set[str]) -> list[dict[str, str]]:
        return [{"principal": m, "subject": f"may attach it to a runtime ({render.SERVICE_ACCOUNT_USER} "
                                            "on the service account)"} for m in sorted(members)]
    return {"added": rows(want - have), "removed": rows(have - want)}


def _deployers(bindings: Sequence[Mapping[str, Any]]) -> set[str]:
    return {str(m) for b in bindings if b["role"] == render.SERVICE_ACCOUNT_USER for m in b["members"]}


class GcpIdentities(IdentityBackend):
    """Service accounts with their custom roles and bindings (see the module docstring)."""

    def __init__(self, config: Config, clients: GcpClients, policies: GcpPolicies,
                 transfers: TransferCheck) -> None:
        self.config = config
        self.clients = clients
        self.seam = clients.seam
        self.policies = policies
        self.transfers = transfers
        self.prefix = config.gcp.namePrefix
        self.signing_keys = clients.signing_keys
        # project -> its policy's bindings as the last fleet read saw them (dead grants
        # are judged from it without another read).
        self._scope_bindings: dict[str, list[dict[str, Any]]] = {}
        # What adopted accounts hold (observe mode compares it whole), read once per project.
        self.holdings = Holdings(clients, policies, cache=True)
        # email -> unique id of the accounts this run created (their outputs); one writer each.
        self._made: dict[str, str] = {}
        # Each change kind's step: apply dispatches by this table (plan and apply are
        # written together, so every kind diff makes is here).
        self._steps: dict[str, Callable[[DesiredIdentity, ObservedIdentity | None], None]] = {
            "create": lambda desired, observed: self._create(desired),
            "update-roles": self._converge_roles,
            "update-project-policy": lambda desired, observed: self._converge_project_policy(desired),
            "update-federation": lambda desired, observed: self._converge_account_policy(desired),
            "update-deployers": lambda desired, observed: self._converge_account_policy(desired),
            "update-resource-policies":
                lambda desired, observed: self._converge_resource_policies(desired, []),
            "update-marker": self._set_description,
        }

    # --- markers and their MACs --------------------------------------------------------

    def marked_description(self, project: str, email: str, unique_id: str, marker: Marker) -> str:
        """The description that carries ``marker`` and its MAC (cut to 128 bits: a
        description holds 256 characters in all)."""
        mac = sign(self.signing_keys.get(project), "gcp", project, email, unique_id, marker,
                   SHORT_MAC_LENGTH)
        return marker.as_text(mac)

    def unauthenticated(self, project: str, account: Any, marker: Marker) -> str | None:
        """None when a marked account's MAC verifies (over its email and unique id), else why not."""
        return check(self.signing_keys.get(project), "gcp", project, account.email, str(account.unique_id),
                     marker, Marker.mac_of_text(account.description), SHORT_MAC_LENGTH)

    def signed_role_description(self, project: str, rid: str, description: str) -> str:
        """A custom role's description (as rendered) with the MAC of its marker line."""
        marker = render.role_marker(description)
        if marker is None:  # pragma: no cover - render writes the marker on every role
            raise ValueError(f"custom role {rid}: its description carries no marker")
        return render.signed_role_description(description, sign(
            self.signing_keys.get(project), "gcp", project, f"projects/{project}/roles/{rid}", ROLE_ID,
            marker, SHORT_MAC_LENGTH))

    def _role_unauthenticated(self, project: str, rid: str, description: str) -> str | None:
        """None when a marked custom role's MAC verifies, else why it is forged."""
        marker = render.role_marker(description)
        if marker is None:
            return "its description carries no workload-ids marker"
        if check(self.signing_keys.get(project), "gcp", project, f"projects/{project}/roles/{rid}", ROLE_ID,
                 marker, Marker.mac_of_text(description.split("\n", 1)[0]), SHORT_MAC_LENGTH):
            return ("its marker is not authenticated (no valid mac= in its description; one made "
                    "before roles were signed gets its MAC at its workload's next apply)")
        return None

    def _ownership(self, project: str, account: Any, marker: Marker | None) -> dict[str, Any]:
        """What the read says about whose the account is (ObservedIdentity.extra keys)."""
        misplaced = render.not_ours(self.prefix, account.email, project, marker) if marker else None
        unauthenticated = self.unauthenticated(project, account, marker) \
            if marker is not None and not misplaced else None
        if marker is not None and marker.adopted and unauthenticated:
            # Outside our naming only the MAC vouches for an adopted account: without it the
            # marker is anyone's description, and apply must never re-mark such an account.
            misplaced, unauthenticated = f"it is marked as adopted but {unauthenticated}", None
        return {FORGED: misplaced, IMMUTABLE_ID: str(account.unique_id), UNAUTHENTICATED: unauthenticated}

    # --- pure ------------------------------------------------------------------------

    def outputs(self, desired: DesiredIdentity, observed: ObservedIdentity | None) -> dict[str, str]:
        """The service account's email, its unique id (what a federated principal or an
        audit log names it by) and its project."""
        out = {"identity": desired.name, "service_account": desired.name, "provider": "gcp",
               "project": desired.workload.target}
        unique = str(observed.extra.get("uniqueId") or "") if observed is not None else \
            self._made.get(desired.name, "")
        if unique:
            out["unique_id"] = unique
        return out

    def preflight(self, desired: Sequence[DesiredIdentity]) -> list[Diagnostic]:
        """Nothing to check on GCP before the reads."""
        return []

    def preflight_writes(self, changes: Sequence[Change]) -> list[Diagnostic]:
        """Nothing to check on GCP before the writes."""
        return []

    # --- targets ---------------------------------------------------------------------

    def signing_key(self, target: str) -> SigningKey:
        """IdentityBackend.signing_key: the key markers here are authenticated with."""
        return self.clients.signing_keys.get(target)

    def current_target(self) -> str:
        """GCP credentials name no project: always a UserError saying how to name one."""
        raise UserError("GCP has no ambient project to read: list the projects under targets.gcp "
                        "in the config, name one with --target PROJECT, or pass the manifests "
                        "whose projects should be read")

    def verify_target(self, target: str) -> str:
        """One ``GetProject``; the actor is the sandbox's anonymous or the ADC principal."""
        self.clients.projects.get_project(name=f"projects/{target}")
        if self.config.gcp.sandboxCredentials:
            return "anonymous (sandbox)"
        return "application default credentials"

    # --- reads -----------------------------------------------------------------------

    def _roles_of(self, project: str, base: str) -> dict[str, dict[str, Any]]:
        """Custom roles whose id starts with ``base`` (one workload's, or all) and whose
        description carries our marker, paged; descriptions as render writes them (without
        the MAC). A role with our naming but without our marker is not ours: it is left out,
        so it is never updated, deleted or bundled (creating one of that id is then a
        conflict). One whose MAC does not verify is kept with :data:`ROLE_FORGED` saying why:
        callers believe only the others (:func:`_authentic`)."""
        found: dict[str, dict[str, Any]] = {}
        token = ""  # a page token, not a secret  # nosec B105
        while True:
            page = self.clients.iam.list_roles(request={
                "parent": f"projects/{project}", "view": 1, "page_size": 300, "page_token": token})
            for role in page.roles:
                rid = role.name.rsplit("/", 1)[1]
                if rid.startswith(base) and not role.deleted and \
                        render.role_marker(role.description) is not None:
                    found[rid] = {"title": role.title,
                                  "description": render.unsigned_role_description(role.description),
                                  "includedPermissions": sorted(role.included_permissions),
                                  "stage": "GA", "etag": role.etag}
                    why = self._role_unauthenticated(project, rid, role.description)
                    if why is not None:
                        found[rid][ROLE_FORGED] = why
            token = page.next_page_token
            if not token:
                return found

    def _workload_base(self, desired: DesiredIdentity) -> str:
        return render.role_base(self.prefix, desired.workload.environment, desired.workload.name)

    def account(self, address: str) -> Any | None:
        """One read of a service account; None when it does not exist."""
        try:
            return self.clients.iam.get_service_account(name=address)
        except CloudError as exc:
            if exc.kind != NOT_FOUND:
                raise
            return None

    @staticmethod
    def account_tags(account: Any, marker: Marker | None) -> dict[str, str]:
        """Our marker as tags, plus a quarantine mark or transfer in the display name."""
        return {**marker.as_tags(), **render.display_tags(account.display_name)} if marker else {}

    def scope_bindings(self, target: str) -> list[dict[str, Any]]:
        """The project policy's bindings as the last :meth:`observe_scope` of ``target`` read
        them (empty before one)."""
        return self._scope_bindings.get(target, [])

    def _resource_bindings(self, desired: DesiredIdentity, member: str, roles: Mapping[str, Any],
                           resources: list[str]) -> list[dict[str, str]]:
        """Our member's bindings on the desired resources and on those our existing
        resource roles were made for."""
        named = {r for r in (render.role_resource(v.get("description", "")) for v in roles.values()) if r}
        found: list[dict[str, str]] = []
        for resource in sorted({*resources, *named}):
            try:
                policy = self.policies.resource_policy(resource)
            except CloudError as exc:
                if exc.kind != NOT_FOUND:
                    raise
                continue
            found.extend({"resource": resource, "role": b.role} for b in policy.bindings
                         if member in b.members)
        return found

    def observe_one(self, desired: DesiredIdentity) -> ObservedIdentity | None:
        """The account, its roles, the project and account policies; resource policies only
        when the manifest changed since the last apply (the marker's digest)."""
        project = desired.workload.target
        self.signing_keys.get(project)  # before anything: without it nothing here can be believed
        account = self.account(desired.address)
        if account is None:
            return None
        marker = Marker.from_text(account.description)
        documents: dict[str, Any] = {}
        extra: dict[str, Any] = {"disabled": account.disabled, "uniqueId": account.unique_id,
                                 **self._ownership(project, account, marker)}
        if marker is not None:
            read = self._roles_of(project, self._workload_base(desired))
            policy = self.policies.project_policy(project)
            account_policy = self.policies.account_policy(desired.address)
            member = f"serviceAccount:{account.email}"
            roles = _authentic(read)
            extra["forgedRoles"] = _forged(read)
            ours = _role_names(project, roles)
            documents = {
                "roles": {rid: {k: v for k, v in r.items() if k != "etag"} for rid, r in roles.items()},
                "projectBindings": [b for b in render.policy_bindings(policy) if member in b["members"]
                                    and b["role"] in ours],
                "accountBindings": render.policy_bindings(account_policy),
            }
            # An adopted account's bindings are all someone else's making: observe mode
            # compares them whole (below), so none is reported as foreign.
            extra["foreignGrants"] = [] if desired.workload.adopted and desired.workload.observe else \
                _foreign(render.policy_bindings(policy), member, ours)
            if marker.digest != desired.workload.marker.digest:
                # Bindings on resources cost a call each: they are read when the manifest
                # changed since the last apply (the digest), which keeps a per-service plan
                # of an unchanged workload within a handful of calls.
                documents["resourceBindings"] = self._resource_bindings(
                    desired, member, roles, list(render.bound_resources(desired.objects)))
            if desired.workload.adopted and not extra[FORGED]:
                # An adopted account in observe mode is compared by everything it holds.
                extra["held"] = tuple(self.holdings.held_policies(
                    project, account.email, list(render.bound_resources(desired.objects))))
        return ObservedIdentity(
            provider="gcp", target=project, kind="service-account", name=account.email,
            address=desired.address,
            tags=self.account_tags(account, marker),
            documents={k: render.canonical(v) for k, v in documents.items()},
            settings={"description": account.description, "displayName": account.display_name},
            extra={**extra, "objects": documents})

    def accounts_in(self, project: str) -> list[Any]:
        """Every service account of ``project`` (paged, 100 a call)."""
        return service_accounts(self.clients, project)

    def observe_scope(self, target: str, *, settings: bool = True) -> list[ObservedIdentity]:
        """A few paged calls for a whole project: its service accounts, its custom roles,
        and its IAM policy. Each account's own policy (federation) is not read here: a
        diff trusts the manifest digest in the marker for it (see :meth:`diff`).

        The project's signing key is read when the first account carrying our marker is
        checked (once per run): a project where no account claims to be ours has nothing
        to believe, so a fleet's projects that hold none yet cost no key read. Nothing is
        changed from here; :meth:`_create` reads the key before it makes an account."""
        accounts = self.accounts_in(target)
        roles = self._roles_of(target, f"{self.prefix}_")
        policy = self.policies.project_policy(target)
        bindings = render.policy_bindings(policy)
        self._scope_bindings[target] = bindings
        observed: list[ObservedIdentity] = []
        for account in accounts:
            marker = Marker.from_text(account.description)
            if marker is None and not account.email.startswith(f"{self.prefix}-"):
                continue
            documents: dict[str, Any] = {}
            ours: set[str] = set()
            read: dict[str, dict[str, Any]] = {}
            if marker is not None:
                base = render.role_base(self.prefix, marker.environment, marker.workload)
                member = f"serviceAccount:{account.email}"
                read = {rid: r for rid, r in roles.items() if rid.startswith(base)}
                mine = _authentic(read)
                ours = _role_names(target, mine)
                documents = {
                    "roles": {rid: {k: v for k, v in r.items() if k != "etag"} for rid, r in mine.items()},
                    "projectBindings": [b for b in bindings if member in b["members"] and b["role"] in ours],
                }
            observed.append(ObservedIdentity(
                provider="gcp", target=target, kind="service-account", name=account.email,
                complete=marker is None,
                address=f"projects/{target}/serviceAccounts/{account.email}",
                tags=self.account_tags(account, marker),
                documents={k: render.canonical(v) for k, v in documents.items()},
                settings={"description": account.description, "displayName": account.display_name},
                extra={"disabled": account.disabled, "uniqueId": account.unique_id, "objects": documents,
                       **self._ownership(target, account, marker),
                       "forgedRoles": _forged(read) if marker else {},
                       "foreignGrants": _foreign(bindings, f"serviceAccount:{account.email}", ours)
                       if marker else []}))
        return observed

    # --- plan ------------------------------------------------------------------------

    def diff(self, desired: DesiredIdentity, observed: ObservedIdentity | None) -> list[Change]:
        """Refuses an account without our marker or with one outside our naming."""
        w = desired.workload
        want = desired.objects

        def change(action: str, **details: Any) -> Change:
            return Change(workload=w.label, provider="gcp", target=w.target, action=action,
                          identity=desired.name, details=details, desired=desired, observed=observed)

        if observed is None:
            federated = trust_diff(set(), {m for b in want["accountBindings"] for m in b["members"]})
            attached = deployer_diff(set(), _deployers(want.get("deployerBindings", [])))
            return [change("create", kind="service-account", address=desired.address,
                           permissions=_permission_diff({}, [], want["roles"], want["projectBindings"],
                                                        want["resourceBindings"]),
                           federation={"added": sorted(m for b in want["accountBindings"]
                                                       for m in b["members"]), "removed": []},
                           **({"deployers": {"role": render.SERVICE_ACCOUNT_USER,
                                             "added": sorted(_deployers(want["deployerBindings"])),
                                             "removed": []}} if "deployerBindings" in want else {}),
                           trust={"added": [*federated["added"], *attachment_rows(w),
                                            *attached["added"]], "removed": []})]
        if observed.marker is None:
            raise ConflictError(
                f"{w.label}: service account {desired.name} exists in project {w.target} but its "
                "description does not carry the workload-ids marker, so it will not be modified",
                "rename the workload, or delete that service account if it is truly unused; "
                "workload-ids never adopts an account it did not create")
        if observed.misplaced:
            raise ConflictError(
                f"{w.label}: service account {desired.name} in project {w.target} carries the "
                f"workload-ids marker but {observed.misplaced}, so it will not be modified",
                "find out who wrote that description; workload-ids never adopts an account it did "
                "not create")
        if w.adopted and w.observe:
            return self._diff_adopted(desired, observed, change)
        have: dict[str, Any] = observed.extra.get("objects") or {}
        changes: list[Change] = []
        # A forged role at an id this workload wants (one made before roles were signed, or
        # a copy) is re-marked: apply makes it exactly the role it would create. Any other
        # forged role is left alone (and reported).
        remark = sorted(set(observed.extra.get("forgedRoles") or {}) & set(want["roles"]))
        if have.get("roles") != want["roles"] or remark:
            changes.append(change("update-roles", roles={
                "added": sorted(set(want["roles"]) - set(have.get("roles", {})) - set(remark)),
                "changed": sorted(r for r in want["roles"] if r in have.get("roles", {})
                                  and have["roles"][r] != want["roles"][r]),
                "removed": sorted(set(have.get("roles", {})) - set(want["roles"])),
                **({"remarked": remark} if remark else {})}))
        have_bindings = {binding_key(b) for b in have.get("projectBindings", [])}
        want_bindings = {binding_key(b) for b in want["projectBindings"]}
        if have_bindings != want_bindings:
            changes.append(change("update-project-policy", bindings={
                "added": [{"role": r, "condition": c} for r, c in sorted(want_bindings - have_bindings)],
                "removed": [{"role": r, "condition": c} for r, c in sorted(have_bindings - want_bindings)]}))
        # Resource bindings (a call each) are read only when the manifest changed since the
        # last apply (its digest), and a fleet read leaves the account's own policy unread
        # too (observed.complete is False: plan reads a changed one again, alone). What was
        # not read is trusted to the digest.
        want_resources = {(b["resource"], b["role"]) for b in want["resourceBindings"]}
        have_resources = ({(b["resource"], b["role"]) for b in have["resourceBindings"]}
                          if "resourceBindings" in have else want_resources)
        if have_resources != want_resources:
            changes.append(change("update-resource-policies", bindings={
                "added": [{"resource": r, "role": o} for r, o in sorted(want_resources - have_resources)],
                "removed": [{"resource": r, "role": o}
                            for r, o in sorted(have_resources - want_resources)]}))
        want_members = {m for b in want["accountBindings"] for m in b["members"]}
        have_members = ({m for b in have["accountBindings"]
                         if b["role"] == render.WORKLOAD_IDENTITY_USER for m in b["members"]}
                        if "accountBindings" in have else want_members)
        if have_members != want_members:
            changes.append(change("update-federation", federation={
                "added": sorted(want_members - have_members),
                "removed": sorted(have_members - want_members)},
                trust=trust_diff(have_members, want_members)))
        want_deployers = _deployers(want.get("deployerBindings", []))
        have_deployers = (_deployers(have["accountBindings"]) if "accountBindings" in have
                          else want_deployers)
        if have_deployers != want_deployers:
            changes.append(change("update-deployers", deployers={
                "role": render.SERVICE_ACCOUNT_USER, "added": sorted(want_deployers - have_deployers),
                "removed": sorted(have_deployers - want_deployers)},
                trust=deployer_diff(have_deployers, want_deployers)))
        transferred = self.transfers(observed, w.marker.owner) and \
            observed.marker.digest == w.marker.digest
        have_text = _without_mac(observed.settings.get("description", ""))
        if observed.unauthenticated or (not transferred and (
                have_text != desired.settings["description"] or (
                observed.settings.get("displayName") != desired.settings["displayName"]
                and not w.adopted  # an adopted account keeps the display name it had
                and not render.display_tags(observed.settings.get("displayName", ""))))):
            # A quarantine mark or a transfer in the display name is cleanup's to clear.
            # Last: the manifest digest is recorded only once everything else matches. An
            # unauthenticated marker at our naming is marked anew (plan has checked the
            # audit log does not name another owner).
            changes.append(change("update-marker", description={
                "from": have_text, "to": desired.settings["description"]},
                **({"mac": {"from": "(not valid)", "to": "(new MAC)"}} if observed.unauthenticated else {})))
        return changes

    def _diff_adopted(self, desired: DesiredIdentity, observed: ObservedIdentity,
                      change: Callable[..., Change]) -> list[Change]:
        """An adopted account in observe mode: what it holds (every binding naming it that
        the tool finds, roles expanded into permissions) and who may act as it, against the
        manifest. The tool's own conventions (custom roles of ours, only our bindings) are
        converged only once someone sets spec.mode: manage."""
        w = desired.workload
        changes: list[Change] = []
        have = observed.extra.get("objects") or {}
        have_trust = trust_rows(have.get("accountBindings", []))
        want_trust = desired_trust_rows(w)
        if have_trust != want_trust:
            def words(rows: set[tuple[str, str, str]]) -> list[str]:
                return [f"{r} {m}" + (f" if {c}" if c else "") for r, m, c in sorted(rows)]
            changes.append(change("update-federation", federation={
                "added": words(want_trust - have_trust), "removed": words(have_trust - want_trust)},
                trust=trust_diff({m for _, m, _ in have_trust}, {m for _, m, _ in want_trust})))
        held = permission_pairs_held(observed.extra.get("held") or ())
        want = held.wanted(w.grants)
        if held.pairs != want:
            def rows(pairs: set[tuple[str, str, str]]) -> list[dict[str, str]]:
                return [{"action": a, "resource": r + (f" if {c}" if c else "")} for a, r, c in sorted(pairs)]
            changes.append(change("update-permissions", permissions={
                "added": rows(want - held.pairs), "removed": rows(held.pairs - want)}))
        if _without_mac(observed.settings.get("description", "")) != desired.settings["description"] \
                and not self.transfers(observed, w.marker.owner):
            changes.append(change("update-marker", description={
                "from": _without_mac(observed.settings.get("description", "")),
                "to": desired.settings["description"]}))
        return changes

    # --- apply -----------------------------------------------------------------------

    def apply(self, change: Change) -> None:
        """Runs the change kind's step from the table (each converges, so reruns are safe)."""
        assert change.desired is not None
        step = self._steps.get(change.action)
        if step is None:  # pragma: no cover - plan and apply are written together
            raise ValueError(f"unknown change {change.action}")
        step(change.desired, change.observed)

    def _create(self, desired: DesiredIdentity) -> None:
        project = desired.workload.target
        # Before anything is made: an account we cannot mark would be left unauthenticated.
        self.signing_keys.get(project)
        account_id = desired.name.split("@", 1)[0]
        try:
            created = self.clients.iam.create_service_account(request={
                "name": f"projects/{project}", "account_id": account_id,
                "service_account": {"display_name": desired.settings["displayName"],
                                    "description": desired.settings["description"]}})
        except CloudError as exc:
            if exc.code != ALREADY_EXISTS:
                raise
            # A run that died before it could record anything, or a racing run: adopt it
            # only if it carries our marker, then converge it.
            observed = self.observe_one(desired)
            if observed is None or observed.marker is None:
                raise ConflictError(
                    f"service account {desired.name} appeared in project {project} without the "
                    "workload-ids marker", "find out who created it; workload-ids will not adopt it") \
                    from None
            for follow_up in self.diff(desired, observed):
                self.apply(follow_up)
            return
        self._made[desired.name] = str(created.unique_id)
        self._await_visible(desired)
        # The MAC covers the unique id GCP has only now given: one more call. A crash
        # before it leaves an unauthenticated marker, which the rerun's apply re-marks.
        self.clients.iam.patch_service_account(request={
            "service_account": {"name": desired.address, "description": self.marked_description(
                project, desired.name, str(created.unique_id), desired.workload.marker)},
            "update_mask": {"paths": ["description"]}})
        self._converge_roles(desired, None)
        self._converge_project_policy(desired, {})  # a new account: no roles of an older shape
        self._converge_resource_policies(desired, [])
        self._converge_account_policy(desired)

    def _await_visible(self, desired: DesiredIdentity) -> None:
        """Wait until a just-created account reads back :data:`VISIBLE_READS` times in a
        row; bindings naming an account GCP cannot see yet are refused."""
        streak, waited, attempt = 0, 0.0, 0
        while streak < VISIBLE_READS:
            try:
                self.clients.iam.get_service_account(name=desired.address)
                streak += 1
                delay = 0.25 if streak < VISIBLE_READS else 0.0
            except CloudError as exc:
                if exc.kind != NOT_FOUND:
                    raise
                streak, attempt = 0, attempt + 1
                delay = min(10.0, 0.5 * 2 ** attempt)
            if waited + delay > VISIBLE_WAIT_SECONDS:
                raise CloudError("iam.get_service_account", "NotFound",
                                 f"service account {desired.name} was created but GCP still does not "
                                 f"show it after {VISIBLE_WAIT_SECONDS:.0f} s",
                                 "GCP is propagating the new account; rerun apply in a few minutes "
                                 "(reruns converge)")
            if delay:
                self.seam.sleep(delay)
                waited += delay

    def _converge_roles(self, desired: DesiredIdentity, observed: ObservedIdentity | None) -> None:
        """Create or update (and sign) every desired role; roles of old permission sets are
        deleted only after the project policy no longer binds them. A forged role is
        re-marked at a desired id and left alone at any other."""
        project = desired.workload.target
        read = self._roles_of(project, self._workload_base(desired))
        for rid, role in desired.objects["roles"].items():
            body = {"title": role["title"],
                    "description": self.signed_role_description(project, rid, role["description"]),
                    "included_permissions": role["includedPermissions"], "stage": 2}
            current = read.get(rid)
            if current is None:
                try:
                    self.clients.iam.create_role(request={
                        "parent": f"projects/{project}", "role_id": rid, "role": body})
                except CloudError as exc:  # taken, or deleted and not yet purged
                    if exc.code not in (ALREADY_EXISTS, FAILED_PRECONDITION):
                        raise
                    self._undelete_or_update(project, rid, body)
            elif {k: v for k, v in current.items() if k != "etag"} != role:
                self.update_role(f"projects/{project}/roles/{rid}", body, current["etag"])
        have = _authentic(read)
        stale = sorted(set(have) - set(desired.objects["roles"]))
        if stale:
            self._converge_project_policy(desired, have)
            gone = [r for r in (render.role_resource(have[rid]["description"]) for rid in stale) if r]
            self._converge_resource_policies(desired, gone)
            for rid in stale:
                name = f"projects/{project}/roles/{rid}"
                try:
                    self.clients.iam.delete_role(request={"name": name, "etag": have[rid]["etag"]})
                except CloudError as exc:
                    if exc.kind == NOT_FOUND:
                        continue
                    if exc.code != ABORTED:
                        raise
                    # Written meanwhile by a racing run: delete what it holds now.
                    role = self.clients.iam.get_role(request={"name": name})
                    if not role.deleted and \
                            self._role_unauthenticated(project, rid, role.description) is None:
                        self.clients.iam.delete_role(request={"name": name, "etag": role.etag})

    def _undelete_or_update(self, project: str, rid: str, body: dict[str, Any]) -> None:
        """A role id taken by a deleted role of ours (a mover that came back): undelete it
        and set its permissions, rather than waiting out GCP's 37 days."""
        name = f"projects/{project}/roles/{rid}"
        role = self.clients.iam.get_role(request={"name": name})
        if render.role_marker(role.description) is None:  # its first line; resource roles say more
            raise ConflictError(f"custom role {name} exists without the workload-ids marker",
                                "it is never modified; remove it or rename the workload")
        if role.deleted:
            role = self.clients.iam.undelete_role(request={"name": name, "etag": role.etag})
        self.update_role(name, body, role.etag)

    def update_role(self, name: str, body: dict[str, Any], etag: Any) -> None:
        """Write a role with the etag it was read with; on a stale etag (another run wrote
        it meanwhile) read it again: done if it already says what we want, else retry."""
        for attempt in range(POLICY_ATTEMPTS):
            try:
                self.clients.iam.update_role(request={
                    "name": name, "role": {**body, "etag": etag},
                    "update_mask": {"paths": ["title", "description", "included_permissions", "stage"]}})
                return
            except CloudError as exc:
                if exc.code != ABORTED or attempt == POLICY_ATTEMPTS - 1:
                    raise
                self.seam.conflict_pause(attempt)
                role = self.clients.iam.get_role(request={"name": name})
                if (role.title, role.description, sorted(role.included_permissions), int(role.stage)) == (
                        body["title"], body["description"], sorted(body["included_permissions"]),
                        body["stage"]) and not role.deleted:
                    return
                etag = role.etag

    def _converge_project_policy(self, desired: DesiredIdentity,
                                 have: Mapping[str, Any] | None = None) -> None:
        """Our account in exactly the wanted bindings of our roles: the desired ones and
        those that carry our marker now (read unless ``have`` says), never a role with our
        naming but not our marker."""
        project = desired.workload.target
        if have is None:
            have = _authentic(self._roles_of(project, self._workload_base(desired)))
        ours = _role_names(project, {**have, **desired.objects["roles"]})
        self.policies.set_project_bindings(project, f"serviceAccount:{desired.name}",
                                           list(desired.objects["projectBindings"]),
                                           lambda role: role in ours)

    def _converge_resource_policies(self, desired: DesiredIdentity, dropped: list[str]) -> None:
        self.policies.set_resource_bindings(f"serviceAccount:{desired.name}",
                                            list(desired.objects["resourceBindings"]), dropped)

    def _converge_account_policy(self, desired: DesiredIdentity) -> None:
        """Who may act as the account (federation) and who may attach it (deployers): the
        account's own policy, those two roles whole."""
        members = sorted(m for b in desired.objects["accountBindings"] for m in b["members"])
        deployers = sorted(_deployers(desired.objects.get("deployerBindings", [])))
        self.policies.set_account_users(desired.address, desired.name, members, deployers)

    def _set_description(self, desired: DesiredIdentity, observed: ObservedIdentity | None = None) -> None:
        keep_title = desired.workload.adopted or (
            observed is not None and render.display_tags(observed.settings.get("displayName", "")))
        unique_id = observed.immutable_id if observed is not None else ""
        marker = desired.workload.marker
        if observed is not None and observed.marker is not None and \
                self.transfers(observed, marker.owner):
            marker = marker.replace(owner=observed.marker.owner)  # cleanup's transfer stands
        if not unique_id:
            account = self.account(desired.address)
            unique_id = str(account.unique_id) if account is not None else ""
        fields = {"name": desired.address, "description": self.marked_description(
            desired.workload.target, desired.name, unique_id, marker)}
        if not keep_title:
            fields["display_name"] = desired.settings["displayName"]
        self.clients.iam.patch_service_account(request={
            "service_account": fields, "update_mask": {"paths": sorted(k for k in fields if k != "name")}})


def _without_mac(description: str) -> str:
    """A marker description as render writes it: without the MAC only the cloud's id makes."""
    mac = Marker.mac_of_text(description)
    return description.removesuffix(f" mac={mac}") if mac else description


def _authentic(roles: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The roles of a :meth:`GcpIdentities._roles_of` read whose MAC verifies."""
    return {rid: r for rid, r in roles.items() if ROLE_FORGED not in r}


def _forged(roles: Mapping[str, dict[str, Any]]) -> dict[str, str]:
    """Role id -> why it is forged, for the roles of a read whose MAC does not verify."""
    return {rid: str(r[ROLE_FORGED]) for rid, r in sorted(roles.items()) if ROLE_FORGED in r}


def _role_names(project: str, roles: Mapping[str, Any]) -> set[str]:
    """Full names of role ids: bindings of these are ours to change, no others."""
    return {f"projects/{project}/roles/{rid}" for rid in roles}


def _foreign(bindings: list[dict[str, Any]], member: str, ours: set[str]) -> list[str]:
    """Roles ``member`` holds through bindings of roles not ours: reported, never changed."""
    return sorted({str(b["role"]) for b in bindings
                   if member in b["members"] and str(b["role"]) not in ours})


def _permission_diff(have_roles: Mapping[str, Any], have_bindings: Sequence[Mapping[str, Any]],
                     want_roles: Mapping[str, Any], want_bindings: Sequence[Mapping[str, Any]],
                     resource_bindings: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, str]]]:
    """(permission, where) pairs a set of roles and bindings grants, for the plan's diff."""
    def pairs(roles: Mapping[str, Any], bindings: Sequence[Mapping[str, Any]],
              resources: Sequence[Mapping[str, Any]]) -> set[tuple[str, str]]:
        out: set[tuple[str, str]] = set()
        for b in bindings:
            rid = str(b["role"]).rsplit("/", 1)[1]
            where = (b.get("condition") or {}).get("expression") or "project"
            out |= {(p, where) for p in roles.get(rid, {}).get("includedPermissions", [])}
        for b in resources:
            rid = str(b["role"]).rsplit("/", 1)[1]
            out |= {(p, str(b["resource"])) for p in roles.get(rid, {}).get("includedPermissions", [])}
        return out
    old = pairs(have_roles, have_bindings, [])
    new = pairs(want_roles, want_bindings, resource_bindings)
    return {"added": [{"action": a, "resource": r} for a, r in sorted(new - old)],
            "removed": [{"action": a, "resource": r} for a, r in sorted(old - new)]}
