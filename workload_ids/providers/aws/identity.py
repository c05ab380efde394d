"""IAM roles (keyless) and users (key mode) for workloads: read in batches, diffed, and
converged exactly, change by change."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from ...calls import NOT_FOUND, SeamClient
from ...config import Config
from ...errors import CloudError, ConflictError, Diagnostic, InputErrors
from ...model import (
    FORGED,
    IMMUTABLE_ID,
    MANAGED_BY,
    MARKER_KEYS,
    TAG_ADOPTED,
    TAG_DELETION_POLICY,
    TAG_MAC,
    TAG_MANAGED_BY,
    TAG_OWNER,
    UNAUTHENTICATED,
    Change,
    CompiledWorkload,
    DesiredIdentity,
    GithubTrust,
    KubernetesTrust,
    Marker,
    ObservedIdentity,
)
from ...signing import SigningKey
from ..interface import IdentityBackend, TransferCheck
from . import render
from .clients import (
    KIND_OPS,
    AwsClients,
    call,
    check_account,
    if_present,
    operation,
    pages,
    pages_of,
    tags_of,
)

OUR_POLICIES = (render.POLICY_NAME, render.QUARANTINE_POLICY)
ROLE_SETTINGS = ("maxSessionDuration", "description")


class JsonDocuments(Mapping[str, str]):
    """Documents as IAM returned them (parsed), turned into canonical text only when
    something asks: a no-op fleet plan compares the parsed forms and never needs it."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw
        self._text: dict[str, str] = {}

    def __getitem__(self, key: str) -> str:
        if key not in self._text:
            self._text[key] = render.canonical(self.raw[key])
        return self._text[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)


def _same(observed: ObservedIdentity, desired: DesiredIdentity, key: str) -> bool:
    """Whether a document in the cloud equals the desired one (key order aside)."""
    raw = observed.documents.raw if isinstance(observed.documents, JsonDocuments) else None
    if raw is not None and desired.objects and (key in raw) == (key in desired.objects) \
            and (key not in raw or raw[key] == desired.objects[key]):
        return True
    have, want = observed.documents.get(key, ""), desired.documents.get(key, "")
    return have == want or _normal(have or "{}") == _normal(want or "{}")


def _normal(doc: Any) -> str:
    """Key-order-free form of a policy document, for comparison only."""
    if isinstance(doc, str):
        doc = json.loads(doc)
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def permission_pairs(doc_text: str) -> set[tuple[str, str]]:
    """(action, resource) pairs a policy allows; anything else shows as one opaque entry."""
    if not doc_text:
        return set()
    doc = json.loads(doc_text)
    pairs: set[tuple[str, str]] = set()
    for st in _as_list(doc.get("Statement")):
        if st.get("Effect") != "Allow" or "Action" not in st or "Resource" not in st:
            pairs.add((f"(statement {st.get('Sid', '?')})", json.dumps(st, sort_keys=True)))
            continue
        suffix = f" if {json.dumps(st['Condition'], sort_keys=True)}" if st.get("Condition") else ""
        for action in _as_list(st["Action"]):
            for resource in _as_list(st["Resource"]):
                pairs.add((action, resource + suffix))
    return pairs


def _diff_pairs(old: set[tuple[str, str]], new: set[tuple[str, str]], a: str, b: str
                ) -> dict[str, list[dict[str, str]]]:
    return {
        "added": [{a: x, b: y} for x, y in sorted(new - old)],
        "removed": [{a: x, b: y} for x, y in sorted(old - new)],
    }


# What one page of the authorization details' managed policies is counted as when
# choosing between that walk and reading each attached policy alone: its page count is
# not known before it is made (1,000 policies a page at most, and AWS may cut pages
# short), so two pages are assumed.
POLICY_WALK_PAGES = 2
ROLES_PER_PAGE = 1000


def _aws_managed(arn: str) -> bool:
    return ":iam::aws:policy/" in arn


def _document(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value) if value else {}
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def _alone_cost(seen: ObservedIdentity) -> int:
    """The calls :meth:`AwsIdentities.observe_one` makes for an adopted role: ``GetRole``,
    its policy lists twice (the marker's read, then every policy it holds), each inline
    policy (ours twice), and ``GetPolicy`` + ``GetPolicyVersion`` per attached policy."""
    inline = list(seen.extra.get("inline", {}))
    return 5 + len(inline) + (render.POLICY_NAME in inline) + 2 * len(seen.extra.get("attached", ()))


