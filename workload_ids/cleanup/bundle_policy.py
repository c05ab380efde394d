"""What a restore bundle may hold: only what workload-ids itself would have granted.

``restore`` writes IAM from a record in the audit trail. Whoever can append to the trail
(or forge a record that verifies) could otherwise have the tool create an admin role
trusted by a foreign account. So a bundle is held to the same rules ``validate`` holds a
manifest to, read back from the rendered form the tool writes:

- location and naming (:func:`~workload_ids.provenance.bundle_not_ours`);
- trust: only the OIDC issuers, GitHub owners, AWS services and GCP pools the config's
  ``trust:`` lists, in the exact statement shapes the renderers write; never an account,
  a user or ``*``;
- grants: every action a real name from the catalogs, none denied by
  ``guardrails.deniedActions``, none that can escalate without an approval in the config,
  never on the tool's own secrets, locks or vault; resources in the identity's own
  account, project or subscription, with ``*`` only for the actions a template grants
  unscoped;
- nothing the tool never writes: AWS managed policies, groups and instance profiles,
  inline policies other than its own, GCP roles other than the workload's custom roles,
  Azure role scopes outside the subscription's resources.

The marker's digest is of the manifest, not of the rendered state, so the bundle cannot
be compared with what the tool once wrote; these rules bound it by what the tool would
ever write. Recreating the identity from its manifest (``apply``) needs no bundle.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from ..config import Config

_S3 = re.compile(r"arn:aws[a-z-]*:s3:::")
_GCP_PRINCIPAL = re.compile(
    r"principal://iam\.googleapis\.com/(?P<pool>projects/\d+/locations/global/workloadIdentityPools/"
    r"[a-z0-9-]+)/subject/(?P<subject>.+)")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_GITHUB_SUBJECT = re.compile(r"repo:(?P<owner>[A-Za-z0-9-]+)/[A-Za-z0-9._-]+:.+")


def bundle_problems(config: Config, bundle: dict[str, Any]) -> list[str]:
    """Every reason ``bundle`` holds something workload-ids would not have written (empty
    when it may be restored). Location and naming come first: nothing else is judged of an
    identity that is not ours."""
    from ..provenance import bundle_not_ours
    why = bundle_not_ours(config, bundle)
    if why is not None:
        return [f"it is not an identity workload-ids makes: {why}"]
    check = _Checker(config, bundle)
    provider = str(bundle.get("provider"))
    if provider == "aws":
        check.aws()
    elif provider == "gcp":
        check.gcp()
    elif provider == "azure":
        check.azure()
    return check.problems


class _Checker:
    def __init__(self, config: Config, bundle: dict[str, Any]) -> None:
        from ..model import Marker
        self.config = config
        self.bundle = bundle
        self.provider = str(bundle.get("provider"))
        self.target = str(bundle.get("target"))
        raw = bundle.get("tags")
        tags = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
        marker = Marker.from_tags(tags) if self.provider != "gcp" else \
            Marker.from_text(str(bundle.get("description", "")))
        assert marker is not None  # bundle_not_ours refused a bundle without one
        self.marker = marker
        self.label = f"{marker.environment}/{marker.workload}"
        self.problems: list[str] = []
        rails = config.guardrails
        if rails.allowedTargets and self.target not in rails.allowedTargets:
            self.problems.append(f"its target {self.target} is not in guardrails.allowedTargets")
        if rails.allowedEnvironments and marker.environment not in rails.allowedEnvironments:
            self.problems.append(f"its environment {marker.environment!r} is not in "
                                 "guardrails.allowedEnvironments")

    def refuse(self, message: str) -> None:
        if message not in self.problems:
            self.problems.append(message)

    # --- grants, on every cloud -----------------------------------------------------

    def action(self, action: object, field: str = "actions") -> None:
        """The checks ``validate`` makes of a raw entry's action, plus the escalation gate."""
        from ..catalogs import check
        from ..escalation import is_escalation
        from ..validate import denied_by
        if not isinstance(action, str):
            self.refuse(f"action {action!r} is not a name")
            return
        found = check(self.provider, action, azure_field=field,  # type: ignore[arg-type]
                      extra=self.config.catalog_extra())
        if found.name is None:
            self.refuse(f"action {action!r}: {found.message}")
            return
        entry = denied_by(self.config, self.provider, found.name)
        if entry is not None:
            self.refuse(f"action {found.name} is denied by guardrails.deniedActions ({entry})")
        if is_escalation(self.provider, found.name) and not self._approved(found.name):
            self.refuse(f"action {found.name} can escalate privilege and no "
                        f"guardrails.approvedEscalations entry approves it for {self.label}")

    def _approved(self, action: str) -> bool:
        # The approval names the manifest's listed resources, which the rendered form no
        # longer shows: the action approved for this workload in this target is what counts.
        from ..approvals import _applies, same_action
        return any(_applies(a, self.label, self.provider, self.target)
                   and any(same_action(self.provider, action, x) for x in a.actions)
                   for a in self.config.guardrails.approvedEscalations)

    def resource_of_ours(self, resource: str) -> None:
        from ..approvals import namespace_of
        what = namespace_of(self.config).owner_of(self.provider, resource)
        if what is not None:
            self.refuse(f"it grants on {resource}, which is {what}")

    # --- AWS --------------------------------------------------------------------------

    def aws(self) -> None:
        from ..providers.aws.render import POLICY_NAME
        b = self.bundle
        for field, what in (("attachedPolicies", "managed policies"), ("groups", "groups"),
                            ("instanceProfiles", "instance profiles")):
            if b.get(field):
                self.refuse(f"it holds {what} ({', '.join(map(str, b[field]))}), which workload-ids "
                            "never attaches")
        want = self.config.aws_boundary().replace("{account}", self.target)
        if str(b.get("boundary") or "") != want:
            self.refuse(f"its permissions boundary is {b.get('boundary') or 'none'!s}, not "
                        f"{want or 'none'}, the one workload-ids sets")
        inline = b.get("inlinePolicies") or {}
        if not isinstance(inline, dict):
            self.refuse("its inline policies are not a mapping")
            inline = {}
        for name, doc in inline.items():
            if name != POLICY_NAME:
                self.refuse(f"it holds the inline policy {name!r}; workload-ids writes only "
                            f"{POLICY_NAME!r}")
                continue
            self._aws_policy(doc)
        if b.get("kind") == "role":
            self._aws_trust(b.get("trust"))

    def _aws_policy(self, doc: object) -> None:
        if isinstance(doc, str):
            try:
                doc = json.loads(doc)
            except ValueError:
                self.refuse("its inline policy is not JSON")
                return
        statements = doc.get("Statement") if isinstance(doc, dict) else None
        if isinstance(statements, dict):
            statements = [statements]
        if not isinstance(statements, list):
            self.refuse("its inline policy has no statements")
            return
        unscoped = _aws_unscoped(self.config)
        suffixes = _aws_suffixes(self.config)
        for st in statements:
            if not isinstance(st, dict) or set(st) - {"Sid", "Effect", "Action", "Resource", "Condition"}:
                keys = ", ".join(sorted(set(st) - {"Sid", "Effect", "Action", "Resource", "Condition"})) \
                    if isinstance(st, dict) else "not an object"
                self.refuse(f"a statement of its inline policy has {keys}; workload-ids writes "
                            "Effect, Action, Resource and Condition only")
                continue
            if st.get("Effect") != "Allow":
                self.refuse(f"a statement of its inline policy has Effect {st.get('Effect')!r}")
            actions = _listed(st.get("Action"))
            for action in actions:
                self.action(action)
            for resource in _listed(st.get("Resource")):
                self._aws_resource(str(resource), [str(a) for a in actions], st, unscoped, suffixes)

    def _aws_resource(self, resource: str, actions: list[str], st: dict[str, Any],
                      unscoped: frozenset[str], suffixes: tuple[str, ...]) -> None:
        from ..compile import _AWS_ARN, _aws_account_problem, variable_problem
        if resource == "*":
            wide = [a for a in actions if a.lower() not in unscoped]
            if wide:
                self.refuse(f"it grants {', '.join(map(str, wide))} on every resource (*); only "
                            f"the actions a template grants unscoped may have Resource *")
            return
        base = next((resource[: -len(s)] for s in suffixes if resource.endswith(s)), resource)
        problem = variable_problem(base)
        if problem is None and re.search(r"[*?]", base):
            problem = f"resource {resource!r} has a wildcard beyond a template's"
        m = _AWS_ARN.fullmatch(base)
        if problem is None and m is None:
            problem = f"resource {resource!r} is not an ARN"
        if problem is None and m is not None:
            found = _aws_account_problem(m["service"], m["account"], m["rest"], self.target)
            problem = f"resource {resource!r} {found}" if found else None
        if problem is None and _S3.match(resource):
            account = (st.get("Condition") or {}).get("StringEquals", {}).get("aws:ResourceAccount")
            if account != self.target:
                problem = (f"resource {resource!r} is an S3 ARN, which names no account, and the "
                           f"statement is not held to account {self.target} by aws:ResourceAccount")
        if problem:
            self.refuse(problem)
        self.resource_of_ours(resource)

    def _aws_trust(self, trust: object) -> None:
        from ..providers.aws.render import GITHUB_ISSUER, oidc_provider_arn
        from ..trust import issuer_allowed
        statements = trust.get("Statement") if isinstance(trust, dict) else None
        if isinstance(statements, dict):
            statements = [statements]
        if not isinstance(statements, list):
            self.refuse("its trust policy has no statements")
            return
        services = self.config.trust.aws_services()
        for st in statements:
            if not isinstance(st, dict) or st.get("Effect") != "Allow" or "NotPrincipal" in st:
                self.refuse("its trust policy has a statement workload-ids does not write")
                continue
            principal = st.get("Principal")
            condition = st.get("Condition")
            if not isinstance(principal, dict) or len(principal) != 1 or not isinstance(condition, dict) \
                    or set(condition) != {"StringEquals"} or not isinstance(condition["StringEquals"], dict):
                self.refuse(f"its trust policy trusts {principal!r}; workload-ids trusts only OIDC "
                            "issuers and AWS services, with StringEquals conditions")
                continue
            equals: dict[str, Any] = condition["StringEquals"]
            if "Federated" in principal:
                arn = str(principal["Federated"])
                prefix = oidc_provider_arn(self.target, "")
                issuer = arn[len(prefix):] if arn.startswith(prefix) else None
                if issuer is None:
                    self.refuse(f"its trust policy trusts {arn}, not an OIDC provider in account "
                                f"{self.target}")
                    continue
                if issuer != GITHUB_ISSUER and not issuer_allowed(self.config, "https://" + issuer):
                    self.refuse(f"its trust policy trusts the issuer https://{issuer}, which is not in "
                                "the config's trust.allowedIssuers")
                if st.get("Action") != "sts:AssumeRoleWithWebIdentity" or \
                        equals.get(f"{issuer}:aud") != "sts.amazonaws.com" or f"{issuer}:sub" not in equals \
                        or set(equals) - {f"{issuer}:aud", f"{issuer}:sub", f"{issuer}:repository_id"}:
                    self.refuse(f"its trust of https://{issuer} is not bound to audience "
                                "sts.amazonaws.com and exact subjects")
                    continue
                if issuer == GITHUB_ISSUER:
                    self._github_subjects(_listed(equals[f"{issuer}:sub"]))
            elif "Service" in principal:
                wanted = [str(s) for s in _listed(principal["Service"])]
                foreign = [s for s in wanted if s not in services]
                if foreign:
                    self.refuse(f"its trust policy trusts the service(s) {', '.join(foreign)}, not in "
                                "trust.allowedAwsServices")
                if st.get("Action") != "sts:AssumeRole" or equals != {"aws:SourceAccount": self.target}:
                    self.refuse(f"its trust of AWS services is not held to account {self.target} by "
                                "aws:SourceAccount")
            else:
                self.refuse(f"its trust policy trusts {principal!r}; workload-ids never trusts an "
                            "account, a role, a user or *")

    def _github_subjects(self, subjects: Iterable[object]) -> None:
        owners = {o.casefold() for o in self.config.trust.allowedGithubOwners}
        for subject in subjects:
            m = _GITHUB_SUBJECT.fullmatch(str(subject))
            if m is None or "*" in str(subject):
                self.refuse(f"it trusts the GitHub subject {subject!r}, not one exact repository's")
            elif m["owner"].casefold() not in owners:
                self.refuse(f"it trusts GitHub owner {m['owner']!r}, which is not in "
                            "trust.allowedGithubOwners")

    # --- GCP --------------------------------------------------------------------------

    def gcp(self) -> None:
        from ..providers.gcp.render import SERVICE_ACCOUNT_USER, WORKLOAD_IDENTITY_USER, role_base
        from ..trust import deployer_allowed, pool_problem
        b = self.bundle
        base = role_base(self.config.gcp.namePrefix, self.marker.environment, self.marker.workload)
        roles = b.get("roles") or {}
        ours: set[str] = set()
        for rid, role in (roles.items() if isinstance(roles, dict) else ()):
            if not str(rid).startswith(base):
                self.refuse(f"it holds the role {rid}, not one of the workload's own ({base}…)")
                continue
            ours.add(f"projects/{self.target}/roles/{rid}")
            for permission in (role or {}).get("includedPermissions") or []:
                self.action(permission)
        member = f"serviceAccount:{b.get('name')}"
        for field in ("projectBindings", "resourceBindings"):
            for binding in b.get(field) or []:
                role = str(binding.get("role"))
                if role not in ours:
                    self.refuse(f"it binds {role}; workload-ids binds only the workload's own "
                                "custom roles (never predefined or basic roles)")
                if list(binding.get("members") or []) != [member]:
                    self.refuse(f"its binding of {role} names {binding.get('members')!r}; workload-ids "
                                f"binds only {member}")
                if binding.get("resource"):
                    self.resource_of_ours(str(binding["resource"]))
                expression = str((binding.get("condition") or {}).get("expression", ""))
                for name in _QUOTED.findall(expression):
                    self.resource_of_ours(name)
        for binding in b.get("accountBindings") or []:
            role = str(binding.get("role"))
            if role == SERVICE_ACCOUNT_USER:
                # Deployers (attachedTo): each must still be a trust root the config lists.
                for member in binding.get("members") or []:
                    if not deployer_allowed(self.config, str(member)):
                        self.refuse(f"it lets {member} attach the service account to a runtime "
                                    f"({SERVICE_ACCOUNT_USER}), and {member} is not in "
                                    "trust.allowedDeployers")
                continue
            if role != WORKLOAD_IDENTITY_USER:
                self.refuse(f"it grants {role} on the service account itself; workload-ids grants "
                            f"only {WORKLOAD_IDENTITY_USER}, to federated principals, and "
                            f"{SERVICE_ACCOUNT_USER}, to listed deployers")
            for principal in binding.get("members") or []:
                m = _GCP_PRINCIPAL.fullmatch(str(principal))
                if m is None:
                    self.refuse(f"it lets {principal} act as the service account; workload-ids lets "
                                "only workload identity pool principals do that")
                    continue
                problem = pool_problem(self.config, self.target, m["pool"])
                if problem:
                    self.refuse(f"it trusts {principal}: {problem}")
                if m["subject"].startswith("repo:"):
                    self._github_subjects([m["subject"]])

    # --- Azure ------------------------------------------------------------------------

    def azure(self) -> None:
        from ..approvals import WHOLE_VAULT_KIND, resource_key
        from ..providers.azure.render import AUDIENCE, GITHUB_ISSUER
        from ..resources import parse_resource
        from ..trust import deployer_allowed, issuer_allowed
        b = self.bundle
        roles = b.get("roles") or {}
        for rid, role in (roles.items() if isinstance(roles, dict) else ()):
            role = role or {}
            for perm in role.get("permissions") or []:
                if perm.get("notActions") or perm.get("notDataActions"):
                    self.refuse(f"its role {rid} has notActions; workload-ids writes none")
                for action in perm.get("actions") or []:
                    self.action(action, "actions")
                for action in perm.get("dataActions") or []:
                    self.action(action, "dataActions")
            for scope in role.get("assignableScopes") or []:
                parsed = parse_resource("azure", str(scope))
                if parsed is None or parsed.subscription != self.target.lower():
                    self.refuse(f"its role {rid} may be assigned at {scope}, not a resource in "
                                f"subscription {self.target}")
                    continue
                key = resource_key("azure", str(scope))
                if parsed.kind == WHOLE_VAULT_KIND and not any(
                        a.workload == self.label and any(resource_key("azure", r) == key for r in a.resources)
                        for a in self.config.guardrails.approvedEscalations):
                    self.refuse(f"its role {rid} covers the whole Key Vault {scope} with no approval in "
                                "guardrails.approvedEscalations")
                self.resource_of_ours(str(scope))
        from ..model import WITHHELD_GRANTS
        from ..providers.azure.withheld import in_subscription
        for journal in _listed(b.get(WITHHELD_GRANTS)):
            # Hand-made assignments quarantine removed: their MAC (checked by restore, with
            # the signing key) says the tool read them; here only where they may be.
            for grant in (journal.get("grants") or []) if isinstance(journal, dict) else [None]:
                scope = str(grant.get("scope")) if isinstance(grant, dict) else ""
                if not in_subscription(self.target, scope):
                    self.refuse(f"it gives back a role assignment at {scope or grant!r}, not in "
                                f"subscription {self.target}")
        for deployer in _listed(b.get("deployers")):
            if not deployer_allowed(self.config, str(deployer)):
                self.refuse(f"it lets {deployer} attach the managed identity to a site (Managed "
                            "Identity Operator), and it is not in trust.allowedDeployers")
        credentials = b.get("federatedCredentials") or {}
        for name, cred in (credentials.items() if isinstance(credentials, dict) else ()):
            issuer, subject = str((cred or {}).get("issuer")), str((cred or {}).get("subject"))
            if list((cred or {}).get("audiences") or []) != [AUDIENCE]:
                self.refuse(f"its federated credential {name} has audiences other than {AUDIENCE}")
            if issuer == GITHUB_ISSUER:
                self._github_subjects([subject])
            elif not issuer_allowed(self.config, issuer):
                self.refuse(f"its federated credential {name} trusts the issuer {issuer}, which is "
                            "not in the config's trust.allowedIssuers")


def _listed(value: object) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _statements(config: Config) -> tuple[tuple[str, str], ...]:
    """(resource pattern, action) of every AWS template statement the config can use
    (``load_templates`` caches the set)."""
    from ..templates import load_templates
    return tuple((st.resource, action)
                 for t in load_templates(config.template_dirs(), config.catalog_extra())
                 for sts in t.spec.aws.values() for st in sts for action in st.actions)


def _aws_unscoped(config: Config) -> frozenset[str]:
    """Actions (lower case) some template grants on Resource ``*``."""
    return frozenset(a.lower() for r, a in _statements(config) if r == "*")


def _aws_suffixes(config: Config) -> tuple[str, ...]:
    """What templates append to a listed ARN (``/*``, ``:log-stream:*``), longest first."""
    found = {r[len("{arn}"):] for r, _ in _statements(config) if r.startswith("{arn}") and r != "{arn}"}
    return tuple(sorted(found, key=len, reverse=True))
