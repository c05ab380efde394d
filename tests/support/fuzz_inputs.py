"""Hypothesis strategies for every file a user hands workload-ids, and the properties each
outcome must have. Used by ``tests/test_fuzz.py`` (a few hundred examples, in CI) and by
``benchmarks/fuzz.py`` (ten thousand, by hand).

The rule under test: bad input gets exit 1 and at least one ``FILE:LINE:COLUMN: message``
line, never a traceback or an "internal error"; good input gets exit 0 (or 3, when every
problem is a guardrail refusal, as documented); and nothing reaches a cloud backend.

Inputs start from files that are valid (the examples, the README's configuration, the
example owners file) and are then changed:

* as data: keys dropped or added, values replaced by other types, enum values changed,
  resource ids truncated, spaced, upper-cased or taken from another cloud, list items
  duplicated; and valid variants (new names, owners, descriptions) so both outcomes occur;
* as text: bytes flipped, truncated at any point, tabs, wrong indentation, duplicated
  lines (duplicate keys), anchors and aliases, tags (``!!python/object``, ``!!int x``),
  more documents, BOMs, CRLF, invalid UTF-8;
* whole files of their own: empty, scalars, alias bombs, recursive aliases, nesting a
  thousand levels deep, a 1 MB scalar.

A generated file is a :class:`Case`: its bytes and a short account of how it was made.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml
from hypothesis import strategies as st

from workload_ids.bundled import bundled_dir

EXAMPLES = bundled_dir("examples")
TEMPLATE_NAMES = sorted(p.stem for p in bundled_dir("templates").glob("*.yaml"))
MB = 1_000_000
_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


@dataclass(frozen=True)
class Case:
    """One generated file: its name, its bytes, and how it was made."""

    name: str
    data: bytes
    how: str

    def __repr__(self) -> str:
        # Hypothesis prints the falsifying example: keep a 1 MB scalar out of the report.
        shown = self.data if len(self.data) <= 4000 else \
            self.data[:2000] + b"<... %d bytes ...>" % (len(self.data) - 4000) + self.data[-2000:]
        return f"Case(name={self.name!r}, how={self.how!r}, data={shown!r})"


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


MANIFEST_EXAMPLES: dict[str, str] = {
    f"{p.parent.name}/{p.name}": _read(p)
    for provider in ("aws", "gcp", "azure") for p in sorted((EXAMPLES / provider).glob("*.yaml"))}
MANIFEST_DATA: dict[str, Any] = {k: yaml.safe_load(v) for k, v in MANIFEST_EXAMPLES.items()}
RESOURCE_IDS = sorted({r for doc in MANIFEST_DATA.values() for entry in doc["spec"].get("access", [])
                       for r in entry["resources"]})

# Every section of the README's "Configuration", with values that are valid together.
CONFIG_FULL = """\
templates: [tpl-good]
aws:
  sandboxCredentials: false
  rolePath: /workload-ids/
  namePrefix: wid
  permissionsBoundary: "arn:aws:iam::{account}:policy/workload-boundary"
  maxSessionDuration: 1h
  accounts:
    "210987654321": {profile: other-account}
    "123456789012": {roleArn: "arn:aws:iam::123456789012:role/deployer"}
gcp:
  iamEndpoint: localhost:8085
  resourceManagerEndpoint: http://localhost:8086
  sandboxCredentials: true
  namePrefix: wid
azure:
  armEndpoint: https://localhost:8443
  sandboxCredentials: true
  keyVaultUrl: https://acme.vault.azure.net
  lockContainerUrl: https://acmelocks.blob.core.windows.net/workload-ids-locks
  tenantId: 72f988bf-86f1-41af-91ab-2d7cd011db47
  caBundle: ca.pem
  namePrefix: wid
guardrails:
  allowedTargets: []
  allowedEnvironments: []
  deniedActions: [iam:CreateUser]
  maxResourcesPerWorkload: 50
  requirePermissionsBoundary: false
  approvedEscalations:
    - workload: prod/payments-api
      provider: aws
      target: "123456789012"
      actions: [iam:PassRole]
      resources: ["arn:aws:iam::123456789012:role/workload-ids/wid_prod_worker"]
      reason: "OPS-1234: approved by the platform team"
trust:
  allowedGithubOwners: [acme]
  allowedIssuers: [https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B7]
  gcpProjectNumbers: {acme-prod: 123456789012}
  allowedPools: [projects/210987654321]
  allowedAwsServices: [ecs-tasks.amazonaws.com]
credentials:
  secretName: "workload-ids/{environment}/{name}"
  rotation: {maxAge: 30d, overlap: 2d, grace: 7d, retireOnUse: true}
  verify: {successes: 3, interval: 2s, timeout: 120s}
calls: {maxAttempts: 8, maxRetrySeconds: 60, concurrency: 8}
owners:
  source: file
  path: owners.yaml
  timeout: 10s
audit:
  path: audit.jsonl
cleanup:
  grace: 7d
  minAge: 1h
  maxActions: 10
  maxShare: 0.10
  fallbackOwner: {prod: team-platform}
  unusedAfter: 90d
  quarantineUnused: false
targets:
  aws:
    - {account: "210987654321"}
    - {account: "111122223333", roleArn: "arn:aws:iam::111122223333:role/workload-ids-cleanup"}
  gcp:
    - {project: acme-prod}
  azure:
    - {subscription: 0b1f6471-1bf0-4dda-aec3-cb9272f09590, retired: true}