def _path_prefixes(paths: Iterable[str]) -> list[str]:
    """The fewest path prefixes that list every path in ``paths`` (``/a/`` covers ``/a/b/``)."""
    out: list[str] = []
    for path in sorted(set(paths)):
        if not any(path.startswith(p) for p in out):
            out.append(path)
    return out


def _batch_cost(seen: Sequence[ObservedIdentity], role_paths: Sequence[str]) -> int:
    """The calls :meth:`AwsIdentities._complete_adopted` makes for ``seen``: the pages of
    ``ListRoles`` under each of their paths (counted from every role's path in the scope
    read; a role at ``/`` lists the whole account), then the attached policies' documents."""
    listing = sum(max(1, -(-sum(1 for p in role_paths if p.startswith(prefix)) // ROLES_PER_PAGE))
                  for prefix in _path_prefixes([s.settings.get("path", "/") for s in seen]))
    attached = {arn for s in seen for arn in s.extra.get("attached", ())}
    return listing + min(2 * len(attached), POLICY_WALK_PAGES)


class AwsIdentities(IdentityBackend):
    """IAM roles and users under ``aws.rolePath``, changed only when they carry our
    authenticated marker."""

    def __init__(self, clients: AwsClients, config: Config, transfers: TransferCheck) -> None:
        self.clients = clients
        self.config = config
        self.transfers = transfers
        self._lock = threading.Lock()
        self._oidc: dict[str, set[str]] = {}
        self._policies: set[tuple[str, str]] = set()  # (account, boundary ARN) seen to exist
        # account -> the path of every role its last scope read saw (ours or not): what a
        # listing by path would return, to count its pages before choosing to make it.
        self._role_paths: dict[str, list[str]] = {}
        # What apply does for each kind of change diff writes.
        self._appliers: dict[str, Callable[[SeamClient, Change, DesiredIdentity], None]] = {
            "create": self._apply_create,
            "update-trust": self._apply_trust,
            "update-permissions": self._apply_permissions,
            "remove-foreign-policy": self._apply_remove_foreign,
            "update-settings": self._apply_settings,
            "update-boundary": self._apply_boundary,
            "update-tags": self._apply_tags,
        }

    def outputs(self, desired: DesiredIdentity, observed: ObservedIdentity | None) -> dict[str, str]:
        """The role or user ARN, and for a user the secret its key goes to."""
        out = {"identity": desired.name, f"{desired.kind}_arn": desired.address, "provider": "aws",
               "account": desired.workload.target}
        if desired.kind == "user":
            out["secret_name"] = desired.settings["secretName"]
        return out

    # --- reads -----------------------------------------------------------------------

    def observe_one(self, desired: DesiredIdentity) -> ObservedIdentity | None:
        """``GetRole``/``GetUser``; its policy lists only when it carries our marker."""
        target = desired.workload.target
        ops = KIND_OPS[desired.kind]
        iam = self.clients.client(target, "iam")
        name = desired.name
        # Before anything: without the key nothing here can be believed or marked.
        self.clients.signing_keys.get(target)
        try:
            entity = call(iam, ops.get, **{ops.param: name})[ops.result]
        except CloudError as exc:
            if exc.kind != NOT_FOUND:
                raise
            return None
        check_account(target, entity["Arn"])
        tags = tags_of(entity.get("Tags"))
        documents: dict[str, str] = {}
        if desired.kind == "role":
            documents["trust"] = render.canonical(entity.get("AssumeRolePolicyDocument", {}))
        foreign: list[str] = []
        if tags.get(MARKER_KEYS[0]) is not None:
            names = [n for page in pages(iam, ops.list_policies, "PolicyNames",
                                         **{ops.param: name}) for n in page]
            if render.POLICY_NAME in names:
                doc = call(iam, ops.get_policy, **{ops.param: name}, PolicyName=render.POLICY_NAME)
                documents["policy"] = render.canonical(doc["PolicyDocument"])
            attached = [p["PolicyArn"] for page in pages(
                iam, ops.list_attached, "AttachedPolicies", **{ops.param: name}) for p in page]
            groups = [g["GroupName"] for page in pages(
                iam, "list_groups_for_user", "Groups", UserName=name)
                for g in page] if desired.kind == "user" else []
            foreign = [f"inline:{n}" for n in names if n not in OUR_POLICIES]
            foreign += [f"attached:{arn}" for arn in attached]
            foreign += [f"group:{g}" for g in groups]
            entity = {**entity, "_quarantined": render.QUARANTINE_POLICY in names}
        observed = self._observed(target, desired.kind, entity, tags, documents, foreign)
        if desired.workload.adopted and observed.marker is not None and not observed.forged:
            # An adopted role in observe mode is compared by everything it holds.
            from .adoption import AwsAdoption
            held = tuple(AwsAdoption(self.clients).policies_of(iam, name))
            observed = dataclasses.replace(observed, extra={**observed.extra, "held": held})
        return observed

    def _observed(self, target: str, kind: str, entity: Mapping[str, Any], tags: dict[str, str],
                  documents: Mapping[str, str], foreign: list[str]) -> ObservedIdentity:
        boundary = (entity.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn", "")
        settings = {"path": entity.get("Path", ""), "boundary": boundary}
        if kind == "role":
            if "MaxSessionDuration" in entity:
                settings["maxSessionDuration"] = str(entity["MaxSessionDuration"])
            settings["description"] = entity.get("Description", "")
        last_used = (entity.get("RoleLastUsed") or {}).get("LastUsedDate") if kind == "role" \
            else entity.get("PasswordLastUsed")
        ops = KIND_OPS[kind]
        # What cleanup needs to judge, quarantine, bundle and tear down an identity without
        # reading it again: the batch read already holds all of it.
        marker = Marker.from_tags(tags)
        name = entity[ops.param]
        immutable_id = str(entity.get(ops.immutable_id) or "")
        misplaced = render.not_ours(self.config, kind, name, entity.get("Path", ""), marker) \
            if marker is not None else None
        unauthenticated = self.clients.unauthenticated(target, name, immutable_id, marker, tags) \
            if marker is not None and not misplaced else None
        if marker is not None and marker.adopted and unauthenticated:
            # Outside our path and naming only the MAC vouches for an adopted role: without
            # it the marker is anyone's tags, and apply must never re-mark such a role.
            misplaced, unauthenticated = (f"it is marked as adopted but {unauthenticated}"), None
        extra: dict[str, Any] = {
            FORGED: misplaced,
            UNAUTHENTICATED: unauthenticated,
            IMMUTABLE_ID: immutable_id,
            "lastUsed": last_used, "created": entity.get("CreateDate"),
            "quarantined": bool(entity.get("_quarantined")),
            "inline": {p["PolicyName"]: p["PolicyDocument"] for p in entity.get(ops.detail_policies, [])},
            "attached": [p["PolicyArn"] for p in entity.get("AttachedManagedPolicies", [])],
            "instanceProfiles": [p["InstanceProfileName"] for p in entity.get("InstanceProfileList", [])],
            "groups": list(entity.get("GroupList", [])),
        }
        return ObservedIdentity(
            provider="aws", target=target, kind=kind, name=entity[ops.param],
            address=entity["Arn"], tags=tags, documents=documents, settings=settings,
            foreign=tuple(foreign), extra=extra)

    def observe_scope(self, target: str, *, settings: bool = True) -> list[ObservedIdentity]:
        """Two paged walks: ``get_account_authorization_details`` (policies, tags, boundary,
        last use of every role and user) and, with ``settings``, ``list_roles`` under our
        path (session duration and description, which the first walk lacks)."""
        iam = self.clients.client(target, "iam")
        path = self.config.aws.rolePath
        self.clients.signing_keys.get(target)  # before anything: without it nothing here can be believed

        def list_ours() -> dict[str, Any]:
            if not settings:
                return {}
            return {r["RoleName"]: r for page in pages(
                iam, "list_roles", "Roles", PathPrefix=path, MaxItems=1000) for r in page}

        roles: list[Any] = []
        users: list[Any] = []
        # The two walks are independent: run them side by side.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            listing = pool.submit(list_ours)
            for page in pages_of(iam, "get_account_authorization_details",
                                 Filter=["Role", "User"], MaxItems=1000):
                roles.extend(page.get("RoleDetailList", []))
                users.extend(page.get("UserDetailList", []))
            listed = listing.result()
        with self._lock:
            self._role_paths[target] = [str(r.get("Path", "/")) for r in roles]
        observed: list[ObservedIdentity] = []
        for kind, entities in (("role", roles), ("user", users)):
            ops = KIND_OPS[kind]
            for entity in entities:
                check_account(target, entity["Arn"])
                tags = tags_of(entity.get("Tags"))
                name = entity[ops.param]
                ours = tags.get(MARKER_KEYS[0]) is not None or entity.get("Path") == path
                if not ours and not name.startswith(self.config.aws.namePrefix + "_"):
                    continue
                raw: dict[str, Any] = {}
                if kind == "role":
                    raw["trust"] = entity.get("AssumeRolePolicyDocument", {})
                foreign: list[str] = []
                quarantined = False
                for inline in entity.get(ops.detail_policies, []):
                    if inline["PolicyName"] == render.POLICY_NAME:
                        raw["policy"] = inline["PolicyDocument"]
                    elif inline["PolicyName"] == render.QUARANTINE_POLICY:
                        quarantined = True
                    else:
                        foreign.append(f"inline:{inline['PolicyName']}")
                foreign += [f"attached:{p['PolicyArn']}"
                            for p in entity.get("AttachedManagedPolicies", [])]
                foreign += [f"group:{g}" for g in entity.get("GroupList", [])]
                merged = {**entity, **{k: v for k, v in listed.get(name, {}).items()
                                       if k in ("MaxSessionDuration", "Description")},
                          "_quarantined": quarantined}
                seen = self._observed(target, kind, merged, tags, JsonDocuments(raw), foreign)
                if seen.marker is not None and seen.marker.adopted:
                    # An adopted role is compared by every policy it holds and by settings
                    # only a listing under our path gives: plan reads it again whole
                    # (observe_whole: in a batch, or alone when that costs fewer calls).
                    seen = dataclasses.replace(seen, complete=False)
                observed.append(seen)
        return observed

    def observe_whole(self, target: str, incomplete: Sequence[tuple[DesiredIdentity, ObservedIdentity]]
                      ) -> dict[str, ObservedIdentity | None]:
        """Adopted roles the scope read left incomplete, completed in one batch when that
        costs fewer calls than reading each alone (see :func:`_batch_cost`): their
        settings from ``ListRoles`` under each of their paths, the documents of their
        attached managed policies from the authorization details' ``Policies`` (or
        ``GetPolicy`` + ``GetPolicyVersion`` per distinct policy, when fewer); their trust
        and inline policies are in the scope read already. The same values
        :meth:`observe_one` reads, so a plan shows the same rows either way."""
        batchable = [(d, seen) for d, seen in incomplete if d.kind == "role" and d.workload.adopted
                     and seen.kind == "role" and seen.marker is not None and seen.marker.adopted
                     and not seen.forged]
        with self._lock:
            paths = list(self._role_paths.get(target, ()))
        alone = sum(_alone_cost(seen) for _, seen in batchable)
        out: dict[str, ObservedIdentity | None] = {}
        if batchable and _batch_cost([seen for _, seen in batchable], paths) < alone:
            out.update(self._complete_adopted(target, [seen for _, seen in batchable]))
        for desired, _ in incomplete:
            if desired.name not in out:
                out[desired.name] = self.observe_one(desired)
        return out

    def _complete_adopted(self, target: str, seen: Sequence[ObservedIdentity]
                          ) -> dict[str, ObservedIdentity]:
        iam = self.clients.client(target, "iam")
        settings: dict[str, dict[str, Any]] = {}
        for prefix in _path_prefixes(s.settings.get("path", "/") for s in seen):
            for page in pages(iam, "list_roles", "Roles", PathPrefix=prefix, MaxItems=1000):
                for role in page:
                    check_account(target, role["Arn"])
                    settings[role["RoleName"]] = role
        documents = self._attached_documents(iam, target, {
            arn for s in seen for arn in s.extra.get("attached", ())})
        out: dict[str, ObservedIdentity] = {}
        for s in seen:
            listed = settings.get(s.name)
            if listed is None or listed.get("Path") != s.settings.get("path"):
                continue  # gone or moved since the scope read: read alone, as before
            held = [(f"inline policy {name}", render.canonical(_document(doc)))
                    for name, doc in s.extra.get("inline", {}).items()]
            held += [(f"managed policy {arn}", render.canonical(_document(documents[arn])))
                     for arn in s.extra.get("attached", ())]
            merged = {**s.settings, "description": str(listed.get("Description", ""))}
            if "MaxSessionDuration" in listed:
                merged["maxSessionDuration"] = str(listed["MaxSessionDuration"])
            out[s.name] = dataclasses.replace(s, settings=merged, complete=True,
                                              extra={**s.extra, "held": tuple(held)})
        return out

    def _attached_documents(self, iam: SeamClient, target: str, arns: set[str]) -> dict[str, Any]:
        """The default version's document of each managed policy in ``arns``."""
        found: dict[str, Any] = {}
        if not arns:
            return found
        if 2 * len(arns) > POLICY_WALK_PAGES:
            kinds = ["LocalManagedPolicy"] + (
                ["AWSManagedPolicy"] if any(_aws_managed(a) for a in arns) else [])
            for page in pages_of(iam, "get_account_authorization_details", Filter=kinds, MaxItems=1000):
                for p in page.get("Policies", []):
                    if p["Arn"] in arns:
                        default = next((v for v in p.get("PolicyVersionList", [])
                                        if v.get("IsDefaultVersion")), None)
                        if default is not None and default.get("Document") is not None:
                            found[p["Arn"]] = default["Document"]
        for arn in sorted(arns - set(found)):  # read one by one (or not in the walk)
            if not _aws_managed(arn):
                check_account(target, arn)
            version = call(iam, "get_policy", PolicyArn=arn)["Policy"]["DefaultVersionId"]
            found[arn] = call(iam, "get_policy_version", PolicyArn=arn,
                              VersionId=version)["PolicyVersion"]["Document"]
        return found

    def preflight(self, desired: Sequence[DesiredIdentity]) -> list[Diagnostic]:
        """Nothing on AWS: the issuers and the boundary are checked when a write needs them."""
        return []

    def preflight_writes(self, changes: Sequence[Change]) -> list[Diagnostic]:
        """The issuers of every trust policy the plan writes (a new role's, or a changed
        one) must have an IAM identity provider. Asked only then (once per account), like
        the boundary: a role whose trust stays as it is gets nothing written, so a plan
        with nothing to write reads no more (IAM refuses such a write itself; this says
        so before apply starts, with the command that fixes it)."""
        written = {(c.target, c.identity): c.desired for c in changes if c.desired is not None
                   and c.desired.kind == "role" and c.action in ("create", "update-trust")}
        return self.missing_issuers(list(written.values()))

    def missing_issuers(self, desired: Sequence[DesiredIdentity]) -> list[Diagnostic]:
        """Every OIDC issuer a trust policy names must have an IAM identity provider."""
        problems: list[Diagnostic] = []
        for d in desired:
            issuers = render.oidc_issuers(d.workload)
            if not issuers:
                continue
            known = self._oidc_providers(d.workload.target)
            for issuer in issuers:
                arn = render.oidc_provider_arn(d.workload.target, issuer)
                if arn in known:
                    continue
                index = self._federation_index(d.workload, issuer)
                problems.append(Diagnostic(
                    d.workload.source.position("spec", "credentials", "federation", index),
                    self._missing_provider(d.workload.target, issuer)))
        return problems

    def _missing_provider(self, account: str, issuer: str) -> str:
        """What to do about an issuer IAM does not know. Registering an identity provider
        makes the account trust every token it signs, so the ready-made command is only
        handed out for issuers the platform team already listed in the config (H5)."""
        from ...trust import issuer_allowed
        url = f"https://{issuer}"
        missing = f"account {account} has no IAM OIDC identity provider for {url}"
        if issuer == render.GITHUB_ISSUER or issuer_allowed(self.config, url):
            return (f"{missing}; the platform team registers it: aws iam "
                    f"create-open-id-connect-provider --url {url} --client-id-list sts.amazonaws.com")
        return (f"{missing}, and the issuer is not in the config's trust.allowedIssuers: the "
                "platform team decides whether the account may trust it, and if so lists it "
                "under trust.allowedIssuers and registers the provider themselves")

    def _require_boundary(self, d: DesiredIdentity) -> None:
        """The boundary a create or update-boundary sets must exist: IAM would otherwise
        fail the change half-way through an apply, with its own less helpful message.
        Asked only then (once per account), so a plan with nothing to create reads no more."""
        arn = d.settings.get("boundary", "")
        if not arn or self._policy_exists(d.workload.target, arn):
            return
        named = self.config.aws.permissionsBoundary
        where = (self.config.position("aws.permissionsBoundary") if named else None) or \
            d.workload.source.position("spec", "aws")
        fix = (f"run `workload-ids bootstrap --provider aws --target {d.workload.target} --apply` "
               "to create it (or set guardrails.requirePermissionsBoundary: false to opt out)"
               if not named else
               "create that managed policy first, or remove aws.permissionsBoundary to use the "
               "one `workload-ids bootstrap --provider aws --apply` creates")
        raise InputErrors([Diagnostic(where, f"the permissions boundary {arn} does not exist in "
                                             f"account {d.workload.target}; {fix}")])

    def _policy_exists(self, target: str, arn: str) -> bool:
        with self._lock:
            if (target, arn) in self._policies:
                return True
        iam = self.clients.client(target, "iam")
        try:
            iam.get_policy(PolicyArn=arn)
        except CloudError as exc:
            if exc.kind != NOT_FOUND:
                raise
            return False
        with self._lock:
            self._policies.add((target, arn))
        return True

    @staticmethod
    def _federation_index(workload: CompiledWorkload, issuer: str) -> int:
        for i, fed in enumerate(workload.trust):
            if isinstance(fed, GithubTrust) and issuer == render.GITHUB_ISSUER:
                return i
            if isinstance(fed, KubernetesTrust) and render.issuer_host_path(fed.issuer) == issuer:
                return i
        return 0

    def _oidc_providers(self, target: str) -> set[str]:
        with self._lock:
            cached = self._oidc.get(target)
        if cached is not None:
            return cached
        iam = self.clients.client(target, "iam")
        arns = {p["Arn"] for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]}
        for arn in arns:
            check_account(target, arn)
        with self._lock:
            self._oidc[target] = arns
        return arns

    def verify_target(self, target: str) -> str:
        """``GetCallerIdentity``, once per account and run."""
        return self.clients.caller(target)

    def signing_key(self, target: str) -> SigningKey:
        """IdentityBackend.signing_key: the key markers here are authenticated with."""
        return self.clients.signing_keys.get(target)

    def current_target(self) -> str:
        """The account the ambient credentials reach."""
        return self.clients.ambient_account()

    # --- plan ------------------------------------------------------------------------

    def diff(self, desired: DesiredIdentity, observed: ObservedIdentity | None) -> list[Change]:
        """Boundary first, tags (and so the MAC) last; foreign policies are removed."""
        w = desired.workload

        def change(action: str, **details: Any) -> Change:
            return Change(workload=w.label, provider="aws", target=w.target, action=action,
                          identity=desired.name, details=details, desired=desired,
                          observed=observed)

        want_policy = desired.documents.get("policy", "")
        if observed is None or observed.settings.get("boundary", "") != desired.settings.get("boundary", ""):
            self._require_boundary(desired)
        if observed is None:
            details: dict[str, Any] = {
                "kind": desired.kind, "address": desired.address,
                "permissions": _diff_pairs(set(), permission_pairs(want_policy), "action", "resource")}
            if desired.kind == "role":
                details["trust"] = _diff_pairs(set(), render.trust_pairs(desired.documents.get("trust", "")),
                                               "principal", "subject")
            return [change("create", **details)]
        if observed.marker is None:
            raise ConflictError(
                f"{w.label}: IAM {observed.kind} {observed.name} exists in account {w.target} but "
                "does not carry the workload-ids ownership tags, so it will not be modified",
                f"rename the workload, or delete or rename that {observed.kind} if it is truly unused; "
                f"workload-ids never adopts a {observed.kind} it did not create")
        if observed.misplaced:
            # Same name, other path (IAM names are unique across paths): not one we made.
            raise ConflictError(
                f"{w.label}: IAM {observed.kind} {observed.name} in account {w.target} carries the "
                f"workload-ids tags but {observed.misplaced}, so it will not be modified",
                f"find out who created it and delete or rename it; workload-ids never adopts a "
                f"{observed.kind} outside {self.config.aws.rolePath}")
        if w.adopted and w.observe:
            return self._diff_adopted(desired, observed, change)
        changes: list[Change] = []
        if observed.settings.get("boundary", "") != desired.settings.get("boundary", ""):
            # First: the deployer's own policy (`workload-ids bootstrap`) allows policy
            # writes only on identities that already carry the boundary.
            changes.append(change("update-boundary", boundary={
                "from": observed.settings.get("boundary", ""), "to": desired.settings["boundary"]}))
        if desired.kind == "role" and not _same(observed, desired, "trust"):
            have_trust = observed.documents.get("trust", "")
            want_trust = desired.documents.get("trust", "")
            changes.append(change("update-trust", trust=_diff_pairs(
                render.trust_pairs(have_trust), render.trust_pairs(want_trust), "principal", "subject")))
        if not _same(observed, desired, "policy"):
            have_policy = observed.documents.get("policy", "")
            changes.append(change("update-permissions", permissions=_diff_pairs(
                permission_pairs(have_policy), permission_pairs(want_policy), "action", "resource")))
        for item in observed.foreign:
            changes.append(change("remove-foreign-policy", policy=item))
        settings = {k: {"from": observed.settings.get(k, ""), "to": v}
                    for k, v in desired.settings.items()
                    if k in ROLE_SETTINGS and desired.kind == "role"
                    and observed.settings.get(k, "") != v}
        if settings:
            changes.append(change("update-settings", settings=settings))
        tags = {k: {"from": observed.tags.get(k, ""), "to": v} for k, v in desired.tags.items()
                if observed.tags.get(k) != v
                and not (k == TAG_OWNER and self.transfers(observed, v))}
        for k in (TAG_DELETION_POLICY, TAG_ADOPTED):
            if k in observed.tags and k not in desired.tags:
                # A signed field the manifest does not set (a retain written by someone
                # else): removed, never signed into the marker.
                tags[k] = {"from": observed.tags[k], "to": ""}
        if observed.unauthenticated:
            # At our path and name but not provably ours: plan has checked the audit log
            # does not name another owner; apply converges it and marks it anew.
            tags[TAG_MAC] = {"from": "(not valid)", "to": "(new MAC)"}
        if tags:
            # Last: the manifest digest is recorded only once everything else matches.
            changes.append(change("update-tags", tags=tags))
        return changes

    def _diff_adopted(self, desired: DesiredIdentity, observed: ObservedIdentity,
                      change: Callable[..., Change]) -> list[Change]:
        """An adopted role in observe mode: what it grants (every policy it holds, wherever
        it holds it), whom it trusts and its settings, against the manifest. The tool's own
        conventions (its one inline policy, the boundary, no other policies) are converged
        only once someone sets spec.mode: manage."""
        from .adoption import permission_pairs_held, same_trust
        w = desired.workload
        changes: list[Change] = []
        have_trust = observed.documents.get("trust", "")
        if not same_trust(have_trust, desired.objects.get("trust")):
            changes.append(change("update-trust", trust=_diff_pairs(
                render.trust_pairs(have_trust), render.trust_pairs(desired.documents.get("trust", "")),
                "principal", "subject")))
        held = permission_pairs_held(observed.extra.get("held") or ())
        want = held.wanted(w.grants)
        if held.pairs != want:
            def rows(pairs: set[tuple[str, str, str]]) -> list[dict[str, str]]:
                return [{"action": a, "resource": r + (f" if {c}" if c else "")} for a, r, c in sorted(pairs)]
            changes.append(change("update-permissions", permissions={
                "added": rows(want - held.pairs), "removed": rows(held.pairs - want)}))
        settings = {k: {"from": observed.settings.get(k, ""), "to": v} for k, v in desired.settings.items()
                    if k in ROLE_SETTINGS and observed.settings.get(k, "") != v}
        if settings:
            changes.append(change("update-settings", settings=settings))
        tags = {k: {"from": observed.tags.get(k, ""), "to": v} for k, v in desired.tags.items()
                if observed.tags.get(k) != v and not (k == TAG_OWNER and self.transfers(observed, v))}
        if tags:
            changes.append(change("update-tags", tags=tags))
        return changes

    # --- apply -----------------------------------------------------------------------

    def apply(self, change: Change) -> None:
        """One IAM write per change (a create: the create, its MAC and its policy)."""
        assert change.desired is not None
        applier = self._appliers.get(change.action)
        if applier is None:  # pragma: no cover - plan and apply are written together
            raise ValueError(f"unknown change {change.action}")
        applier(self.clients.client(change.desired.workload.target, "iam"), change, change.desired)

    def _apply_create(self, iam: SeamClient, change: Change, desired: DesiredIdentity) -> None:
        self._create(iam, desired)

    def _apply_trust(self, iam: SeamClient, change: Change, desired: DesiredIdentity) -> None:
        iam.update_assume_role_policy(RoleName=desired.name, PolicyDocument=desired.documents["trust"])

    def _apply_permissions(self, iam: SeamClient, change: Change, desired: DesiredIdentity) -> None:
        self._put_policy(iam, desired)

    def _apply_remove_foreign(self, iam: SeamClient, change: Change, desired: DesiredIdentity) -> None:
        ops = KIND_OPS[desired.kind]
        kind, _, ref = str(change.details["policy"]).partition(":")
        # observe's "inline:NAME", "group:NAME" and "attached:ARN": the call that removes each.
        name, param = {"inline": (ops.delete_policy, "PolicyName"),
                       "group": ("remove_user_from_group", "GroupName")}.get(kind, (ops.detach, "PolicyArn"))
        if_present(operation(iam, name), **{ops.param: desired.name, param: ref})

    def _apply_settings(self, iam: SeamClient, change: Change, desired: DesiredIdentity) -> None:
        iam.update_role(RoleName=desired.name, Description=desired.settings.get("description", ""),
                        MaxSessionDuration=int(desired.settings["maxSessionDuration"]))

    def _apply_boundary(self, iam: SeamClient, change: Change, desired: DesiredIdentity) -> None:
        ops = KIND_OPS[desired.kind]
        who = {ops.param: desired.name}
        if desired.settings["boundary"]:
            call(iam, ops.put_boundary, **who, PermissionsBoundary=desired.settings["boundary"])
        else:
            if_present(operation(iam, ops.delete_boundary), **who)

    def _apply_tags(self, iam: SeamClient, change: Change, desired: DesiredIdentity) -> None:
        assert change.observed is not None
        self._write_marker(iam, desired, change.observed, [
            k for k in change.details.get("tags", {}) if k != TAG_MAC])

    def _write_marker(self, iam: SeamClient, desired: DesiredIdentity, observed: ObservedIdentity,
                      keys: Sequence[str]) -> None:
        """Write the changed marker tags and the MAC of the marker they make, in one call
        (with managed-by, which the deployer's policy requires of every tag write); signed
        tags the desired marker does not have are removed first."""
        ops = KIND_OPS[desired.kind]
        written = {k: desired.tags[k] for k in keys if k in desired.tags}
        stray = [k for k in (TAG_DELETION_POLICY, TAG_ADOPTED)
                 if k in observed.tags and k not in desired.tags]
        if stray:
            call(iam, ops.untag, **{ops.param: desired.name}, TagKeys=stray)
        marker = Marker.from_tags({k: v for k, v in {**observed.tags, **written}.items()
                                   if k not in stray})
        assert marker is not None
        target = desired.workload.target
        written[TAG_MANAGED_BY] = MANAGED_BY
        written[TAG_MAC] = self.clients.marker_mac(target, desired.name, observed.immutable_id, marker)
        call(iam, ops.tag, **{ops.param: desired.name},
             Tags=[{"Key": k, "Value": v} for k, v in written.items()])

    def _read_after_exists(self, desired: DesiredIdentity) -> ObservedIdentity | None:
        """Read an identity IAM says exists; reads may lag writes for a few seconds."""
        for attempt in range(5):
            observed = self.observe_one(desired)
            if observed is not None:
                return observed
            self.clients.seam.sleep(min(8.0, 0.5 * 2 ** attempt))
        return None

    def _put_policy(self, iam: SeamClient, desired: DesiredIdentity) -> None:
        ops = KIND_OPS[desired.kind]
        policy = desired.documents.get("policy", "")
        if json.loads(policy).get("Statement"):
            call(iam, ops.put_policy, **{ops.param: desired.name}, PolicyName=render.POLICY_NAME,
                 PolicyDocument=policy)
        else:
            if_present(operation(iam, ops.delete_policy), **{ops.param: desired.name},
                       PolicyName=render.POLICY_NAME)

    def _create(self, iam: SeamClient, desired: DesiredIdentity) -> None:
        ops = KIND_OPS[desired.kind]
        params: dict[str, Any] = {
            ops.param: desired.name,
            "Path": desired.settings["path"],
            "Tags": [{"Key": k, "Value": v} for k, v in desired.tags.items()],
        }
        if desired.kind == "role":
            params.update(AssumeRolePolicyDocument=desired.documents["trust"],
                          Description=desired.settings.get("description", ""),
                          MaxSessionDuration=int(desired.settings["maxSessionDuration"]))
        if desired.settings.get("boundary"):
            params["PermissionsBoundary"] = desired.settings["boundary"]
        try:
            created = call(iam, ops.create, **params)[ops.result]
        except CloudError as exc:
            if exc.code != "EntityAlreadyExists":
                raise
            # Created by a run that died before it could record anything, or by a racing
            # run: adopt it only if it carries our marker, then converge it.
            observed = self._read_after_exists(desired)
            if observed is None:
                raise CloudError(
                    f"iam.{ops.create}", "EntityAlreadyExists",
                    f"{desired.kind} {desired.name} exists but cannot be read yet",
                    "IAM is still propagating a recent change; rerun in a minute "
                    "(reruns converge)") from exc
            if observed.marker is None:
                raise ConflictError(
                    f"IAM {desired.kind} {desired.name} appeared in account {desired.workload.target} "
                    "without workload-ids ownership tags",
                    "find out who created it; workload-ids will not adopt it") from exc
            for follow_up in self.diff(desired, observed):
                self.apply(follow_up)
            return
        # The MAC covers the immutable id IAM has only now given: one more call. A crash
        # before it leaves an unauthenticated marker at our path and name, which the
        # rerun's apply re-marks (plan checks the audit log first).
        immutable_id = str(created.get(ops.immutable_id) or "")
        mac = self.clients.marker_mac(desired.workload.target, desired.name, immutable_id,
                                      desired.workload.marker)
        call(iam, ops.tag, **{ops.param: desired.name}, Tags=[
            {"Key": TAG_MANAGED_BY, "Value": MANAGED_BY}, {"Key": TAG_MAC, "Value": mac}])
        self._put_policy(iam, desired)
