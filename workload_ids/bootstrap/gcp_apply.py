"""Create what ``bootstrap`` prints, on GCP: the custom roles, one service account per
tool identity, and the project IAM bindings (policy version 3: some carry a condition).

Everything is read first (the project, its roles with the deleted ones, its service
accounts, its policy) and judged before the first write: a role or service account that
has our name but not our marker (:func:`workload_ids.bootstrap.marker` in its
description) stops the run with nothing changed. A rerun writes nothing when all is in
place; a drifted role, display name or binding is converged back. In the project policy
only our service accounts' entries in bindings of our roles change: other members and
other roles' bindings are never touched (foreign members of our roles are reported).

Every client here goes through a seam that translates "gcp" (bootstrap's GcpClients, or
the sandbox's own seeding seam), so a failure arrives as a CloudError of its kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..calls import CONFLICT, NOT_FOUND, CallSeam
from ..errors import CloudError, ConflictError
from ..providers.gcp.render import policy_bindings
from . import MARKER_PREFIX, Step

# Whole read-modify-write cycles of the project policy before giving up on conflicts.
POLICY_ATTEMPTS = 5
# A new service account can be unknown to IAM policy writes for a while; bounded wait.
VISIBLE_READS = 2
VISIBLE_WAIT_SECONDS = 120.0
_STAGE_GA = 2  # google.iam.admin.v1.Role.RoleLaunchStage.GA


def ours(description: str, identity: str) -> bool:
    """Whether a description is bootstrap's marker for ``identity`` (exactly)."""
    return description == f"{MARKER_PREFIX} identity={identity}"


def _condition(binding: Mapping[str, Any]) -> tuple[str, str, str] | None:
    cond = binding.get("condition")
    if not cond:
        return None
    return str(cond.get("title", "")), str(cond.get("description", "")), str(cond.get("expression", ""))


def _key(binding: Mapping[str, Any]) -> tuple[str, tuple[str, str, str] | None]:
    # google.iam.v1: a binding is one role under one condition (all of its fields); the
    # same role with and without a condition are two bindings.
    return str(binding["role"]), _condition(binding)