"""
CONFIG_EXAMPLES: dict[str, str] = {
    "examples/workload-ids.yaml": _read(EXAMPLES / "workload-ids.yaml"),
    "full": CONFIG_FULL,
    "tests' default": "credentials:\n  verify: {interval: 0s}\n",
    "empty": "",
}
CONFIG_DATA: dict[str, Any] = {k: yaml.safe_load(v) or {} for k, v in CONFIG_EXAMPLES.items()}

OWNERS_YAML = _read(EXAMPLES / "owners.yaml")
OWNERS_DATA: Any = yaml.safe_load(OWNERS_YAML)
OWNER_IDS = sorted({o["id"] for o in OWNERS_DATA["owners"]} | {"team-gone", "nobody"})


def _owners_csv(entries: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "kind", "active", "members", "successor"])
    for e in entries:
        writer.writerow([e["id"], e["kind"], str(e["active"]).lower(), " ".join(e.get("members", [])),
                         e.get("successor", "")])
    return buf.getvalue()


OWNERS_CSV = _owners_csv(OWNERS_DATA["owners"])

# The folders beside a fuzzed config file that its ``templates`` and ``owners.path`` may
# name: a good user template, and folders a user could get wrong.
USER_TEMPLATE = """\
name: acme.queue-peek
description: Look at messages without taking them.
aws:
  sqs-queue:
    - actions: [sqs:GetQueueAttributes]
"""
CONFIG_TREE: dict[str, bytes] = {
    "tpl-good/acme.queue-peek.yaml": USER_TEMPLATE.encode(),
    "tpl-broken/broken.yaml": b"name: acme.broken\ndescription: [unclosed\n",
    "tpl-shape/shape.yaml": b"name: Not A Name\ndescription: 1\naws: {sqs-queue: [{actions: []}]}\n",
    "tpl-builtin/queue.consume.yaml": USER_TEMPLATE.replace("acme.queue-peek", "queue.consume").encode(),
    "tpl-latin1/latin1.yaml":
        "name: acme.caf\u00e9\ndescription: caf\u00e9 \u00e0 la carte\n".encode("latin-1"),
    "tpl-folder/folder.yaml/README": b"a folder whose name ends in .yaml\n",
    "owners.yaml": OWNERS_YAML.encode(),
    "ca.pem": b"not a certificate\n",
}


def write_tree(folder: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` (relative path -> bytes) under ``folder``."""
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


# --- values ------------------------------------------------------------------------

EDGE_STRINGS = (
    "", " ", "\t", "\n", "null", "~", "yes", "no", "on", "0x1F", "1e3", ".nan", "2001-13-45",
    "*", "?", "-", "--", "---", "...", "#", "a: b", "[", "{", "'", '"', "\\", "%", "@", "`", "|",
    "../..", "/", "a\x00b", "\x07bell", "\x1b[31mred", "\u202eevil", "\u200b", "\ufeff", "\u2028",
    "caf\u00e9", "\U0001f600", "\u0130", "stra\u00dfe", "\uff50\uff41\uff59",
    "\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669\u0660\u0661\u0662",  # Arabic-Indic digits
    "123456789012", "0123", "-1", "99999999999999999999", "iam:PassRole", "iam:*", "s3:*",
    "s3:DeleteBucket", "dynamodb:GetItem", "Microsoft.Authorization/roleAssignments/write",
    "iam.serviceAccounts.actAs", "arn:aws:iam::123456789012:role/x", "https://", "http://x",
    "{name}", "{unknown}", "{", "}", "{0}", "%s", "1h", "0s", "30d", "2w", "-1d", "1.5h", "999999w",
)
_SMALL_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=24)
_CONTROL_TEXT = st.text(st.characters(max_codepoint=0x9f, blacklist_categories=("Cs",)), max_size=12)
_HUGE = st.sampled_from([("x", MB), ("a-", MB // 2), ("9", 5000), ("\u00e9", 100_000), ("z", 10_000)]).map(
    lambda part: part[0] * part[1])


def scalars() -> st.SearchStrategy[Any]:
    """Values of every YAML scalar type, strings with control characters and other
    scripts, numbers of every size, and huge strings."""
    return st.one_of(
        st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(),
        st.sampled_from(EDGE_STRINGS), _SMALL_TEXT, _CONTROL_TEXT, _HUGE)


def values() -> st.SearchStrategy[Any]:
    """Scalars, and small lists and mappings of them."""
    return st.recursive(scalars(), lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.sampled_from(("kind", "name", "a", "")), _SMALL_TEXT), inner,
                        max_size=3)), max_leaves=5)


# --- data mutations ----------------------------------------------------------------

Path_ = tuple[Any, ...]


def _paths(doc: Any) -> list[Path_]:
    """Every node's path (keys and indexes), root first."""
    out: list[Path_] = []
    stack: list[tuple[Path_, Any]] = [((), doc)]
    while stack:
        at, node = stack.pop()
        out.append(at)
        if isinstance(node, dict):
            stack.extend(((*at, k), v) for k, v in reversed(list(node.items())))
        elif isinstance(node, list):
            stack.extend(((*at, i), v) for i, v in reversed(list(enumerate(node))))
    return out


def _get(doc: Any, at: Path_) -> Any:
    for part in at:
        doc = doc[part]
    return doc


def _put(doc: Any, at: Path_, value: Any) -> Any:
    """``doc`` with the node at ``at`` replaced by ``value`` (the root: ``value`` itself)."""
    if not at:
        return value
    _get(doc, at[:-1])[at[-1]] = value
    return doc


