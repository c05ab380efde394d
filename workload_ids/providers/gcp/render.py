"""A compiled workload as GCP IAM objects. Pure: no SDK, no calls.

A workload becomes one service account; its access becomes custom roles holding exactly
the templates' permissions, bound either on the project with an IAM condition naming the
listed resources (``binding: condition``), on the project plainly for permissions GCP
only checks there (``binding: project``: logging, monitoring), or on each listed resource's
own IAM policy where the service does not evaluate conditions on resource names
(``binding: resource``: Pub/Sub, Secret Manager, Artifact Registry, Cloud Run, ...).

One custom role per distinct permission set, not one per workload: a single role holding
the union, bound under one condition naming every resource, would grant each resource
the permissions listed for the others (write on the bucket listed for read only). A
resource-bound grant gets a role of its own per resource: when a mover drops the resource,
deleting that role revokes the grant at once, wherever a binding to it may linger, and the
role's description names the resource so the binding itself can be removed too.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ...approvals import gcp_secret_id
from ...config import Config
from ...errors import Diagnostic
from ...model import (
    MARK_TAG,
    TRANSFERRED_FROM_TAG,
    AttachedTrust,
    CompiledWorkload,
    DesiredIdentity,
    Grant,
    Marker,
    ServiceTrust,
)
from ...signing import SHORT_MAC_LENGTH

secret_id = gcp_secret_id  # Secret Manager's id for one of our secret names

ACCOUNT_ID_MAX = 30
ROLE_ID_MAX = 64
DESCRIPTION_MAX = 256  # a service account's description
ROLE_TITLE_MAX = 100
ROLE_DESCRIPTION_MAX = 300
RESOURCE_LINE = "\nresource="
# A custom role's marker line also carries " mac=" and a 32-character MAC (see
# :func:`signed_role_description`), written when the role is written.
ROLE_MAC_ROOM = len(" mac=") + SHORT_MAC_LENGTH
CONDITION_TITLE_MAX = 100
CONDITION_DESCRIPTION_MAX = 256
EXPRESSION_MAX = 12_800
WORKLOAD_IDENTITY_USER = "roles/iam.workloadIdentityUser"
# Lets a member attach the service account to a runtime (iam.serviceAccounts.actAs):
# granted to attachedTo deployers on the account's own policy.
SERVICE_ACCOUNT_USER = "roles/iam.serviceAccountUser"
# Service accounts have no labels and the description holds the ownership marker, so a
# quarantine mark (or, after a transfer, the owner who left) lives in the display name.
MARK_PREFIX = "quarantine "
FROM_PREFIX = "transferred-from="


def _digest(*parts: str, length: int = 6) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


def account_id(prefix: str, environment: str, name: str) -> str:
    """``wid-prod-payments-api-3f2a9c``: readable, 6-30 characters, and collision-safe
    (the digest of environment and name tells ``a-b``/``c`` from ``a``/``b-c``)."""
    core = "-".join(p for p in (prefix, environment, name) if p).lower()
    if not core[:1].isalpha():
        core = "w" + core
    head = core[: ACCOUNT_ID_MAX - 7].rstrip("-")
    return f"{head}-{_digest(environment, name)}"


def not_ours(prefix: str, email: str, project: str, marker: Marker) -> str | None:
    """Why a service account whose description carries ``marker`` is not one the tool
    made, or None. The description is writable by anyone with
    ``iam.serviceAccounts.update``; the account id is fixed at creation, so only the id
    we give the marker's workload, in this project, is believed. An adopted account keeps
    the email it had: only its MAC (checked by the read, which treats an unauthenticated
    adopted marker as forged) vouches for it."""
    if marker.adopted:
        return None
    want = service_account_email(account_id(prefix, marker.environment, marker.workload), project)
    if email != want:
        return (f"its email is not {want}, the account workload-ids gives "
                f"{marker.environment}/{marker.workload}")
    return None


def service_account_email(account: str, project: str) -> str:
    """The email of service account ``account`` in ``project``."""
    return f"{account}@{project}.iam.gserviceaccount.com"


def role_id(prefix: str, environment: str, name: str, permissions: Sequence[str]) -> str:
    """One custom role per workload and permission set; role ids allow ``[A-Za-z0-9_.]``."""
    base = re.sub(r"[^A-Za-z0-9_.]", "_", "_".join(p for p in (prefix, environment, name) if p))
    tail = f"_{_digest(environment, name)}_{_digest(*sorted(permissions), length=4)}"
    return base[: ROLE_ID_MAX - len(tail)] + tail


def role_base(prefix: str, environment: str, name: str) -> str:
    """The id prefix all of one workload's roles share (before the permission digest)."""
    sample = role_id(prefix, environment, name, [])
    return sample[: sample.rindex("_") + 1]