class GcpBootstrap:
    """Converge one project to a rendered plan (:func:`workload_ids.bootstrap.gcp.render`)."""

    def __init__(self, clients: Any, seam: CallSeam, plan: Mapping[str, Any]) -> None:
        self.clients = clients
        self.seam = seam
        self.plan = plan
        self.project = str(plan["target"])
        self.steps: list[Step] = []

    # --- reads -----------------------------------------------------------------------

    def _roles(self) -> dict[str, Any]:
        """Every custom role of the project by name, the deleted ones too (their ids
        are taken until GCP purges them)."""
        found: dict[str, Any] = {}
        token = ""  # a page token, not a secret  # nosec B105
        while True:
            page = self.clients.iam.list_roles(request={
                "parent": f"projects/{self.project}", "view": 1, "show_deleted": True,
                "page_size": 300, "page_token": token})
            for role in page.roles:
                found[role.name] = role
            token = page.next_page_token
            if not token:
                return found

    def _accounts(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        token = ""  # a page token, not a secret  # nosec B105
        while True:
            page = self.clients.iam.list_service_accounts(request={
                "name": f"projects/{self.project}", "page_size": 100, "page_token": token})
            for account in page.accounts:
                found[account.email] = account
            token = page.next_page_token
            if not token:
                return found

    def _policy(self) -> Any:
        return self.clients.projects.get_iam_policy(request={
            "resource": f"projects/{self.project}", "options": {"requested_policy_version": 3}})

    # --- the run ---------------------------------------------------------------------

    def run(self) -> list[Step]:
        """Read, judge (refuse foreign objects before any write), then converge."""
        self.clients.projects.get_project(name=f"projects/{self.project}")
        roles, accounts = self._roles(), self._accounts()
        wanted_roles = [(i["identity"], r) for i in self.plan["identities"]
                        for r in (i["role"], i.get("grantRole")) if r]
        foreign = [f"custom role {r['name']}" for ident, r in wanted_roles
                   if r["name"] in roles and not ours(roles[r["name"]].description, ident)]
        foreign += [f"service account {i['serviceAccount']}" for i in self.plan["identities"]
                    if i["serviceAccount"] in accounts
                    and not ours(accounts[i["serviceAccount"]].description, i["identity"])]
        if foreign:
            raise ConflictError(
                f"{', '.join(foreign)} in project {self.project} exist(s) without the workload-ids "
                f"bootstrap marker ('{MARKER_PREFIX} identity=...' in the description); nothing was changed",
                "find out who created it; bootstrap never adopts an object it did not create: "
                "delete or rename it, or bootstrap another project")
        # Judged with the rest, before any write (and not read twice): a key secret
        # bootstrap did not make.
        key_step = ensure_signing_key(self.clients.secrets, self.plan["signingKey"], create=False)
        audit_key = self._audit_key()
        audit_step = ensure_signing_key(self.clients.secrets, audit_key, create=False, purpose="audit") \
            if audit_key else None
        for _, role in wanted_roles:
            self._role(role, roles.get(role["name"]))
        created = [self._account(i, accounts.get(i["serviceAccount"])) for i in self.plan["identities"]]
        for email in [e for e in created if e]:
            self._await_visible(email)
        self._bindings()
        step = key_step or ensure_signing_key(self.clients.secrets, self.plan["signingKey"])
        self.steps.append(step or Step("unchanged", "secret", str(self.plan["signingKey"]["name"])))
        if audit_key:
            step = audit_step or ensure_signing_key(self.clients.secrets, audit_key, purpose="audit")
            self.steps.append(step or Step("unchanged", "secret", str(audit_key["name"])))
        self._audit_notes()
        return self.steps

    def _audit_key(self) -> Mapping[str, Any] | None:
        """The audit signing key bootstrap makes here: ``audit.sink.signingKey`` when it is
        a secret of this project."""
        key = (self.plan.get("auditSink") or {}).get("signingKey")
        return key if key is not None and key["project"] == self.project else None

    def _audit_notes(self) -> None:
        audit = self.plan.get("auditSink")
        if audit is None:
            return
        if "bucketBinding" in audit:
            self.steps.append(Step("note", "bucket binding", f"{audit['bucket']} {audit['role']['name']}",
                                   "bootstrap does not own the bucket and leaves its IAM policy alone: "
                                   "create the role and bind it with the gcloud commands it prints"))
        key = audit.get("signingKey")
        if key is not None and key["project"] != self.project:
            self.steps.append(Step("note", "secret", str(key["name"]),
                                   f"in project {key['project']}, not {self.project}: made by bootstrap "
                                   "only in its own project"))

    def _role(self, role: Mapping[str, Any], current: Any) -> None:
        rid = str(role["name"]).rsplit("/", 1)[1]
        body = {"title": role["title"], "description": role["description"],
                "included_permissions": list(role["includedPermissions"]), "stage": _STAGE_GA}
        if current is None:
            self.clients.iam.create_role(request={"parent": f"projects/{self.project}", "role_id": rid,
                                                  "role": body})
            self.steps.append(Step("created", "custom role", role["name"]))
            return
        etag, undeleted = current.etag, False
        if current.deleted:
            etag = self.clients.iam.undelete_role(request={"name": role["name"], "etag": etag}).etag
            undeleted = True
        drift = [field for field, same in (
            ("title", current.title == role["title"]),
            ("permissions", sorted(current.included_permissions) == sorted(role["includedPermissions"])),
            ("stage", int(current.stage) == _STAGE_GA)) if not same]
        if drift:
            # The etag read above: a role edited meanwhile is refused (ABORTED), and a rerun
            # converges it from a fresh read.
            self.clients.iam.update_role(request={
                "name": role["name"], "role": {**body, "etag": etag},
                "update_mask": {"paths": ["title", "description", "included_permissions", "stage"]}})
        if drift or undeleted:
            what = ["undeleted"] if undeleted else []
            if drift:
                what.append(f"{', '.join(drift)} converged")
            self.steps.append(Step("updated", "custom role", role["name"], "; ".join(what)))
        else:
            self.steps.append(Step("unchanged", "custom role", role["name"]))

    def _account(self, ident: Mapping[str, Any], current: Any) -> str | None:
        """Create or converge one service account; returns its email when just created."""
        email, want = str(ident["serviceAccount"]), ident["account"]
        if current is None:
            self.clients.iam.create_service_account(request={
                "name": f"projects/{self.project}", "account_id": want["accountId"],
                "service_account": {"display_name": want["displayName"], "description": want["description"]}})
            self.steps.append(Step("created", "service account", email))
            return email
        if current.display_name != want["displayName"]:
            self.clients.iam.patch_service_account(request={
                "service_account": {"name": current.name, "display_name": want["displayName"]},
                "update_mask": {"paths": ["display_name"]}})
            self.steps.append(Step("updated", "service account", email, "display name converged"))
        else:
            self.steps.append(Step("unchanged", "service account", email))
        if current.disabled:
            self.steps.append(Step("note", "service account", email,
                                   "disabled; left so (gcloud iam service-accounts enable)"))
        return None

    def _await_visible(self, email: str) -> None:
        """Bindings naming an account IAM cannot see yet are refused: wait until it reads
        back :data:`VISIBLE_READS` times in a row, within a bounded time."""
        streak, waited, attempt = 0, 0.0, 0
        name = f"projects/{self.project}/serviceAccounts/{email}"
        while streak < VISIBLE_READS:
            try:
                self.clients.iam.get_service_account(name=name)
                streak, delay = streak + 1, 0.0
            except CloudError as exc:
                if exc.kind != NOT_FOUND:
                    raise
                streak, attempt = 0, attempt + 1
                delay = min(10.0, 0.5 * 2 ** attempt)
            if waited + delay > VISIBLE_WAIT_SECONDS:
                raise CloudError("iam.get_service_account", "NotFound",
                                 f"service account {email} was created but GCP still does not show it",
                                 "GCP is propagating the new account; rerun in a few minutes (reruns "
                                 "converge)")
            if delay:
                self.seam.sleep(delay)
                waited += delay

    def _bindings(self) -> None:
        """Read-modify-write of the project policy with its etag, version 3; on a conflict
        the whole cycle is redone from a fresh read."""
        wanted = [(str(m), b) for b in self.plan["bindings"] for m in b["members"]]
        our_roles = {str(b["role"]) for b in self.plan["bindings"]}
        our_members = {m for m, _ in wanted}
        for attempt in range(POLICY_ATTEMPTS):
            policy = self._policy()
            original = policy_bindings(policy)
            edited = [{**b, "members": list(b["members"])} for b in original]
            steps: list[Step] = []
            want_keys = {(m, _key(b)) for m, b in wanted}
            for b in edited:
                if b["role"] not in our_roles:
                    continue
                for member in [m for m in b["members"] if m in our_members]:
                    if (member, _key(b)) not in want_keys:
                        # Our account in a binding of our role that bootstrap does not render
                        # (an edited or dropped condition): taken out; the binding's other
                        # members stay.
                        b["members"].remove(member)
                        cond = _condition(b)
                        steps.append(Step("updated", "binding", f"{b['role']} {member}",
                                          f"removed from the drifted binding with condition "
                                          f"{cond[0]!r}" if cond else "removed from the unconditional "
                                          "binding (bootstrap renders a conditional one)"))
                others = sorted(m for m in b["members"] if m not in our_members)
                if others:
                    steps.append(Step("note", "binding", str(b["role"]),
                                      f"also granted to {', '.join(others)} (left alone; it widens who "
                                      "holds the tool's rights)"))
            edited = [b for b in edited if b["members"]]
            for member, want in wanted:
                target = next((b for b in edited if _key(b) == _key(want)), None)
                label = f"{want['role']} {member}" + (" (conditional)" if want.get("condition") else "")
                if target is not None and member in target["members"]:
                    steps.append(Step("unchanged", "binding", label))
                    continue
                if target is None:
                    target = {"role": want["role"], "members": []}
                    if want.get("condition"):
                        target["condition"] = dict(want["condition"])
                    edited.append(target)
                target["members"] = sorted({*target["members"], member})
                steps.append(Step("created", "binding", label))
            if edited == original:
                self.steps.extend(steps)
                return
            try:
                self._write(policy.etag, edited)
                self.steps.extend(steps)
                return
            except CloudError as exc:
                if exc.kind != CONFLICT:
                    raise
                self.seam.conflict_pause(attempt)
        raise CloudError("resourcemanager.set_iam_policy", "Aborted",
                         f"project {self.project}'s IAM policy kept changing under us ({POLICY_ATTEMPTS} "
                         "attempts)", "another tool is editing it; rerun (reruns converge)")

    def _write(self, etag: bytes, bindings: list[dict[str, Any]]) -> None:
        from google.iam.v1 import policy_pb2
        new = policy_pb2.Policy(version=3, etag=etag)
        for b in bindings:
            item = new.bindings.add(role=b["role"], members=b["members"])
            if b.get("condition"):
                item.condition.title = b["condition"]["title"]
                item.condition.description = b["condition"].get("description", "")
                item.condition.expression = b["condition"]["expression"]
        self.clients.projects.set_iam_policy(request={"resource": f"projects/{self.project}", "policy": new})


def ensure_signing_key(secrets: Any, key: Mapping[str, Any], *, create: bool = True,
                       purpose: str = "marker") -> Step | None:
    """The marker signing key (see :func:`workload_ids.bootstrap.gcp.signing_key`):
    created with fresh material and its IAM policy; None when it is in place. A secret of
    that name that bootstrap cannot show it made (our annotation, a policy that grants only
    the tool's readers, 64 hex characters) is refused: whoever made it may know the
    material and could forge every marker with it. Returns the step (``unchanged`` when it
    is in place), or None when it is missing and ``create`` is false. ``purpose``: the
    marker key, or the audit key (``audit.sink.signingKey``, made and judged the same way)."""
    from google.iam.v1 import policy_pb2

    from ..signing import SigningKey, new_key_material
    from . import KEY_ANNOTATION, KEY_ANNOTATION_VALUE
    name = str(key["name"])
    project = name.split("/")[1]
    wanted = {(b["role"], m) for b in key["bindings"] for m in b["members"]}

    def refuse(why: str) -> ConflictError:
        return ConflictError(f"Secret Manager secret {name} exists but {why}, so bootstrap cannot show "
                             f"it made it and will not use it as the {purpose} signing key; nothing was "
                             "changed", "find out who created it, delete it (gcloud secrets delete "
                             f"{key['secretId']} --project {project}) and rerun")

    try:
        secret = secrets.get_secret(name=name)
    except CloudError as exc:
        if exc.kind != NOT_FOUND:
            raise
        secret = None
    marker_value = str(dict(key["annotations"]).get(KEY_ANNOTATION, KEY_ANNOTATION_VALUE))
    if secret is not None:
        if dict(secret.annotations).get(KEY_ANNOTATION) != marker_value:
            raise refuse(f"does not carry the annotation {KEY_ANNOTATION}={marker_value}")
        policy = secrets.get_iam_policy(request={"resource": name})
        held = {(b.role, m) for b in policy.bindings for m in b.members}
        if not held or not held <= wanted:
            raise refuse("its IAM policy grants more than the tool's service accounts reading it")
        value = secrets.access_secret_version(name=f"{name}/versions/latest").payload.data.decode()
        try:
            SigningKey.from_stored(value, name)
        except ValueError:
            raise refuse("its value is not 64 hexadecimal characters") from None
        return Step("unchanged", "secret", name)
    if not create:
        return None
    secrets.create_secret(request={"parent": f"projects/{project}", "secret_id": key["secretId"],
                                   "secret": {"replication": {"automatic": {}},
                                              "annotations": dict(key["annotations"])}})
    secrets.add_secret_version(request={"parent": name,
                                        "payload": {"data": new_key_material().encode()}})
    policy = policy_pb2.Policy(version=1)
    for b in key["bindings"]:
        policy.bindings.add(role=b["role"], members=b["members"])
    secrets.set_iam_policy(request={"resource": name, "policy": policy})
    return Step("created", "secret", name,
                f"the {purpose} signing key, readable by the tool's service accounts")


def converge(config: Any, seam: CallSeam, plan: Mapping[str, Any]) -> list[Step]:
    """Create or converge everything of ``plan`` in its project (see the module docstring)."""
    from ..providers.gcp.clients import GcpClients
    clients = GcpClients(config, seam)
    try:
        return GcpBootstrap(clients, seam, plan).run()
    except CloudError as exc:
        if exc.__cause__ is None:
            raise  # bootstrap's own (a wait or a conflict that outlasted its retries): its hint stands
        # A cloud call failed: whatever it was, the likely fix is the same; say it.
        hint = ("another tool changed it while bootstrap ran; rerun (reruns converge)"
                if exc.kind == CONFLICT else
                "bootstrap needs an owner of the project (it writes custom roles, service accounts and "
                "the project's IAM policy); rerun converges")
        raise CloudError("bootstrap", exc.code, exc.message, hint, kind=exc.kind) from exc.__cause__
