"""The JSON Schema of a workload manifest, for editors' YAML language servers.

It says statically what it can of what ``validate`` checks: each field's form (the
patterns the manifest models check, see ``_Checked`` in :mod:`workload_ids.manifest`), the
template names (the built-in ones and a config's), which resources a template accepts, and
the rules that tie fields together (one target block, the one the provider names; a
GitHub entry's ref or environment; key mode without federation). Every field carries a
``description`` and ``examples`` for hover.

Two rules keep it honest, and tests hold it to them: whatever it refuses, ``validate``
refuses too (a manifest it accepts may still fail the checks that need the config or the
catalogs); and its refusals read well in yaml-language-server, which shows ``errorMessage``
and ``patternErrorMessage`` (its extensions) instead of the bare keyword that failed. So the
rules between fields are ``if``/``then`` chains, never a ``oneOf`` whose failure reads
"matches more than one schema".
"""

from __future__ import annotations

import copy
from typing import Any

from .manifest import API_VERSION, Workload, portable_pattern
from .resources import KINDS_BY_PROVIDER
from .templates import TemplateSet, load_templates

SCHEMA_ID = "https://workload-ids.dev/schema/workload-v1.json"
PROVIDERS = ("aws", "gcp", "azure")
_FEDERATION_KINDS = {"github-actions": "GithubActionsFederation", "kubernetes": "KubernetesFederation",
                     "aws-service": "AwsServiceFederation"}

