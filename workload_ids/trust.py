"""Trust roots come from the config, not the manifest (issue 13; review H5, M2).

A federation entry names who may obtain the workload's credentials: a Kubernetes OIDC
issuer, a GitHub repository, a GCP workload identity pool, an AWS service. The cloud
believes whatever that root signs, so a manifest that picks its own issuer (one its
author hosts) or a pool in a project its author controls can mint the identity from
anywhere. Only roots the platform team lists under ``trust:`` are accepted; with nothing
listed, Kubernetes and GitHub federation are refused, and the message prints the lines
to add.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from .config import Config
from .errors import Diagnostic
from .manifest import LoadedWorkload

GITHUB_DOCS = "https://docs.github.com/actions/security-for-github-actions/security-hardening-your-deployments"


def normalize_issuer(url: str) -> str:
    """Issuers compare exactly, but a trailing slash is not a different issuer to a reader."""
    return url.rstrip("/")


def issuer_allowed(config: Config, issuer: str) -> bool:
    """Whether ``issuer`` is in ``trust.allowedIssuers``."""
    return normalize_issuer(issuer) in {normalize_issuer(i) for i in config.trust.allowedIssuers}


def _snippet(field: str, values: Sequence[str] | dict[str, int]) -> str:
    """The config line to add, in YAML flow style: one line, so every line of the output
    stays ``FILE:LINE:COLUMN: message`` (values quoted as JSON, which YAML reads)."""
    if isinstance(values, dict):
        body = "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in values.items()) + "}"
    else:
        body = "[" + ", ".join(json.dumps(v) for v in values) + "]"
    return f"trust: {{{field}: {body}}}"


def _pool_problem(config: Config, project: str, pool: str) -> str | None:
    """Why ``pool`` may not be trusted by a workload in ``project``, or None."""
    trust = config.trust
    number = pool.split("/")[1]
    for allowed in trust.allowedPools:
        entry = allowed.rstrip("/")
        if pool == entry or (entry.count("/") == 1 and number == entry.split("/")[1]):
            return None
    known = trust.gcpProjectNumbers.get(project)
    if known is None:
        return (f"pool {pool} is in project number {number}, and the config does not say which "
                f"number project {project} has: a pool in a project the manifest's author controls "
                f"would let them mint this identity. If it is {project}'s own pool, the platform "
                "team adds the project's number (gcloud projects describe "
                f"{project} --format='value(projectNumber)') to the config, or lists the pool "
                "itself under trust.allowedPools: "
                + _snippet("gcpProjectNumbers", {project: int(number)}))
    if str(known) != number:
        return (f"pool {pool} is in project number {number}, not in the workload's project "
                f"{project} ({known}): a pool in another project is trusted only when the "
                "platform team lists it: " + _snippet("allowedPools", [pool]))
    return None


def pool_problem(config: Config, project: str, pool: str) -> str | None:
    """Why a workload in ``project`` may not trust the workload identity pool ``pool``
    (``projects/NUMBER/locations/global/workloadIdentityPools/ID``), or None."""
    return _pool_problem(config, project, pool)


def trust_diagnostics(lw: LoadedWorkload, config: Config) -> list[Diagnostic]:
    """Guardrail refusals for federation entries whose trust root the config does not list."""
    spec = lw.workload.spec
    trust = config.trust
    owners = {o.casefold() for o in trust.allowedGithubOwners}
    out: list[Diagnostic] = []

    def refuse(index: int, field: str, message: str) -> None:
        out.append(Diagnostic(lw.position("spec", "credentials", "federation", index, field),
                              message, severity="guardrail"))

    for i, fed in enumerate(spec.credentials.federation):
        if fed.kind == "github-actions":
            owner = fed.repository.split("/", 1)[0]
            # GitHub owner names ignore case (github.com/Acme is github.com/acme).
            if owner.casefold() not in owners:
                refuse(i, "repository",
                       f"GitHub owner {owner!r} is not in the config's trust.allowedGithubOwners"
                       f"{' (' + ', '.join(trust.allowedGithubOwners) + ')' if owners else ''}: "
                       "GitHub signs tokens for every repository on github.com, so the platform "
                       "team lists the organisations whose workflows may federate. To allow it, "
                       "they add to the config: " + _snippet("allowedGithubOwners", [owner]))
        elif fed.kind == "kubernetes":
            if not issuer_allowed(config, fed.issuer):
                refuse(i, "issuer",
                       f"issuer {fed.issuer} is not in the config's trust.allowedIssuers: the "
                       "cloud would trust every token that issuer signs, and anyone can host an "
                       "issuer. If it is your cluster's, the platform team adds to the config: "
                       + _snippet("allowedIssuers", [normalize_issuer(fed.issuer)]))
        elif fed.kind == "aws-service" and spec.provider == "aws":
            allowed = config.trust.aws_services()
            if fed.service not in allowed:
                refuse(i, "service",
                       f"service {fed.service} is not in trust.allowedAwsServices "
                       f"({', '.join(allowed) or 'none'}): anyone in the account who may pass the "
                       "role could run that service as this workload. If the workload runs there, "
                       "the platform team lists it (with the defaults it still wants): "
                       + _snippet("allowedAwsServices", sorted({*allowed, fed.service})))
        pool = getattr(fed, "workloadIdentityPool", None)
        if pool and spec.provider == "gcp" and spec.gcp:
            problem = _pool_problem(config, spec.gcp.project, pool)
            if problem:
                refuse(i, "workloadIdentityPool", problem)
    out.extend(_attachment_diagnostics(lw, config))
    return out


# What trust.allowedDeployers takes: a GCP member or an Entra object id.
_DEPLOYER = re.compile(r"(serviceAccount|user|group):[^\s@:]+@[A-Za-z0-9.-]+"
                       r"|[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def deployer_allowed(config: Config, deployer: str) -> bool:
    """Whether ``deployer`` is in ``trust.allowedDeployers`` (GCP members compare without
    case, as GCP does for emails; Entra object ids are GUIDs, which have none)."""
    return deployer.casefold() in {d.casefold() for d in config.trust.allowedDeployers}


def _attachment_diagnostics(lw: LoadedWorkload, config: Config) -> list[Diagnostic]:
    """Guardrail refusals for attachments: every deployer must be listed in
    ``trust.allowedDeployers`` (whoever may attach the identity to a runtime may run code
    as it), and on AWS the attachment's service in ``trust.allowedAwsServices``."""
    from .manifest import ATTACHMENT_KINDS, AWS_ATTACHMENT_SERVICES
    spec = lw.workload.spec
    out: list[Diagnostic] = []
    for i, att in enumerate(spec.credentials.attachedTo or []):
        if ATTACHMENT_KINDS.get(att.kind) != spec.provider:
            continue  # compile reports the kind
        at = ("spec", "credentials", "attachedTo", i)
        service = AWS_ATTACHMENT_SERVICES.get(att.kind)
        if service is not None:
            allowed = config.trust.aws_services()
            if service not in allowed:
                out.append(Diagnostic(
                    lw.position(*at, "kind"),
                    f"attachedTo kind {att.kind} trusts the service {service}, which is not in "
                    f"trust.allowedAwsServices ({', '.join(allowed) or 'none'}): anyone in the account "
                    "who may pass the role could run that service as this workload. If the workload "
                    "runs there, the platform team lists it (with the defaults it still wants): "
                    + _snippet("allowedAwsServices", sorted({*allowed, service})), severity="guardrail"))
            continue  # AWS takes no deployers (compile says why)
        for d, deployer in enumerate(att.deployers):
            if deployer_allowed(config, deployer) or not _DEPLOYER.fullmatch(deployer):
                continue  # allowed, or not a deployer at all (compile says what to write)
            listed = config.trust.allowedDeployers
            out.append(Diagnostic(
                lw.position(*at, "deployers", d),
                f"deployer {deployer} is not in the config's trust.allowedDeployers"
                f"{' (' + ', '.join(listed) + ')' if listed else ''}: whoever may attach this "
                "identity to a runtime may run code as it, so the platform team lists who may "
                "deploy with workload identities. To allow it, they add to the config: "
                + _snippet("allowedDeployers", [deployer]), severity="guardrail"))
    return out


