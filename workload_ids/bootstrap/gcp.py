"""GCP: custom roles for the tool's service accounts, and the one conditional grant
that lets apply, cleanup and restore change a project's IAM policy. Pure data.

``resourcemanager.projects.setIamPolicy`` is the project-owner-equivalent right; it is
granted only in a role bound with an IAM condition on
``iam.googleapis.com/modifiedGrantsByRole``, so the identity can add or remove bindings
of the roles listed there and no others. GCP takes explicit role names in that list (no
prefix match), so the list holds ``roles/iam.workloadIdentityUser`` and the custom role
ids the operator adds with ``--gcp-role`` (``workload-ids plan --output json`` shows
each workload's); the tool's own ``wid_tool_*`` roles are never in it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..config import Config
from . import IDENTITIES, KEY_ANNOTATION, KEY_ANNOTATION_VALUE, SECRET_ACCESSOR, marker

WORKLOAD_IDENTITY_USER = "roles/iam.workloadIdentityUser"
# Kinds of resources manifests bind on: the tool reads and writes their IAM policies.
_RESOURCE_POLICIES = [f"{kind}.{verb}" for kind in (
    "artifactregistry.repositories", "cloudfunctions.functions", "cloudtasks.queues", "pubsub.subscriptions",
    "pubsub.topics", "run.services", "secretmanager.secrets") for verb in ("getIamPolicy", "setIamPolicy")]
_KEYS = ["iam.serviceAccountKeys.create", "iam.serviceAccountKeys.delete", "iam.serviceAccountKeys.disable",
         "iam.serviceAccountKeys.enable", "iam.serviceAccountKeys.get", "iam.serviceAccountKeys.list"]
_SECRETS = ["secretmanager.secrets.create", "secretmanager.secrets.get", "secretmanager.secrets.list",
            "secretmanager.secrets.update", "secretmanager.versions.access", "secretmanager.versions.add",
            "secretmanager.versions.destroy", "secretmanager.versions.disable", "secretmanager.versions.list"]
PERMISSIONS: dict[str, list[str]] = {
    "apply": ["iam.roles.create", "iam.roles.delete", "iam.roles.get", "iam.roles.list", "iam.roles.undelete",
              "iam.roles.update", "iam.serviceAccounts.create", "iam.serviceAccounts.get",
              "iam.serviceAccounts.getIamPolicy", "iam.serviceAccounts.list",
              "iam.serviceAccounts.setIamPolicy", "iam.serviceAccounts.update",
              "resourcemanager.projects.get", "resourcemanager.projects.getIamPolicy",
              # a plan that removes a permission asks whether it is still used
              "policyanalyzer.serviceAccountKeyLastAuthenticationActivities.query",
              "policyanalyzer.serviceAccountLastAuthenticationActivities.query",
              "recommender.iamPolicyInsights.list",
              *_RESOURCE_POLICIES, *_KEYS, *_SECRETS],
    "rotate": ["iam.serviceAccounts.get", "iam.serviceAccounts.list", *_KEYS, *_SECRETS],
    "cleanup": ["iam.roles.delete", "iam.roles.get", "iam.roles.list", "iam.serviceAccounts.delete",
                "iam.serviceAccounts.disable", "iam.serviceAccounts.enable", "iam.serviceAccounts.get",
                "iam.serviceAccounts.getIamPolicy", "iam.serviceAccounts.list",
                "iam.serviceAccounts.setIamPolicy", "iam.serviceAccounts.update",
                "resourcemanager.projects.get", "resourcemanager.projects.getIamPolicy", *_RESOURCE_POLICIES],
    "restore": ["iam.roles.get", "iam.roles.undelete", "iam.roles.update", "iam.serviceAccounts.enable",
                "iam.serviceAccounts.get", "iam.serviceAccounts.undelete", "iam.serviceAccounts.update",
                "resourcemanager.projects.getIamPolicy"],
    # discover and adopt without --apply: read every service account, its keys, its own
    # policy and the project's, custom roles, last authentication; list folder and
    # organization targets. Nothing written.
    "discover": ["iam.roles.get", "iam.roles.list", "iam.serviceAccountKeys.list", "iam.serviceAccounts.get",
                 "iam.serviceAccounts.getIamPolicy", "iam.serviceAccounts.list",
                 "policyanalyzer.serviceAccountKeyLastAuthenticationActivities.query",
                 "policyanalyzer.serviceAccountLastAuthenticationActivities.query",
                 "resourcemanager.folders.list", "resourcemanager.projects.get",
                 "resourcemanager.projects.getIamPolicy", "resourcemanager.projects.list"],
}
CHANGES_PROJECT_POLICY = ("apply", "cleanup", "restore")


def role_id(config: Config, identity: str) -> str:
    """The custom role id of a tool identity (role ids allow underscores, not hyphens)."""
    return f"{config.gcp.namePrefix}_tool_{identity}"


def account_id(config: Config, identity: str) -> str:
    """The service account id of a tool identity."""
    return f"{config.gcp.namePrefix}-tool-{identity}"


def grant_condition(project: str, extra_roles: list[str]) -> dict[str, str]:
    """An IAM condition that lets the tool grant only the workload roles, never its own or an admin role."""
    roles = [WORKLOAD_IDENTITY_USER, *sorted(set(extra_roles))]
    listed = ", ".join(f"'{r}'" for r in roles)
    return {"title": "workload-ids grants only",
            "description": "add or remove bindings of the workload roles only; never the tool's own "
                           f"or a predefined admin role (project {project})",
            "expression": "api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', [])"
                          f".hasOnly([{listed}])"}


def render(config: Config, project: str, extra_roles: Sequence[str] = ()) -> dict[str, Any]:
    """Custom roles (``gcloud iam roles create --file``) and project bindings
    (``gcloud projects add-iam-policy-binding``), one service account per identity."""
    identities: list[dict[str, Any]] = []
    bindings: list[dict[str, Any]] = []
    for identity in IDENTITIES:
        member = f"serviceAccount:{account_id(config, identity)}@{project}.iam.gserviceaccount.com"
        rid = role_id(config, identity)
        role = {"name": f"projects/{project}/roles/{rid}", "title": f"workload-ids {identity}",
                "description": marker(identity), "stage": "GA",
                "includedPermissions": sorted(PERMISSIONS[identity])}
        identities.append({"identity": identity, "serviceAccount": member.split(":", 1)[1],
                           "account": {"accountId": account_id(config, identity),
                                       "displayName": f"workload-ids {identity}",
                                       "description": marker(identity)},
                           "role": role})
        bindings.append({"role": role["name"], "members": [member]})
        if identity in CHANGES_PROJECT_POLICY:
            grant = f"projects/{project}/roles/{rid}_grants"
            identities[-1]["grantRole"] = {"name": grant, "title": f"workload-ids {identity}: grants",
                                          "description": marker(identity), "stage": "GA",
                                          "includedPermissions": ["resourcemanager.projects.setIamPolicy"]}
            bindings.append({"role": grant, "members": [member],
                             "condition": grant_condition(project, list(extra_roles))})
    plan: dict[str, Any] = {"provider": "gcp", "target": project, "identities": identities,
                            "bindings": bindings, "signingKey": signing_key(config, project)}
    from . import audit_sink
    sink = audit_sink.of(config)
    if sink is not None:
        plan["auditSink"] = audit_sink.gcp_render(config, project, sink)
        note = audit_sink.elsewhere(sink, "gcp")
        key = plan["auditSink"].get("signingKey")
        if key is not None and key["project"] != project:
            note = "; ".join(filter(None, [note, f"the audit signing key {sink.key} is in project "
                                           f"{key['project']}: `--apply` makes it only in its own project"]))
        if note:
            plan["auditSink"]["note"] = note
    return plan




def signing_key(config: Config, project: str) -> dict[str, Any]:
    """The marker signing key: a Secret Manager secret whose own IAM policy lets the
    tool's service accounts (and no one else it names) read it. Project-level roles that
    carry ``secretmanager.versions.access`` still reach it: keep those to administrators."""
    from ..markers import KEY_SECRET
    readers = sorted(f"serviceAccount:{account_id(config, i)}@{project}.iam.gserviceaccount.com"
                     for i in IDENTITIES)
    return {"name": f"projects/{project}/secrets/{KEY_SECRET}", "secretId": KEY_SECRET,
            "annotations": {KEY_ANNOTATION: KEY_ANNOTATION_VALUE},
            "bindings": [{"role": SECRET_ACCESSOR, "members": readers}]}


def render_text(plan: dict[str, Any]) -> str:
    """The GCP bootstrap plan as text, with the JSON to paste where the user sets it up by hand."""
    lines = [f"GCP project {plan['target']}: the tool's service accounts, custom roles and bindings "
             "(`--apply` creates them; or use gcloud)"]
    for ident in plan["identities"]:
        lines += ["", f"== {ident['identity']}: {ident['serviceAccount']}",
                  json.dumps(ident["role"], indent=2)]
        if "grantRole" in ident:
            lines.append(json.dumps(ident["grantRole"], indent=2))
    lines += ["", "== project bindings (add to the project's IAM policy, version 3):",
              json.dumps({"bindings": plan["bindings"], "version": 3}, indent=2)]
    key = plan["signingKey"]
    lines += ["", f"== marker signing key: Secret Manager secret {key['name']} (64 random hex characters, "
                  "made by `--apply`), readable through its own IAM policy by:",
              json.dumps(key["bindings"], indent=2)]
    audit = plan.get("auditSink")
    if audit is not None:
        lines += ["", f"== audit trail {audit['sink']['url']} (every tool service account reads it; all "
                      "but discover append to it)"]
        if "role" in audit:
            lines += [json.dumps(audit["role"], indent=2),
                      f"   bound on the bucket {audit['bucket']}'s IAM policy (not the project's; "
                      "no delete; a condition needs the bucket's uniform bucket-level access):",
                      json.dumps(audit["bucketBinding"], indent=2),
                      json.dumps(audit["readRole"], indent=2),
                      "   bound the same way for discover, which reads the trail and never writes it:",
                      json.dumps(audit["readBucketBinding"], indent=2), "   with gcloud:",
                      *(f"   {command}" for command in audit["commands"])]
        if "signingKey" in audit:
            lines += [f"   audit signing key: Secret Manager secret {audit['signingKey']['name']} (64 random "
                      "hex characters, made by `--apply`), readable through its own IAM policy by:",
                      json.dumps(audit["signingKey"]["bindings"], indent=2)]
        if "note" in audit:
            lines.append(f"   note: {audit['note']}")
    return "\n".join(lines)