# Hover text and examples, by model and field; a test checks that every field has both.
_DOCS: dict[str, dict[str, tuple[str, list[Any]]]] = {
    "Workload": {
        "apiVersion": ("The manifest format's version.", [API_VERSION]),
        "kind": ("What this document is: a workload that needs a cloud identity.", ["Workload"]),
        "metadata": ("Who and what the workload is: its name, owner and environment.",
                     [{"name": "payments-api", "owner": "team-payments", "environment": "prod"}]),
        "spec": ("What the workload needs: its cloud, how it authenticates, what it reaches.",
                 [{"provider": "aws", "aws": {"account": "123456789012", "region": "eu-west-1"}}]),
    },
    "Metadata": {
        "name": ("The workload's name, unique per environment and target: 3-40 lowercase letters, "
                 "digits and hyphens. It names the identity in the cloud.", ["payments-api"]),
        "owner": ("The person or group answerable for the identity, by its id in the owner "
                  "directory. A leaver's identities are quarantined by `cleanup`.", ["team-payments"]),
        "environment": ("The environment the identity serves: 1-16 lowercase letters, digits and "
                        "hyphens.", ["prod", "staging"]),
        "description": ("What the workload is, for people reading plans and inventories: one line "
                        "of printable text, at most 256 characters.", ["Public payments API"]),
    },
    "Spec": {
        "provider": ("The cloud the identity lives in; the block of the same name (`aws`, `gcp` "
                     "or `azure`) says where.", ["aws", "gcp", "azure"]),
        "runtime": ("Where the workload runs. Lint uses it: a runtime that can federate should "
                    "not hold a key.", ["github-actions", "kubernetes", "ecs"]),
        "aws": ("Where an AWS workload's role lives (provider: aws only).",
                [{"account": "123456789012", "region": "eu-west-1"}]),
        "gcp": ("Where a GCP workload's service account lives (provider: gcp only).",
                [{"project": "acme-prod"}]),
        "azure": ("Where an Azure workload's managed identity lives (provider: azure only).",
                  [{"subscription": "0b1f6471-1bf0-4dda-aec3-cb9272f09590",
                    "resourceGroup": "rg-identities", "location": "westeurope"}]),
        "credentials": ("How the workload obtains credentials: by federation (keyless, the "
                        "default) or a rotated key.",
                        [{"mode": "keyless", "federation": [
                            {"kind": "github-actions", "repository": "acme/payments",
                             "ref": "refs/heads/main"}]}]),
        "access": ("What the identity may do: each entry a template or raw actions, on exact "
                   "resources.",
                   [[{"template": "object-storage.read", "resources": ["arn:aws:s3:::acme-invoices"]}]]),
        "mode": ("`manage`: apply converges the identity. `observe`: plan reports drift, apply and "
                 "rotate never change the identity. Default from the config's `defaults.mode`.",
                 ["manage", "observe"]),
        "deletionPolicy": ("When the manifest is removed, `delete`: cleanup quarantines and later "
                           "deletes the identity; `retain`: cleanup only removes the workload-ids "
                           "marker and keeps the identity. Default from the config's "
                           "`defaults.deletionPolicy`.", ["delete", "retain"]),
        "adopted": ("Written by `workload-ids adopt`: the existing identity (an IAM role ARN, a GCP "
                    "service account's email, an Azure user-assigned managed identity's resource "
                    "id) this manifest took over; it keeps its own name.",
                    ["arn:aws:iam::123456789012:role/legacy-deployer",
                     "legacy-deployer@acme-prod.iam.gserviceaccount.com"]),
    },
    "AwsTarget": {
        "account": ("The 12-digit AWS account id, quoted so YAML keeps it a string.",
                    ["123456789012"]),
        "region": ("The AWS region of the workload's resources.", ["eu-west-1", "us-east-1"]),
        "maxSessionDuration": ("How long a session of the role lasts (AWS allows 1h to 12h).",
                               ["1h", "12h"]),
    },
    "GcpTarget": {
        "project": ("The GCP project id (6-30 lowercase letters, digits and hyphens), not its "
                    "number.", ["acme-prod"]),
    },
    "AzureTarget": {
        "subscription": ("The Azure subscription id, a GUID.",
                         ["0b1f6471-1bf0-4dda-aec3-cb9272f09590"]),
        "resourceGroup": ("The resource group that holds the managed identity.", ["rg-identities"]),
        "location": ("The Azure location of the managed identity.", ["westeurope"]),
    },
    "GithubActionsFederation": {
        "kind": ("GitHub Actions workflows of one repository.", ["github-actions"]),
        "repository": ("OWNER/REPO; OWNER must be in the config's `trust.allowedGithubOwners`.",
                       ["acme/payments"]),
        "ref": ("The full branch or tag ref the workflow runs on, without wildcards; give "
                "exactly one of `ref` and `environment`.", ["refs/heads/main"]),
        "environment": ("The GitHub environment the job runs in, without wildcards; give exactly "
                        "one of `ref` and `environment`.", ["production"]),
        "workloadIdentityPool": ("GCP only: the workload identity pool that trusts the issuer.",
                                 ["projects/123456789012/locations/global/workloadIdentityPools/github"]),
        "repositoryId": ("The repository's immutable numeric id: a renamed or re-created "
                         "repository of the same name is not trusted (AWS only).", [123456789]),
        "repositoryOwnerId": ("The owner's immutable numeric id; refused by `validate` (no cloud "
                              "checks it), shown here so the error is explained.", [1234567]),
    },
    "KubernetesFederation": {
        "kind": ("A Kubernetes service account, trusted through its cluster's OIDC issuer.",
                 ["kubernetes"]),
        "issuer": ("The cluster's OIDC issuer URL (https); it must be in the config's "
                   "`trust.allowedIssuers`.",
                   ["https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B7"]),
        "namespace": ("The service account's namespace.", ["payments"]),
        "serviceAccount": ("The service account's name.", ["payments-api"]),
        "workloadIdentityPool": ("GCP only: the workload identity pool that trusts the issuer.",
                                 ["projects/123456789012/locations/global/workloadIdentityPools/k8s"]),
    },
    "AwsServiceFederation": {
        "kind": ("An AWS service that assumes the role for the workload (AWS only).",
                 ["aws-service"]),
        "service": ("The service principal; by default ECS tasks and Lambda are allowed.",
                    ["ecs-tasks.amazonaws.com", "lambda.amazonaws.com"]),
    },
    "Attachment": {
        "kind": ("The runtime that runs as this identity: `cloud-run` or `compute-engine` (GCP), "
                 "`app-service` (Azure App Service or Functions), `lambda` or `ecs` (AWS). AKS "
                 "and other Kubernetes workloads federate instead (a `kubernetes` federation "
                 "entry); EC2 needs an instance profile workload-ids does not create.",
                 ["cloud-run", "app-service", "lambda"]),
        "service": ("cloud-run: the Cloud Run service or job (no wildcards). For reviewers: GCP "
                    "lets whoever may attach the account pick the service.", ["payments-api"]),
        "region": ("cloud-run: the service's region.", ["europe-west1"]),
        "instance": ("compute-engine: the VM instance (no wildcards), for reviewers.", ["batch-runner-1"]),
        "zone": ("compute-engine: the instance's zone.", ["europe-west1-b"]),
        "site": ("app-service: the site's resource id, in the workload's subscription.",
                 ["/subscriptions/0b1f6471-1bf0-4dda-aec3-cb9272f09590/resourceGroups/rg-web/providers/"
                  "Microsoft.Web/sites/payments-api"]),
        "function": ("lambda: the function, for reviewers (the role trusts the Lambda service in "
                     "the account).", ["payments-api"]),
        "cluster": ("ecs: the cluster, for reviewers (the role trusts ECS tasks in the account).",
                    ["prod"]),
        "deployers": ("Who may attach this identity to a runtime, and no other identity: GCP "
                      "members (`serviceAccount:`, `user:`, `group:` EMAIL) get "
                      "roles/iam.serviceAccountUser on the service account; Entra object ids get "
                      "Managed Identity Operator on the managed identity. Each must be in the "
                      "config's `trust.allowedDeployers`. Not on AWS, where iam:PassRole lives on "
                      "the deployer's own policy.",
                      [["serviceAccount:deployer@acme-ci.iam.gserviceaccount.com"],
                       ["3f2504e0-4f89-41d3-9a0c-0305e82c3301"]]),
    },
    "Rotation": {
        "maxAge": ("Key mode: replace the key when it is this old (default from the config).",
                   ["30d", "90d"]),
        "overlap": ("Key mode: how long the old key stays active beside the new one; shorter "
                    "than maxAge.", ["1d", "12h"]),
        "grace": ("Key mode: a deactivated key is deleted after this.", ["7d"]),
        "retireOnUse": ("Key mode: deactivate the old key as soon as the new one is seen in use.",
                        [True]),
    },
    "Credentials": {
        "mode": ("`keyless` (default): federation or attachment only, no secret exists. `key`: a "
                 "rotated key, for workloads that can do neither.", ["keyless", "key"]),
        "federation": ("Who may obtain the identity's credentials (keyless mode only).",
                       [[{"kind": "github-actions", "repository": "acme/payments",
                          "ref": "refs/heads/main"}]]),
        "attachedTo": ("The runtimes that run as this identity (keyless mode only): the cloud "
                       "gives them its credentials, with no federation; and who may attach it.",
                       [[{"kind": "cloud-run", "service": "payments-api", "region": "europe-west1",
                          "deployers": ["group:payments-deployers@acme.example"]}]]),
        "rotation": ("How the key is rotated (key mode only); each field defaults from the config.",
                     [{"maxAge": "30d", "overlap": "1d", "grace": "7d"}]),
    },
    "Escalation": {
        "reason": ("Why the entry needs an action that can escalate privilege, for reviewers "
                   "(10-500 characters). It approves nothing: the config's "
                   "`guardrails.approvedEscalations` does.",
                   ["deploys the worker's task definition, which passes the task role"]),
    },
    "AccessEntry": {
        "template": ("An access template by name: the built-in ones, or those in the config's "
                     "`templates:` folders.", ["object-storage.read", "queue.consume"]),
        "actions": ("Raw actions, when no template fits: exact names, no wildcards; needs a "
                    "`reason`.", [["dynamodb:GetItem", "dynamodb:Query"]]),
        "dataActions": ("Azure only, raw entries: data-plane operations.",
                        [["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"]]),
        "resources": ("1-100 exact resources of a kind the template accepts, in the workload's "
                      "account and region, project or subscription: ARNs (AWS), resource names "
                      "(GCP), ARM ids (Azure). No wildcards.",
                      [["arn:aws:s3:::acme-invoices"]]),
        "reason": ("Why no template fits (required with raw actions): one line of printable "
                   "text.", ["reads the payments table directly"]),
        "escalation": ("Why this entry may hold actions that can escalate privilege.",
                       [{"reason": "deploys the worker's task definition, which passes the task role"}]),
        "expires": ("Makes the entry a time-bound grant that ends at this instant: RFC 3339 with "
                    "its zone (Z or an offset). AWS and GCP end it by their own condition "
                    "(aws:CurrentTime, request.time); on Azure the first apply after it removes "
                    "the assignment. At most `guardrails.maxGrantDuration` (default 90d) ahead; "
                    "needs `approval`. Once past, validate warns and apply removes the grant.",
                    ["2026-12-31T18:00:00Z", "2026-12-31T19:00:00+01:00"]),
        "approval": ("The change or ticket that approved the time-bound grant (required with "
                     "`expires`): one line of printable text, 3-100 characters; plan and the GCP "
                     "condition cite it.", ["CHG-4711", "JIRA-SEC-812"]),
    },
}