MANIFEST_ENUMS: dict[str, tuple[Any, ...]] = {
    "apiVersion": ("workload-ids/v1", "workload-ids/v2", "v1", "Workload-IDs/v1"),
    "kind": ("Workload", "workload", "Template", "github-actions", "kubernetes", "aws-service", "gitlab"),
    "provider": ("aws", "gcp", "azure", "AWS", "oci", "aws "),
    "mode": ("keyless", "key", "keys", "none", "Keyless"),
    "runtime": ("github-actions", "gitlab-ci", "kubernetes", "ecs", "lambda", "ec2", "cloud-run", "gce",
                "azure-functions", "azure-vm", "on-premises", "vendor-hosted", "other", "mainframe"),
    "template": (*TEMPLATE_NAMES, "acme.queue-peek", "queue.Consume", "queue", "queue.consume "),
    "region": ("eu-west-1", "us-gov-west-1", "us-iso-east-1", "mars-north-1", "eu-west-1a", "EU-WEST-1"),
    "account": ("123456789012", "210987654321", "12345678901", "1234567890123", 123456789012),
    "project": ("acme-prod", "acme-dev-01", "Acme-Prod", "a", "acme_prod", "a" * 31),
    "subscription": ("0b1f6471-1bf0-4dda-aec3-cb9272f09590", "0B1F6471-1BF0-4DDA-AEC3-CB9272F09590",
                     "11111111-2222-3333-4444-555555555555", "0b1f6471", "not-a-guid"),
    "resourceGroup": ("rg-orders", "rg_orders(1).v2", "rg-\u00e4rger", "r", "a" * 91, "rg.", "rg orders"),
    "location": ("westeurope", "eastus2", "West Europe", "w"),
    "ref": ("refs/heads/main", "refs/tags/v1", "refs/heads/feature/*", "main", "refs/pull/1/merge"),
    "environment": ("prod", "dev", "production", "Prod", "a" * 17, "p\u00e4", "*"),
    "service": ("ecs-tasks.amazonaws.com", "lambda.amazonaws.com", "ecs-tasks.amazonaws.com.cn", "*"),
    "issuer": ("https://token.actions.githubusercontent.com", "http://insecure.example.com", "https://"),
    "maxAge": ("30d", "1h", "59m", "0s", "1d", "90d"), "overlap": ("2d", "0s", "30d", "1w"),
    "grace": ("7d", "0s", "60d"), "maxSessionDuration": ("1h", "12h", "13h", "15m", "0s"),
    "retireOnUse": (True, False, "yes", "maybe"),
    "actions": (["iam:PassRole"], ["s3:DeleteBucket"], ["*"], ["s3:*"], [], ["dynamodb:GetItem"],
                ["Microsoft.Authorization/roleAssignments/write"], ["iam.serviceAccounts.actAs"],
                ["storage.objects.get"], ["Microsoft.Storage/storageAccounts/read"]),
    "dataActions": (["Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"], [], ["*"]),
    "escalation": ({"reason": "the deploy job passes its own role to ECS"}, {"reason": "short"}, {}),
    "reason": ("reads the payments table directly", "no", "x" * 501),
}
CONFIG_ENUMS: dict[str, tuple[Any, ...]] = {
    "source": ("file", "scim", "ldap", "File"),
    "path": ("owners.yaml", "missing.yaml", "audit.jsonl", "", ".", "a\x00b"),
    "templates": (["tpl-good"], ["tpl-broken"], ["tpl-shape"], ["tpl-builtin"], ["tpl-latin1"],
                  ["tpl-folder"], ["missing"], ["."], [".."], ["tpl-good", "tpl-good"],
                  ["x" * 5000], ["a\x00b"], []),
    "namePrefix": ("wid", "", "a" * 21, "WID", "w-i-d", "9wid"),
    "rolePath": ("/workload-ids/", "/", "workload-ids", "/a b/", "//"),
    "permissionsBoundary": ("arn:aws:iam::{account}:policy/b", "arn:aws:iam::123:policy/b", None),
    "roleArn": ("arn:aws:iam::123456789012:role/deployer", "arn:aws:iam::123456789012:user/x"),
    "tenantId": ("72f988bf-86f1-41af-91ab-2d7cd011db47", "tenant"),
    "workload": ("prod/payments-api", "payments-api", "prod/", "Prod/x", "prod/payments-api/x"),
    "actions": (["iam:PassRole"], [], ["iam:*"], ["IAM:passrole"], [""]),
    "allowedIssuers": (["https://a.example"], ["http://a.example"], [], ["https://a.example/"]),
    "allowedPools": (["projects/1"], ["projects/x"], ["projects/1/"], []),
    "gcpProjectNumbers": ({"acme-prod": 1}, {"acme-prod": 0}, {"Acme": 1}, {"acme-prod": "x"}),
    "allowedAwsServices": (None, [], ["ec2.amazonaws.com"], ["ec2"]),
    "secretName": ("workload-ids/{environment}/{name}", "{owner}/{provider}/{target}", "{unknown}",
                   "{name", "a b/{name}", "", "x" * 600, "{{name}}", "{0}", "{name.__class__}"),
    "successes": (1, 3, 0, 21), "maxAttempts": (1, 8, 20, 0, 21), "concurrency": (1, 64, 65),
    "maxRetrySeconds": (0, 0.5, 900, 901), "maxActions": (1, 0, -1), "maxShare": (0, 0.1, 1, 1.5),
    "maxResourcesPerWorkload": (1, 0, None), "requirePermissionsBoundary": (True, False),
    "allowedTargets": (["123456789012"], ["acme-prod"], []), "allowedEnvironments": (["dev"], ["prod"]),
    "deniedActions": (["sqs:ReceiveMessage"], ["s3:GetObject"], ["Microsoft.Storage/storageAccounts/read"]),
    "endpointUrl": ("http://localhost:5000", "localhost:5000", "https://collector.example", None),
    "iamEndpoint": ("localhost:8085", "http://localhost:8085", "localhost:999999"),
    "armEndpoint": ("https://localhost:8443", "http://localhost:8443"),
    "tokenEnv": ("WORKLOAD_IDS_SCIM_TOKEN", "SCIM_TOKEN", "1TOKEN", None),
    "url": ("https://idp.example.com/scim/v2", "ftp://x"),
    "fallbackOwner": ({"prod": "team-platform"}, {"prod": 1}, {}),
    "grace": ("7d", "1h", "59m", "0s", "2w"), "minAge": ("1h", "0s"), "unusedAfter": ("90d", "x"),
    "interval": ("2s", "0s", "1.5s"), "timeout": ("120s", "0s"), "maxAge": ("30d", "1h", "0s"),
    "overlap": ("2d", "30d", "31d"), "maxSessionDuration": ("1h", "12h", "0s"),
}
OWNERS_ENUMS: dict[str, tuple[Any, ...]] = {
    "kind": ("person", "group", "team", "Person", ""),
    "active": (True, False, "yes", "no", 1, 0, "maybe", None),
    "successor": (*OWNER_IDS, "", None, "x" * 200),
    "members": ([], ["alice"], ["nobody"], ["team-payments"], "alice", [1, 2]),
    "id": (*OWNER_IDS, "", "x" * 129, "team payments"),
}
UNKNOWN_KEYS = ("nmae", "Name", "metadata ", "spec", "provider", "resource", "Resources", "extra",
                "x-extension", "templates", "owner", "reason", "kind", "apiversion")