def github_id_problems(lw: LoadedWorkload) -> list[Diagnostic]:
    """Errors for immutable GitHub ids on clouds that cannot check them: a field the cloud
    ignores would read as a protection that is not there."""
    provider = lw.workload.spec.provider
    out: list[Diagnostic] = []
    for i, fed in enumerate(lw.workload.spec.credentials.federation):
        if fed.kind != "github-actions":
            continue
        for field, claim in (("repositoryId", "repository_id"), ("repositoryOwnerId", "repository_owner_id")):
            value = getattr(fed, field)
            if value is None:
                continue
            why = None
            if provider == "aws" and field == "repositoryOwnerId":
                why = ("AWS STS checks GitHub's repository_id claim but not repository_owner_id; "
                       "use repositoryId, and the owner allow-list (trust.allowedGithubOwners)")
            elif provider == "gcp":
                why = ("GCP checks claims other than the subject only in the workload identity "
                       "pool provider's attribute condition, which the platform team owns and this "
                       "tool does not manage; ask them to add to the provider's attribute condition: "
                       f"assertion.{claim} == '{value}'")
            elif provider == "azure":
                why = ("Azure federated identity credentials match only issuer, subject and "
                       "audience (claims-matching expressions are a preview this tool does not "
                       "use); the trust stays by repository name, so keep the owner in "
                       "trust.allowedGithubOwners")
            if why:
                out.append(Diagnostic(
                    lw.position("spec", "credentials", "federation", i, field, key=True),
                    f"{field} cannot be enforced on {provider}: {why}. Remove {field} from this "
                    "entry"))
    return out


def trust_lint(lw: LoadedWorkload) -> list[Diagnostic]:
    """Warnings for trust that is weaker than it reads."""
    out: list[Diagnostic] = []
    for i, fed in enumerate(lw.workload.spec.credentials.federation):
        if fed.kind != "github-actions":
            continue
        at = ("spec", "credentials", "federation", i)
        if fed.environment is not None:
            out.append(Diagnostic(
                lw.position(*at, "environment"),
                f"environment {fed.environment!r} trusts any workflow run that deploys to it, from "
                "any branch, unless the GitHub environment has protection rules (required "
                "reviewers, deployment branches); repository admins can create or change "
                f"environments. Protect it, or trust a protected branch ref ({GITHUB_DOCS})",
                "warning"))
        if fed.ref and fed.ref.startswith("refs/tags/"):
            out.append(Diagnostic(
                lw.position(*at, "ref"),
                f"{fed.ref} is a tag: anyone who can push tags can move or create it and act as "
                "this workload; prefer a protected branch, or protect the tags with a ruleset",
                "warning"))
    return out


__all__ = ["deployer_allowed", "github_id_problems", "issuer_allowed", "normalize_issuer", "pool_problem",
           "trust_diagnostics", "trust_lint"]