def _quoted(text: str) -> str:
    return json.dumps(text)  # CEL string literals take JSON's escapes


def condition_for(grant: Grant) -> str:
    """The CEL expression that limits a project-level grant to one listed resource (and
    what lives inside it: a bucket's objects, a key's versions, a dataset's tables)."""
    return condition_for_text(grant.kind or "", grant.resource)


def condition_for_text(kind: str, name: str) -> str:
    """:func:`condition_for` by resource kind and name."""
    inside = {"gcs-bucket": "/objects/", "kms-crypto-key": "/cryptoKeyVersions/",
              "bigquery-dataset": "/tables/"}.get(kind)
    exact = f"resource.name == {_quoted(name)}"
    if inside is None:
        return exact
    return f"({exact} || resource.name.startsWith({_quoted(name + inside)}))"


def until_condition(expires: str) -> str:
    """The CEL that ends a binding at ``expires`` (UTC, ``Z``): the one time form emitted."""
    return f"request.time < timestamp({_quoted(expires)})"


def _project_bindings(role_name: str, member: str, grants: list[Grant], expires: str | None,
                      env: str, name: str, marker: str) -> list[dict[str, Any]]:
    """The project bindings of one role's grants that share an end (None: no end)."""
    out: list[dict[str, Any]] = []
    title = f"workload-ids {env}/{name}"
    description = marker
    if expires is not None:
        approvals = ", ".join(sorted({g.approval for g in grants if g.approval}))
        title = f"{title} until {expires}"
        description = f"{marker}\ntime-bound until {expires}, approval {approvals}"
    conditioned = sorted({condition_for(g) for g in grants if g.binding == "condition"})
    if any(g.binding == "project" for g in grants):
        if expires is None:
            out.append({"role": role_name, "members": [member]})
        else:
            out.append({"role": role_name, "members": [member], "condition": {
                "title": title[:CONDITION_TITLE_MAX], "description": description[:CONDITION_DESCRIPTION_MAX],
                "expression": until_condition(expires)}})
    if conditioned:
        expression = " || ".join(conditioned)
        if expires is not None:
            expression = f"({expression}) && {until_condition(expires)}"
        out.append({"role": role_name, "members": [member], "condition": {
            "title": title[:CONDITION_TITLE_MAX], "description": description[:CONDITION_DESCRIPTION_MAX],
            "expression": expression}})
    return out


def federation_members(workload: CompiledWorkload) -> list[str]:
    """Workload Identity Federation principals allowed to act as the service account."""
    members: list[str] = []
    for fed in workload.trust:
        if isinstance(fed, ServiceTrust | AttachedTrust) or not fed.pool:
            continue
        members.append(f"principal://iam.googleapis.com/{fed.pool}/subject/{fed.subject()}")
    return sorted(set(members))


def deployer_members(workload: CompiledWorkload) -> list[str]:
    """Who may attach the service account to a runtime (``attachedTo[].deployers``): each
    gets roles/iam.serviceAccountUser on this account's own policy, never on the project,
    where it would let them attach every account of the project."""
    return sorted({d for fed in workload.trust if isinstance(fed, AttachedTrust) for d in fed.deployers})