# Resource ids turned into ids of another cloud, or into near misses.
SWAPS = (("arn:aws:", "arn:aws-cn:"), ("arn:aws:", "arn:gcp:"), ("arn:aws:s3:::", "projects/_/buckets/"),
         ("projects/", "/subscriptions/"), ("/subscriptions/", "projects/"), ("eu-west-1", "us-east-1"),
         ("123456789012", "210987654321"), ("123456789012", "1234"), ("acme-prod", "acme-dev"),
         ("rg-orders", "rg-other"), ("/resourceGroups/", "/resourcegroups/"), (":", "::"), ("/", "//"),
         ("-", "_"), ("Microsoft.", "microsoft."), ("secrets/", "secret/"), ("table/", "tables/"))


@st.composite
def _string_mutation(draw: st.DrawFn, text: str) -> tuple[str, str]:
    how = draw(st.sampled_from(("truncate", "space", "swap", "upper", "insert", "wildcard", "other-id",
                                "replace")))
    if how == "truncate":
        return text[:draw(st.integers(0, len(text)))], how
    if how == "space":
        i = draw(st.integers(0, len(text)))
        return text[:i] + draw(st.sampled_from((" ", "  ", "\t", "\n", "\u00a0"))) + text[i:], how
    if how == "swap":
        swaps = [s for s in SWAPS if s[0] in text] or [("", "x")]
        old, new = draw(st.sampled_from(swaps))
        return text.replace(old, new, 1), f"swap {old!r}->{new!r}"
    if how == "upper":
        return text.upper(), how
    if how == "insert":
        i = draw(st.integers(0, len(text)))
        return text[:i] + draw(st.sampled_from(EDGE_STRINGS) | _CONTROL_TEXT) + text[i:], how
    if how == "wildcard":
        return text + draw(st.sampled_from(("*", "/*", "?", "[a]"))), how
    if how == "other-id":
        return draw(st.sampled_from(RESOURCE_IDS)), how
    return draw(st.sampled_from(EDGE_STRINGS) | _HUGE | _SMALL_TEXT), how


@st.composite
def mutated_data(draw: st.DrawFn, baseline: Any, enums: dict[str, tuple[Any, ...]]) -> tuple[Any, str]:
    """``baseline`` (a deep copy) after one to three changes, and what they were."""
    doc = copy.deepcopy(baseline)
    done: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        op = draw(st.sampled_from(("drop", "unknown-key", "retype", "enum", "enum", "string", "string",
                                   "duplicate-item", "rename-key")))
        if op == "enum":
            choices = [p for p in paths if p and p[-1] in enums]
            if not choices:
                op = "retype"
            else:
                at = draw(st.sampled_from(choices))
                doc = _put(doc, at, copy.deepcopy(draw(st.sampled_from(enums[at[-1]]))))
                done.append(f"enum {at}")
                continue
        if op == "string":
            leaves = [p for p in paths if isinstance(_get(doc, p), str)]
            if leaves:
                at = draw(st.sampled_from(leaves))
                new, how = draw(_string_mutation(_get(doc, at)))
                doc = _put(doc, at, new)
                done.append(f"{how} {at}")
                continue
            op = "retype"
        if op in ("drop", "rename-key") and len(paths) > 1:
            at = draw(st.sampled_from(paths[1:]))
            parent = _get(doc, at[:-1])
            value = parent[at[-1]]
            del parent[at[-1]]
            if op == "rename-key" and isinstance(parent, dict):
                key = str(at[-1])
                renamed = draw(st.sampled_from((key.upper(), key + "s", key[:-1], key.lower(), f" {key}")))
                parent[renamed] = value
            done.append(f"{op} {at}")
            continue
        if op == "unknown-key":
            maps = [p for p in paths if isinstance(_get(doc, p), dict)]
            if maps:
                at = draw(st.sampled_from(maps))
                key = draw(st.sampled_from(UNKNOWN_KEYS) | _SMALL_TEXT)
                _get(doc, at)[key] = draw(values())
                done.append(f"unknown key {key!r} at {at}")
                continue
        if op == "duplicate-item":
            lists = [p for p in paths if isinstance(_get(doc, p), list) and _get(doc, p)]
            if lists:
                at = draw(st.sampled_from(lists))
                items = _get(doc, at)
                items.append(copy.deepcopy(draw(st.sampled_from(items))))
                done.append(f"duplicate item at {at}")
                continue
        at = draw(st.sampled_from(paths))
        doc = _put(doc, at, draw(values()))
        done.append(f"retype {at}")
    return doc, "; ".join(done)


def dump(doc: Any, flow: bool | None = False, unicode: bool = True) -> str:
    """YAML text of ``doc`` (keys in their order)."""
    return str(yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=flow,
                         allow_unicode=unicode, width=4096))


@st.composite
def serialized(draw: st.DrawFn, doc: Any) -> str:
    return dump(doc, flow=draw(st.sampled_from((False, None, True))), unicode=draw(st.booleans()))


# --- text mutations ----------------------------------------------------------------