# Where each model's fields sit in a manifest: hover shows the field's path as its title.
_PATHS = {"Workload": "", "Metadata": "metadata.", "Spec": "spec.", "AwsTarget": "spec.aws.",
          "GcpTarget": "spec.gcp.", "AzureTarget": "spec.azure.", "Credentials": "spec.credentials.",
          "GithubActionsFederation": "spec.credentials.federation[].",
          "KubernetesFederation": "spec.credentials.federation[].",
          "AwsServiceFederation": "spec.credentials.federation[].",
          "Attachment": "spec.credentials.attachedTo[].",
          "Rotation": "spec.credentials.rotation.", "AccessEntry": "spec.access[].",
          "Escalation": "spec.access[].escalation."}


def manifest_schema(templates: TemplateSet | None = None) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of one ``kind: Workload`` document; ``templates``: the
    templates a manifest may name (default: the built-in ones)."""
    templates = templates if templates is not None else load_templates()
    schema = _tidy(Workload.model_json_schema())
    defs: dict[str, Any] = schema["$defs"]
    for name, fields in _DOCS.items():
        properties = (schema if name == "Workload" else defs.get(name, {})).get("properties", {})
        for field, (description, examples) in fields.items():
            if field in properties:
                properties[field].update({
                    "title": _PATHS.get(name, "") + field, "description": description,
                    # yaml-language-server shows this one as it is (description is escaped).
                    "markdownDescription": description, "examples": examples})
    _federation(defs)
    _credentials(defs["Credentials"])
    _access(defs["AccessEntry"], templates)
    _spec(defs["Spec"], templates)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": f"workload-ids Workload manifest ({API_VERSION})",
        **{k: v for k, v in schema.items() if k != "title"},
    }


def _tidy(node: Any) -> Any:
    """Pydantic's schema, made to read well in an editor: no generated titles (hover shows
    them, as ``Template || Template`` for an optional field); an optional field is its type
    or null, never an ``anyOf`` (hover lists each branch)."""
    if isinstance(node, list):
        return [_tidy(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _tidy(v) for k, v in node.items()
           if not (k in ("title", "discriminator") and isinstance(v, str | dict))
           and not (k == "default" and v is None)}  # completion would offer "Default value"
    branches = out.get("anyOf")
    if isinstance(branches, list) and len(branches) == 2 and {"type": "null"} in branches:
        value = next(b for b in branches if b != {"type": "null"})
        del out["anyOf"]
        if "$ref" in value:
            out["oneOf"] = [value, {"type": "null"}]  # exclusive: an object is never null
        else:
            merged = dict(value)
            if "type" in merged:
                merged["type"] = [merged["type"], "null"]
            if "enum" in merged:
                merged["enum"] = [*merged["enum"], None]
            out = {**merged, **out}
    return out


def _federation(defs: dict[str, Any]) -> None:
    """A federation entry: ``kind`` picks the entry's fields (``if``/``then``), so a wrong
    kind says which kinds there are, and a right one is checked against its own fields."""
    defs["Credentials"]["properties"]["federation"]["items"] = {
        "type": "object",
        "required": ["kind"],
        "properties": {"kind": {
            "enum": list(_FEDERATION_KINDS),
            "errorMessage": "federation 'kind' must be one of 'github-actions', 'kubernetes', "
                            "'aws-service'",
            "title": "spec.credentials.federation[].kind",
            "description": "Who is trusted: GitHub Actions workflows, a Kubernetes service "
                           "account, or an AWS service.",
            "examples": list(_FEDERATION_KINDS)}},
        "allOf": [{"if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
                   "then": {"$ref": f"#/$defs/{model}"}}
                  for kind, model in _FEDERATION_KINDS.items()],
    }
    message = ("github-actions federation needs exactly one of 'ref' (e.g. refs/heads/main) or "
               "'environment'")
    defs["GithubActionsFederation"].update({
        "if": {"required": ["environment"], "properties": {"environment": {"type": "string"}}},
        "then": {"properties": {"ref": {"type": "null", "errorMessage": message + ", not both"}}},
        "else": {"required": ["ref"], "errorMessage": message,
                 "properties": {"ref": {"type": "string", "errorMessage": message}}},
    })


def _credentials(credentials: dict[str, Any]) -> None:
    credentials["if"] = {"properties": {"mode": {"const": "key"}}, "required": ["mode"]}
    credentials["then"] = {"properties": {"federation": {"items": {
        "type": "null",
        "errorMessage": "key mode takes no federation entries: a workload that can federate "
                        "should use mode: keyless and hold no key"}},
        "attachedTo": {"items": {
            "type": "null",
            "errorMessage": "key mode takes no attachedTo entries: an identity a runtime is "
                            "attached to gets its credentials from the cloud; use mode: keyless"}}}}
    credentials["else"] = {"properties": {"rotation": {
        "type": "null",
        "errorMessage": "rotation applies to mode: key only; keyless workloads hold no key"}}}


_TEMPLATE_ENTRY = {"required": ["template"], "properties": {"template": {"type": "string"}}}
_RAW_ENTRY = {"required": ["actions"], "properties": {"actions": {"type": "array"},
                                                       "template": {"type": "null"}}}


def _access(entry: dict[str, Any], templates: TemplateSet) -> None:
    """An access entry is a template entry or a raw one, never both nor neither."""
    template = entry["properties"]["template"]
    template["enum"] = [*templates.names(), None]
    by_name = {t.name: t.spec.description for t in templates}
    # Hover and completion show what each template is for.
    template["markdownEnumDescriptions"] = [*(by_name[n] for n in templates.names()),
                                            "no template: a raw entry (`actions` and a `reason`)"]
    template["errorMessage"] = ("unknown template; the templates are: "
                                + ", ".join(templates.names()))
    neither = "this entry has neither 'template' nor raw 'actions': add one"
    entry["allOf"] = [
        {"if": _TEMPLATE_ENTRY,
         "then": {"properties": {
             "actions": {"type": "null", "errorMessage": "this entry has both 'template' and raw "
                                                         "'actions': split it into two entries"},
             "reason": {"type": "null", "errorMessage": "'reason' goes with raw 'actions'; a "
                                                        "template states its purpose"},
             "dataActions": {"type": "null", "errorMessage": "'dataActions' goes with raw "
                                                             "'actions', not with a template"}}},
         "else": {"required": ["actions"], "errorMessage": neither,
                  "properties": {"actions": {"type": "array", "errorMessage": neither}}}},
        {"if": {"required": ["expires"]},
         "then": {"required": ["approval"],
                  "errorMessage": "a time-bound grant needs 'approval': the change or ticket that "
                                  "approved it"}},
        {"if": {"required": ["approval"]},
         "then": {"required": ["expires"],
                  "errorMessage": "'approval' goes with 'expires': add 'expires' or remove 'approval'"}},
        {"if": _RAW_ENTRY,
         "then": {"required": ["reason"],
                  "errorMessage": "raw 'actions' need a 'reason' saying why no template fits",
                  "properties": {"reason": {"type": "string", "errorMessage": "raw 'actions' need "
                                            "a 'reason' saying why no template fits"}}}},
    ]


def _spec(spec: dict[str, Any], templates: TemplateSet) -> None:
    """What depends on ``provider``: the target block, the federation kinds and pools, the
    templates that have a definition for the cloud, and the resources each accepts."""
    rules: list[dict[str, Any]] = []
    for provider in PROVIDERS:
        article = "an" if provider in ("aws", "azure") else "a"
        missing = (f"provider is {provider} but spec.{provider} is missing; add spec.{provider} "
                   "with where the identity lives")
        then: dict[str, Any] = {
            "required": [provider], "errorMessage": missing,
            "properties": {provider: {"type": "object", "errorMessage": missing}}}
        for other in PROVIDERS:
            if other != provider:
                then["properties"][other] = {
                    "type": "null",
                    "errorMessage": f"spec.{other} does not apply to {article} {provider} "
                                    "workload; remove it"}
        federation: dict[str, Any] = {}
        kinds: list[dict[str, Any]] = []
        if provider != "aws":
            # Only for that kind: a misspelt kind gets one message, the entry's own.
            kinds.append({
                "if": {"properties": {"kind": {"const": "aws-service"}}, "required": ["kind"]},
                "then": {"properties": {"kind": {
                    "enum": ["github-actions", "kubernetes"],
                    "errorMessage": f"aws-service federation works on AWS only, not {provider}"}}}})
        if provider == "gcp":
            need = ("GCP federation needs 'workloadIdentityPool' "
                    "(projects/NUMBER/locations/global/workloadIdentityPools/POOL)")
            kinds.append({
                "if": {"properties": {"kind": {"enum": ["github-actions", "kubernetes"]}},
                       "required": ["kind"]},
                "then": {"required": ["workloadIdentityPool"], "errorMessage": need,
                         "properties": {"workloadIdentityPool": {"type": "string",
                                                                 "errorMessage": need}}}})
        else:
            federation["properties"] = {"workloadIdentityPool": {
                "type": "null",
                "errorMessage": f"workloadIdentityPool applies to GCP only, not {provider}"}}
        if kinds:  # an empty allOf is not a schema
            federation["allOf"] = kinds
        then["properties"]["credentials"] = {"properties": {"federation": {"items": federation}}}
        then["properties"]["access"] = {"items": _entry_for(provider, templates)}
        rules.append({"if": {"properties": {"provider": {"const": provider}}, "required": ["provider"]},
                      "then": then})
    spec["allOf"] = rules


def _entry_for(provider: str, templates: TemplateSet) -> dict[str, Any]:
    """An access entry on ``provider``: its templates, and the resources each accepts."""
    rules: list[dict[str, Any]] = []
    entry: dict[str, Any] = {}
    names = sorted(t.name for t in templates if t.kinds(provider))
    if len(names) < len(templates.names()):
        # Only for a known name: a typo gets one message, the entry's own ("unknown template").
        rules.append({
            "if": {"required": ["template"],
                   "properties": {"template": {"enum": templates.names()}}},
            "then": {"properties": {"template": {
                "enum": names,
                "errorMessage": f"this template has no {provider} definition; the {provider} "
                                f"templates are: {', '.join(names)}"}}}})
    if provider != "azure":
        rules.append({"if": _RAW_ENTRY, "then": {"properties": {"dataActions": {
            "type": "null",
            "errorMessage": "'dataActions' are Azure data-plane operations; use 'actions' here"}}}})
        # Azure's ids are matched without regard to case, which a JSON Schema pattern cannot say.
        for template in sorted(templates, key=lambda t: t.name):
            kinds = [KINDS_BY_PROVIDER[provider][k] for k in template.kinds(provider)]
            if not kinds:
                continue
            union = "|".join(k.source for k in kinds)
            rules.append({
                "if": {"properties": {"template": {"const": template.name}}, "required": ["template"]},
                "then": {"properties": {"resources": {"items": {
                    "pattern": portable_pattern(union),
                    "patternErrorMessage": f"{template.name} accepts {', '.join(k.name for k in kinds)} "
                                           f"(e.g. {'; '.join(k.example for k in kinds[:2])})"}}}},
            })
    if rules:  # an empty allOf is not a schema
        entry["allOf"] = rules
    return copy.deepcopy(entry)