def desired_objects(workload: CompiledWorkload, prefix: str) -> dict[str, Any]:
    """Every object the workload's identity consists of, in plain JSON values."""
    project = workload.target
    env, name = workload.environment, workload.name
    # An adopted account keeps its own email (spec.adopted); ours are named by the workload.
    email = workload.adopted or service_account_email(account_id(prefix, env, name), project)
    member = f"serviceAccount:{email}"
    # Roles and conditions carry the marker without the source: it is the account's to
    # bind (and their descriptions stay as they were, so no role changes on upgrade).
    marker = workload.marker.replace(source="").as_text()
    title = f"workload-ids {env}/{name}"[:ROLE_TITLE_MAX]
    by_permissions: dict[tuple[str, ...], list[Grant]] = {}
    by_resource: dict[str, set[str]] = {}
    for grant in workload.grants:
        if grant.binding == "resource":
            by_resource.setdefault(grant.resource, set()).update(grant.actions)
        else:
            by_permissions.setdefault(tuple(sorted(set(grant.actions))), []).append(grant)
    roles: dict[str, Any] = {}
    project_bindings: list[dict[str, Any]] = []
    resource_bindings: list[dict[str, Any]] = []
    for permissions, grants in sorted(by_permissions.items()):
        rid = role_id(prefix, env, name, permissions)
        role_name = f"projects/{project}/roles/{rid}"
        roles[rid] = {"title": title, "description": marker, "includedPermissions": list(permissions),
                      "stage": "GA"}
        # Grants without an end first, then one binding per end: IAM stops honouring a
        # time-bound binding by its own condition (request.time), not by our next run.
        by_end: dict[str | None, list[Grant]] = {}
        for g in grants:
            by_end.setdefault(g.expires, []).append(g)
        for expires, bound in sorted(by_end.items(), key=lambda item: item[0] or ""):
            project_bindings.extend(_project_bindings(role_name, member, bound, expires, env, name,
                                                      marker))
    for resource, actions in sorted(by_resource.items()):
        permissions = tuple(sorted(actions))
        rid = role_id(prefix, env, name, [*permissions, f"@{resource}"])
        described = marker + RESOURCE_LINE + resource
        roles[rid] = {"title": title,
                      "description": described if len(described) + ROLE_MAC_ROOM <= ROLE_DESCRIPTION_MAX
                      else marker,
                      "includedPermissions": list(permissions), "stage": "GA"}
        resource_bindings.append({"resource": resource, "role": f"projects/{project}/roles/{rid}",
                                  "members": [member]})
    project_bindings.sort(key=lambda b: (b["role"], "condition" in b,
                                         b.get("condition", {}).get("expression", "")))
    resource_bindings.sort(key=lambda b: (b["resource"], b["role"]))
    federation = federation_members(workload)
    deployers = deployer_members(workload)
    return {
        "serviceAccount": {"email": email, "displayName": f"workload-ids {env}/{name}"[:100],
                           "description": workload.marker.as_text()},
        "roles": roles,
        "projectBindings": project_bindings,
        "resourceBindings": resource_bindings,
        # Who may act as the service account: bound on the account's own IAM policy.
        "accountBindings": [{"role": WORKLOAD_IDENTITY_USER, "members": federation}] if federation else [],
        # Who may attach it to a runtime: also on the account's own policy, in a document of
        # its own so that a workload without attachments renders exactly as before.
        **({"deployerBindings": [{"role": SERVICE_ACCOUNT_USER, "members": deployers}]}
           if deployers else {}),
    }