SNIPPETS = (
    "x-anchor: &anchor {a: 1}", "x-alias: *anchor", "x-undefined: *nowhere", "<<: {a: 1}",
    "? [complex]\n: key", "x: !!python/object/apply:os.system [\"true\"]", "x: !!python/name:os.system",
    "x: !custom value", "x: !!int x", "x: !!float abc", "x: !!bool maybe", "x: !!timestamp garbage",
    "x: 2001-13-45", "x: 2024-02-30 10:00:00", "x: " + "1" * 5000, "x: !!binary AAAA", "x: !!binary '%%%'",
    "x: !!set {a, b}", "x: !!omap [a: 1]", "%YAML 1.1", "---", "...", "x: 'unterminated",
    'x: "\\xZZ"', "x: [1, 2", "x: {a: 1", "- item", "x: @reserved", "x: `backtick", "x: a: b",
    "x: &r [*r]", "x: .nan", "x: -.inf", "x: 0o777", "x: 0x_1F", "~: null", "1: one", "x: |\n  block",
    "x: >-\n folded", "\t x: tabbed", "x: \x00", "x: \x1b", "x: \ufffe",
)
# Raw YAML values put where a string should be (``metadata.name: 2001-13-45``, say).
RAW_VALUES = (
    "2001-13-45", "2024-02-30", "!!int x", "!!float abc", "!!bool maybe", "!!timestamp garbage", "1" * 5000,
    "!!python/object/apply:os.system [\"true\"]", "*nowhere", "&a [*a]", "!!binary AAAA", "!!set {a}",
    "[" * 100 + "]" * 100, "[" * 600 + "]" * 600, "{a: " * 600 + "}" * 600, "[" * 5000 + "]" * 5000,
    "x" * MB, "'" + "x" * MB + "'", "0x" + "F" * 5000, "1e99999", "-.inf", "{}", "[]", "~", "''",
    "|\n", ">\n", "\"\\u0000\"", "\"\\ud800\"", "!!str", "! x",
)
_BYTES = (b"\x00", b"\t", b"\r", b"\n", b":", b"-", b"[", b"{", b"}", b"]", b"'", b'"', b"&", b"*", b"!",
          b"%", b"@", b"`", b"|", b">", b"#", b" ", b",", b"?", b"\xff", b"\xc3", b"\xe2\x80\xa8",
          b"\xef\xbb\xbf")


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


@st.composite
def mutated_text(draw: st.DrawFn, text: str) -> tuple[bytes, str]:
    """``text`` as bytes after one to three textual changes, and what they were."""
    data = text.encode("utf-8")
    done: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(("flip", "flip", "truncate", "tab", "indent", "dup-line", "drop-line",
                                   "snippet", "raw-value", "raw-value", "crlf", "cr", "bom", "latin1",
                                   "utf16")))
        lines = _lines(data)
        if op == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data = data[:i] + draw(st.sampled_from(_BYTES)) + data[i + 1:]
        elif op == "truncate":
            data = data[:draw(st.integers(0, len(data)))]
        elif op in ("tab", "indent", "dup-line", "drop-line", "snippet") and lines:
            i = draw(st.integers(0, len(lines) - 1))
            line = lines[i]
            indent = line[:len(line) - len(line.lstrip(b" "))]
            if op == "tab":
                lines[i] = b"\t" + line.lstrip(b" ") if draw(st.booleans()) else line.replace(b"  ", b"\t")
            elif op == "indent":
                lines[i] = line[1:] if line.startswith(b" ") and draw(st.booleans()) else b" " + line
            elif op == "dup-line":
                lines.insert(i, line)
            elif op == "drop-line":
                del lines[i]
            else:
                snippet = draw(st.sampled_from(SNIPPETS)).encode()
                lines.insert(i, b"\n".join(indent + part for part in snippet.split(b"\n")))
            data = b"\n".join(lines)
        elif op == "raw-value":
            keyed = [i for i, line in enumerate(lines) if re.match(rb"^\s*(- )?[A-Za-z]+: \S", line)]
            if keyed:
                i = draw(st.sampled_from(keyed))
                key = lines[i].split(b": ", 1)[0]
                value = draw(st.sampled_from(RAW_VALUES))
                lines[i] = key + b": " + value.encode()
                data = b"\n".join(lines)
                op = f"raw-value {value[:20]!r} at line {i + 1}"
        elif op == "crlf":
            data = data.replace(b"\n", b"\r\n")
        elif op == "cr":
            data = data.replace(b"\n", b"\r")
        elif op == "bom":
            data = b"\xef\xbb\xbf" + data
        elif op == "latin1":
            data = data.decode("utf-8", "replace").encode("latin-1", "replace") + b"\n# caf\xe9\n"
        elif op == "utf16":
            data = data.decode("utf-8", "replace").encode("utf-16")
        done.append(op)
    return data, "; ".join(done)


# --- manifests ---------------------------------------------------------------------

_VALID_NAME = st.from_regex(r"[a-z0-9][a-z0-9-]{1,38}[a-z0-9]", fullmatch=True)
_VALID_ENV = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?", fullmatch=True)
_VALID_OWNER = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,40}", fullmatch=True)
_DESCRIPTION = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=256)


@st.composite
def valid_manifests(draw: st.DrawFn) -> Case:
    """An example with a new name, environment, owner and description (all within the
    rules), written in block or flow style: validate should accept it."""
    example = draw(st.sampled_from(sorted(MANIFEST_DATA)))
    doc = copy.deepcopy(MANIFEST_DATA[example])
    meta = doc["metadata"]
    meta["name"] = draw(_VALID_NAME)
    meta["environment"] = draw(_VALID_ENV)
    meta["owner"] = draw(_VALID_OWNER)
    if draw(st.booleans()):
        meta["description"] = draw(_DESCRIPTION)
    else:
        meta.pop("description", None)
    text = draw(serialized(doc))
    return Case("workload.yaml", text.encode(), f"valid variant of {example}")


@st.composite
def mutated_manifests(draw: st.DrawFn) -> Case:
    """An example changed as data, then written as YAML."""
    example = draw(st.sampled_from(sorted(MANIFEST_DATA)))
    doc, how = draw(mutated_data(MANIFEST_DATA[example], MANIFEST_ENUMS))
    return Case("workload.yaml", draw(serialized(doc)).encode(), f"{example}: {how}")