def canonical(doc: Any) -> str:
    """``doc`` as compact JSON (no spaces), the form documents are compared in."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def desired_identity(workload: CompiledWorkload, config: Config) -> DesiredIdentity:
    """The service account a workload should have, with its roles and bindings."""
    prefix = config.gcp.namePrefix
    cached = workload.rendered.get(f"gcp:{prefix}")
    if cached is not None:
        return cached
    objects = desired_objects(workload, prefix)
    email = objects["serviceAccount"]["email"]
    key_mode = workload.key_mode
    desired = DesiredIdentity(
        workload=workload, kind="service-account", name=email,
        documents={k: canonical(v) for k, v in objects.items()},
        tags=workload.marker.as_tags(),
        settings={"project": workload.target, "keyMode": "true" if key_mode else "false",
                  "description": objects["serviceAccount"]["description"],
                  "displayName": objects["serviceAccount"]["displayName"],
                  # What a person finds the key under: Secret Manager's own id for the name.
                  **({"secretName": secret_id(workload.secret_name)} if key_mode else {})},
        address=f"projects/{workload.target}/serviceAccounts/{email}", objects=objects)
    workload.rendered[f"gcp:{prefix}"] = desired
    return desired


def static_checks(workload: CompiledWorkload, config: Config) -> list[Diagnostic]:
    """GCP limits checked before any call: description and condition sizes."""
    lw = workload.source
    out: list[Diagnostic] = []
    objects = desired_identity(workload, config).objects
    # The description also carries " mac=" and a 32-character MAC (written after create).
    size = len(objects["serviceAccount"]["description"]) + len(" mac=") + SHORT_MAC_LENGTH
    if size > DESCRIPTION_MAX:
        out.append(Diagnostic(lw.position("metadata", "owner"),
                              f"workload {workload.label}: its ownership marker would be {size} "
                              f"characters; a GCP service account description holds {DESCRIPTION_MAX}. "
                              "Use a shorter owner or workload name, or a shorter source: declare the "
                              "manifest's folder under a team (`teams:` in workload-ids.yaml) or move "
                              f"the file higher up (source {workload.marker.source})"))
    ended: set[int] = set()
    for g in workload.grants:
        if g.expires and g.binding == "resource" and g.entry not in ended:
            ended.add(g.entry)
            # Bound on the resource's own policy (Pub/Sub, Secret Manager, ...), where this
            # version writes no condition: the grant ends when a run removes it.
            out.append(Diagnostic(lw.position("spec", "access", g.entry, "expires"),
                                  f"{g.kind} grants are bound on the resource's own IAM policy, "
                                  "where workload-ids writes no time condition: GCP does not end "
                                  f"this grant by itself at {g.expires}; the first apply after then "
                                  "removes it (its custom role is deleted). Schedule apply to run "
                                  "after the end", "warning"))
    for binding in objects["projectBindings"]:
        expression = binding.get("condition", {}).get("expression", "")
        if len(expression) > EXPRESSION_MAX:
            out.append(Diagnostic(lw.position("spec", "access", key=True),
                                  f"workload {workload.label}: an IAM condition would be {len(expression)} "
                                  f"characters; GCP allows {EXPRESSION_MAX}. List fewer resources"))
    return out


def bound_resources(objects: Mapping[str, Any]) -> Iterable[str]:
    """Every resource that carries one of the workload's resource-level bindings."""
    return sorted({b["resource"] for b in objects["resourceBindings"]})


def role_marker(description: str) -> Any:
    """The marker of a custom role's description (its first line), or None."""
    from ...model import Marker
    return Marker.from_text(description.split("\n", 1)[0])


def unsigned_role_description(description: str) -> str:
    """A custom role's description as :func:`desired_objects` writes it: without the MAC
    its marker line carries in the cloud."""
    first, sep, rest = description.partition("\n")
    mac = Marker.mac_of_text(first)
    return (first.removesuffix(f" mac={mac}") if mac else first) + sep + rest


def signed_role_description(description: str, mac: str) -> str:
    """``description`` (as rendered, or as read) with ``mac`` on its marker line."""
    first, sep, rest = unsigned_role_description(description).partition("\n")
    return f"{first} mac={mac}{sep}{rest}"


def role_resource(description: str) -> str | None:
    """The resource a resource-bound role was made for, when its description names it."""
    _, sep, rest = description.partition(RESOURCE_LINE)
    return rest or None if sep else None


def policy_bindings(policy: Any) -> list[dict[str, Any]]:
    """A protobuf ``google.iam.v1.Policy``'s bindings as plain dicts (a condition, when a
    binding has one, with its title, description and expression)."""
    out: list[dict[str, Any]] = []
    for b in policy.bindings:
        item: dict[str, Any] = {"role": b.role, "members": list(b.members)}
        if b.HasField("condition"):
            item["condition"] = {"title": b.condition.title, "description": b.condition.description,
                                 "expression": b.condition.expression}
        out.append(item)
    return out


def display_tags(display_name: str) -> dict[str, str]:
    """What a display name says beyond the plain title: a quarantine mark, or the owner
    an account was transferred from (as the tags AWS would carry)."""
    if display_name.startswith(MARK_PREFIX):
        return {MARK_TAG: display_name[len(MARK_PREFIX):]}
    if display_name.startswith(FROM_PREFIX):
        return {TRANSFERRED_FROM_TAG: display_name[len(FROM_PREFIX):]}
    return {}


def plain_title(marker: Marker) -> str:
    """The display name of an account without a mark (what release and restore write)."""
    return f"workload-ids {marker.environment}/{marker.workload}"[:100]