@st.composite
def raw_manifests(draw: st.DrawFn) -> Case:
    """An example (as written, or after data changes) changed as text."""
    example = draw(st.sampled_from(sorted(MANIFEST_EXAMPLES)))
    text, how = MANIFEST_EXAMPLES[example], "as written"
    if draw(st.booleans()):
        doc, how = draw(mutated_data(MANIFEST_DATA[example], MANIFEST_ENUMS))
        text = draw(serialized(doc))
    data, text_how = draw(mutated_text(text))
    return Case("workload.yaml", data, f"{example} ({how}): {text_how}")


def _nest(depth: int) -> str:
    return "".join("  " * i + "a:\n" for i in range(depth)) + "  " * depth + "x\n"


@st.composite
def special_manifests(draw: st.DrawFn) -> Case:
    """Whole files that are not variations of one example."""
    examples = sorted(MANIFEST_EXAMPLES)
    first = MANIFEST_EXAMPLES[draw(st.sampled_from(examples))]
    second = MANIFEST_EXAMPLES[draw(st.sampled_from(examples))]
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8))
    depth = draw(st.sampled_from((10, 100, 499, 500, 999, 1000, 5000)))
    name = draw(st.sampled_from(("metadata.name", "description", "resource", "key", "document")))
    big = "x" * MB
    big_manifest = {
        "metadata.name": first.replace("\n  name: ", f"\n  name: {big}\n  x-old: ", 1),
        "description": MANIFEST_EXAMPLES["aws/payments-api.yaml"].replace(
            "Public payments API", big),
        "resource": MANIFEST_EXAMPLES["aws/payments-api.yaml"].replace("acme-invoices", big),
        "key": f"{big}: 1\n" + first,
        "document": big,
    }[name]
    files = {
        "empty": "", "newline": "\n", "comment": "# only a comment\n", "separator": "---\n",
        "null document": "--- null\n", "end marker": "...\n", "scalar": "Workload\n", "list": "[]\n",
        "list of workload": "- kind: Workload\n", "kind only": "kind: Workload\n",
        "other kind": "kind: Other\n",
        "two documents": first + "---\n" + second,
        "same twice": first + "\n---\n" + first,
        "then garbage": first + "\n---\n" + draw(st.sampled_from(SNIPPETS)) + "\n",
        "then a scalar": first + "---\nhello\n",
        "billion laughs": laughs + first,
        "recursive alias": "apiVersion: workload-ids/v1\nkind: Workload\nmetadata: &m\n  name: &n [*m]\n",
        "merge key": first.replace("metadata:\n", "x-base: &base {owner: team-a}\nmetadata:\n  <<: *base\n",
                                   1),
        f"flow nesting {depth}": first.replace(
            "\nspec:", "\nx-deep: " + "[" * depth + "]" * depth + "\nspec:", 1),
        f"mapping nesting {depth}": first + "x-deep: " + "{a: " * depth + "1" + "}" * depth + "\n",
        f"block nesting {min(depth, 600)}": first + "x-deep:\n" + "\n".join(
            "  " * (i + 1) + "a:" for i in range(min(depth, 600))) + " 1\n",
        f"1 MB scalar as {name}": big_manifest,
        "digits": first.replace('"123456789012"', "1" * MB),
    }
    label = draw(st.sampled_from(sorted(files)))
    data = files[label].encode("utf-8")
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
        label += " (with BOM)"
    return Case("workload.yaml", data, label)


def manifests() -> st.SearchStrategy[Case]:
    """Manifests valid and not, in every way this module knows."""
    return st.one_of(valid_manifests(), mutated_manifests(), raw_manifests(), special_manifests())


# --- config ------------------------------------------------------------------------

@st.composite
def configs(draw: st.DrawFn) -> Case:
    """``workload-ids.yaml``: a valid one, or one changed as data and/or text."""
    example = draw(st.sampled_from(sorted(CONFIG_DATA)))
    how = draw(st.sampled_from(("as written", "data", "text", "data+text", "special")))
    text = CONFIG_EXAMPLES[example]
    if how.startswith("data"):
        doc, what = draw(mutated_data(CONFIG_DATA[example], CONFIG_ENUMS))
        text = draw(serialized(doc))
        example += f": {what}"
    data = text.encode()
    if how.endswith("text"):
        data, what = draw(mutated_text(text))
        example += f": {what}"
    if how == "special":
        label = draw(st.sampled_from(("two documents", "a list", "a scalar", "deep", "1 MB", "null")))
        data = {"two documents": f"{text}\n---\n{text}", "a list": "- aws\n", "a scalar": "aws\n",
                "deep": "aws: " + "[" * 1000 + "]" * 1000 + "\n",
                "1 MB": f"aws: {{namePrefix: {'x' * MB}}}\n",
                "null": "~\n"}[label].encode()
        example = label
    return Case("workload-ids.yaml", data, example)


# --- owners ------------------------------------------------------------------------

@st.composite
def owners_yaml(draw: st.DrawFn) -> Case:
    """The example owners file, valid or changed as data and/or text."""
    how = draw(st.sampled_from(("as written", "data", "text", "data+text", "special")))
    text, label = OWNERS_YAML, how
    if how.startswith("data"):
        doc, what = draw(mutated_data(OWNERS_DATA, OWNERS_ENUMS))
        text = draw(serialized(doc))
        label += f": {what}"
    data = text.encode()
    if how.endswith("text"):
        data, what = draw(mutated_text(text))
        label += f": {what}"
    if how == "special":
        label = draw(st.sampled_from(("empty", "a list", "owners: null", "owners: {}", "two documents",
                                      "1 MB id", "deep")))
        data = {"empty": "", "a list": "- alice\n", "owners: null": "owners:\n", "owners: {}": "owners: {}\n",
                "two documents": f"{OWNERS_YAML}---\n{OWNERS_YAML}",
                "1 MB id": f"owners:\n  - {{id: {'x' * MB}, kind: person, active: true}}\n",
                "deep": "owners: " + "[" * 1000 + "]" * 1000 + "\n"}[label].encode()
    return Case("owners.yaml", data, label)


_CSV_CELLS = st.one_of(st.sampled_from(OWNER_IDS), st.sampled_from(("person", "group", "true", "false",
                                                                    "yes", "0", "maybe", "", " ")))
_CSV_HEADERS = ("id", "kind", "active", "members", "successor", "ID", "Kind", "acitve", "owner", "", " id ")


@st.composite
def owners_csv(draw: st.DrawFn) -> Case:
    """The example owners as CSV, valid or changed by row, by cell, or as text."""
    rows = list(csv.reader(io.StringIO(OWNERS_CSV)))
    done: list[str] = []
    for _ in range(draw(st.integers(0, 3))):
        op = draw(st.sampled_from(("cell", "drop-cell", "add-cell", "header", "dup-row", "dup-column",
                                   "drop-column", "blank", "quote")))
        if not rows:
            break
        r = draw(st.integers(0, len(rows) - 1))
        row = rows[r]
        c = draw(st.integers(0, max(0, len(row) - 1)))
        if op == "cell" and row:
            row[c] = draw(_CSV_CELLS | st.sampled_from(EDGE_STRINGS) | _SMALL_TEXT | _HUGE)
        elif op == "drop-cell" and row:
            del row[c]
        elif op == "add-cell":
            row.insert(c, draw(_CSV_CELLS))
        elif op == "header" and rows[0]:
            rows[0][draw(st.integers(0, len(rows[0]) - 1))] = draw(st.sampled_from(_CSV_HEADERS))
        elif op == "dup-row":
            rows.insert(r, list(row))
        elif op in ("dup-column", "drop-column"):
            for each in rows:
                if c < len(each):
                    if op == "dup-column":
                        each.insert(c, each[c])
                    else:
                        del each[c]
        elif op == "blank":
            rows.insert(r, [])
        elif op == "quote" and row:
            row[c] = row[c] + draw(st.sampled_from(('"', '\n', '\r\n', ',', '"quoted"', '\x00')))
        done.append(op)
    buf = io.StringIO()
    csv.writer(buf, lineterminator=draw(st.sampled_from(("\n", "\r\n")))).writerows(rows)
    text = buf.getvalue()
    data = text.encode()
    if draw(st.booleans()):
        data, what = draw(mutated_text(text))
        done.append(what)
    return Case("owners.csv", data, "; ".join(done) or "as written")


def owners_files() -> st.SearchStrategy[Case]:
    """Owners files, YAML and CSV."""
    return st.one_of(owners_yaml(), owners_csv())


# Where the config's ``owners.path`` points, besides the generated file.
OWNERS_PATHS = ("missing.yaml", ".", "sub", "a\x00b.yaml", "x" * 300 + ".yaml", "\u00e9.csv", "owners.txt")


def owners_paths(case_name: str) -> st.SearchStrategy[str]:
    """Mostly the generated file; sometimes a path a user could get wrong."""
    usual = st.just(case_name)
    return st.one_of(usual, usual, usual, st.sampled_from(OWNERS_PATHS))


# --- the properties ----------------------------------------------------------------

POSITIONED = re.compile(r"^.+:\d+:\d+: ")
SUMMARY = re.compile(r"^\d+ workload\(s\): \d+ warning\(s\), \d+ suggestion\(s\)\.$")
SENTINEL = "fuzz: the {} backend was asked for"


class Result(Protocol):
    """What ``conftest.run_cli`` returns."""

    code: int
    out: str
    err: str


class PropertyFailed(AssertionError):
    """An outcome broke the rule (raised even under ``python -O``)."""


def expect(ok: object, message: str) -> None:
    if not ok:
        raise PropertyFailed(message)


def _show(result: Result) -> str:
    def cut(text: str) -> str:
        if len(text) < 3000:
            return text
        return text[:1500] + f"<... {len(text) - 3000} chars ...>" + text[-1500:]
    return f"exit {result.code}\n--- stdout\n{cut(result.out)}\n--- stderr\n{cut(result.err)}"


def _refusal(result: Result) -> str:
    """Check a refusal's stderr; return "invalid" or "guardrail" (exit 3)."""
    lines = [line for line in result.err.splitlines() if line.strip()]
    positioned = [line for line in lines if POSITIONED.match(line)]
    expect(positioned, f"no FILE:LINE:COLUMN line in the refusal\n{_show(result)}")
    unpositioned = [line for line in lines if not POSITIONED.match(line)]
    expect(not unpositioned, f"lines without FILE:LINE:COLUMN: {unpositioned[:3]!r}\n{_show(result)}")
    if result.code == 3:
        labels = [POSITIONED.sub("", line).split(":", 1)[0] for line in positioned]
        expect("guardrail" in labels and set(labels) <= {"guardrail", "warning", "suggestion"},
               f"exit 3 but not every problem is a guardrail refusal\n{_show(result)}")
        return "guardrail"
    return "invalid"


def check_validate(result: Result) -> str:
    """``validate``: exit 0 with OK, or 1 (3) with positioned problems; no traceback.
    Returns "valid", "invalid" or "guardrail"."""
    text = result.out + result.err
    expect("Traceback" not in text and "internal error" not in text, f"a crash\n{_show(result)}")
    expect(result.code in (0, 1, 3), f"exit code {result.code}\n{_show(result)}")
    if result.code == 0:
        expect(result.out.startswith("OK: "), f"exit 0 without OK\n{_show(result)}")
        warnings = [line for line in result.err.splitlines() if line.strip()]
        expect(all(POSITIONED.match(line) for line in warnings), f"unpositioned warning\n{_show(result)}")
        return "valid"
    expect(result.out == "", f"a refusal printed to stdout\n{_show(result)}")
    return _refusal(result)


def check_json(result: Result, expected: str) -> None:
    """``--output json``: one JSON document on stdout; a refusal lists every problem with
    its position."""
    try:
        doc = json.loads(result.out)
    except ValueError:
        raise PropertyFailed(f"stdout is not one JSON document\n{_show(result)}") from None
    if expected == "valid":
        expect(result.code == 0 and doc.get("valid") is True, f"JSON run disagrees\n{_show(result)}")
        return
    expect(result.code in (1, 3) and doc.get("exitCode") == result.code, f"JSON exit code\n{_show(result)}")
    items = doc.get("diagnostics") or []
    expect(items and all(i.get("position") for i in items), f"unpositioned JSON diagnostic\n{_show(result)}")


@dataclass
class Properties:
    """The properties, run with ``run`` (``conftest.run_cli``) over files in ``folder``.

    Each returns an outcome label ("valid", "invalid", "guardrail") for the figures, and
    raises :class:`PropertyFailed` when the rule is broken. ``plan`` needs
    ``workload_ids.clouds.connect`` replaced by :meth:`refuse` (the caller does it:
    the tests with monkeypatch), so that no test can reach a cloud.
    """

    run: Callable[..., Result]
    folder: Path
    built: list[str] = field(default_factory=list)
    longest_line: int = 0

    def __post_init__(self) -> None:
        write_tree(self.folder / "config", CONFIG_TREE)
        (self.folder / "config" / "sub").mkdir(exist_ok=True)
        (self.folder / "manifests").mkdir(parents=True, exist_ok=True)
        (self.folder / "owners").mkdir(parents=True, exist_ok=True)
        (self.folder / "owners" / "sub").mkdir(exist_ok=True)

    def refuse(self, name: str, *_: Any) -> Any:
        """Stands in for ``clouds.connect``: records the ask and refuses."""
        from workload_ids.errors import UserError
        self.built.append(name)
        raise UserError(SENTINEL.format(name))

    def _cli(self, *args: str) -> Result:
        result = self.run(*args)
        for line in (result.out + result.err).splitlines():
            self.longest_line = max(self.longest_line, len(line))
        return result

    def manifest(self, case: Case) -> Path:
        path = self.folder / "manifests" / case.name
        path.write_bytes(case.data)
        return path

    def validate(self, case: Case, json_output: bool = False) -> str:
        path = self.manifest(case)
        outcome = check_validate(self._cli("validate", str(path)))
        if json_output:
            check_json(self._cli("validate", "--output", "json", str(path)), outcome)
        return outcome

    def lint(self, case: Case) -> str:
        path = self.manifest(case)
        outcome = check_validate(self._cli("validate", str(path)))
        result = self._cli("lint", str(path))
        text = result.out + result.err
        expect("Traceback" not in text and "internal error" not in text, f"lint crashed\n{_show(result)}")
        expect(result.code == (0 if outcome == "valid" else 3 if outcome == "guardrail" else 1),
               f"lint and validate disagree (validate: {outcome})\n{_show(result)}")
        if outcome != "valid":
            return _refusal(result)
        lines = [line for line in result.out.splitlines() if line.strip()]
        expect(lines and SUMMARY.match(lines[-1]), f"lint without its summary\n{_show(result)}")
        expect(all(POSITIONED.match(line) for line in lines[:-1]), f"unpositioned finding\n{_show(result)}")
        return outcome

    def plan(self, case: Case) -> str:
        path = self.manifest(case)
        outcome = check_validate(self._cli("validate", str(path)))
        self.built.clear()
        result = self._cli("plan", str(path))
        text = result.out + result.err
        expect("Traceback" not in text and "internal error" not in text, f"plan crashed\n{_show(result)}")
        if outcome == "valid":
            # It gets as far as asking for a backend, which refuses: no cloud is reached.
            asked = any(SENTINEL.format(n) in result.err for n in self.built)
            expect(result.code == 1 and self.built and asked,
                   f"plan of a valid manifest did not ask for a backend\n{_show(result)}")
            return outcome
        expect(self.built == [], f"plan asked for {self.built} for input validate refuses\n{_show(result)}")
        expect(result.code == (3 if outcome == "guardrail" else 1), f"plan exit code\n{_show(result)}")
        expect(result.out == "", f"a refusal printed to stdout\n{_show(result)}")
        return _refusal(result)

    def config(self, case: Case, manifest: str) -> str:
        path = self.folder / "config" / case.name
        path.write_bytes(case.data)
        return check_validate(self._cli("validate", "--config", str(path), str(EXAMPLES / manifest)))

    def owners(self, case: Case, owners_path: str) -> str:
        """The owners loader as ``cleanup`` opens it: ``open_directory(load_config(...))``,
        then ``owner_status`` over the ids, as cleanup judges them."""
        from workload_ids.config import load_config
        from workload_ids.errors import InputErrors
        from workload_ids.owners import open_directory
        from workload_ids.owners.interface import owner_status
        (self.folder / "owners" / case.name).write_bytes(case.data)
        config = self.folder / "owners" / "workload-ids.yaml"
        config.write_text(f"owners:\n  source: file\n  path: {json.dumps(owners_path)}\n", encoding="utf-8")
        try:
            directory = open_directory(load_config(config))
        except InputErrors as exc:
            lines = exc.diagnostics().splitlines()
            expect(exc.items and all(d.position is not None for d in exc.items),
                   f"unpositioned owners problem: {exc.diagnostics()[:2000]}")
            expect(all(POSITIONED.match(line) for line in lines),
                   f"a problem spans lines: {lines[:5]!r}")
            self.longest_line = max([self.longest_line, *map(len, lines)])
            return "invalid"
        except Exception as exc:
            raise PropertyFailed(f"the owners loader raised {type(exc).__name__}: {str(exc)[:2000]}") from exc
        expect(directory is not None, "no directory for owners.source: file")
        assert directory is not None
        statuses = owner_status(directory, OWNER_IDS)
        expect(sorted(statuses) == OWNER_IDS, f"owner_status lost ids: {sorted(statuses)}")
        return "valid"


def schema_documents(case: Case) -> Iterator[Any]:
    """The documents of a manifest validate accepted (for the JSON Schema check)."""
    text = case.data.decode("utf-8-sig")
    yield from (d for d in yaml.safe_load_all(text) if d is not None)
