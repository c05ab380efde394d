"""Existing service accounts for ``workload-ids adopt``: read one whole (the account, who
may act as it, and every binding naming it that :mod:`.holdings` finds, each role
expanded into its permissions), say what of it a manifest can express exactly, and mark
it ours (the marker and its MAC in its description, where GCP markers live).

Bindings on other resources (buckets, topics, secrets...) and in other projects are not
found: only Cloud Asset Inventory lists them, and the output says so.
"""

from __future__ import annotations

import re

from ...config import Config
from ...model import CompiledWorkload, GithubTrust, HeldIdentity, HeldPermissions, Marker, Trust
from ..interface import AdoptionBackend, unchanged_since_proof
from . import render
from .clients import GcpClients
from .holdings import (
    Holdings,
    bindings_of,
    canonical,
    desired_trust_rows,
    permission_pairs_held,
    trust_change_rows,
    trust_rows,
)
from .identity import GcpIdentities
from .policies import GcpPolicies

_MEMBER = re.compile(r"principal://iam\.googleapis\.com/(?P<pool>projects/\d{1,20}/locations/global/"
                     r"workloadIdentityPools/[a-z0-9-]{4,32})/subject/(?P<subject>.+)")
_GITHUB = re.compile(r"repo:(?P<repo>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+):(?P<how>ref|environment):(?P<value>.+)")


def federation_of(trust: str, project: str, config: Config) -> tuple[list[Trust], list[str]]:
    """The federation entries the account's own policy maps to, member by member: a
    Workload Identity User binding to a single GitHub subject of a pool the config trusts,
    where render gives back exactly that member; the rest in words."""
    from ...trust import pool_problem
    trusts: list[Trust] = []
    dropped: list[str] = []
    for b in bindings_of(trust):
        role = str(b["role"])
        condition = (b.get("condition") or {}).get("expression")
        for member in (str(m) for m in b.get("members", []) if not str(m).startswith("deleted:")):
            where = f"its own IAM policy: {role} for {member}"
            if role != render.WORKLOAD_IDENTITY_USER:
                hint = "; deployers go under credentials.attachedTo by hand" \
                    if role == render.SERVICE_ACCOUNT_USER else ""
                dropped.append(f"{where} (who may act as the account) cannot be written as a "
                               f"federation entry{hint}")
                continue
            if condition:
                dropped.append(f"{where} only under the condition {condition} (conditions cannot be adopted)")
                continue
            m = _MEMBER.fullmatch(member)
            if m is None:
                dropped.append(f"{where}: only a single subject of a workload identity pool "
                               "(principal://.../subject/...) maps to a federation entry"
                               + ("; a principalSet admits every identity it matches"
                                  if member.startswith("principalSet://") else ""))
                continue
            problem = pool_problem(config, project, m["pool"])
            if problem is not None:
                dropped.append(f"{where}: {problem}")
                continue
            found = _trust_of(m["subject"], m["pool"])
            if found is None:
                dropped.append(f"{where}: subject {m['subject']} is not a GitHub repository's ref or "
                               "environment (a Kubernetes subject needs its cluster's issuer, which the "
                               "pool's provider holds and adopt does not read: add it by hand)")
                continue
            if f"principal://iam.googleapis.com/{found.pool}/subject/{found.subject()}" != member:
                dropped.append(f"{where} does not map exactly to a federation entry")
                continue
            if found not in trusts:
                trusts.append(found)
    return trusts, dropped


def _trust_of(subject: str, pool: str) -> GithubTrust | None:
    m = _GITHUB.fullmatch(subject)
    if m is None or "*" in subject:
        return None
    if m["how"] == "ref":
        return GithubTrust(m["repo"], ref=m["value"], pool=pool)
    return GithubTrust(m["repo"], environment=m["value"], pool=pool)


# --- the backend ---------------------------------------------------------------------------


class GcpAdoption(AdoptionBackend):
    """Read a service account whole, and write our marker in its description."""

    def __init__(self, config: Config, clients: GcpClients, policies: GcpPolicies,
                 identities: GcpIdentities) -> None:
        self.config = config
        self.clients = clients
        self.policies = policies
        self.identities = identities
        self.holdings = Holdings(clients, policies)
        # Role name -> its permissions, or why they were not read (one GetRole per role a run).
        self._roles: dict[str, tuple[str, ...] | str] = {}

    def read(self, target: str, address: str) -> HeldIdentity | None:
        """The account, its own policy and every binding naming it that the tool finds."""
        account = self.identities.account(f"projects/{target}/serviceAccounts/{address}")
        if account is None or str(account.email) != address:
            return None
        marker = Marker.from_text(account.description)
        own = render.policy_bindings(self.policies.account_policy(
            f"projects/{target}/serviceAccounts/{address}"))
        return HeldIdentity(
            provider="gcp", target=target, kind="service-account", name=address.split("@", 1)[0],
            address=address, immutable_id=str(account.unique_id),
            tags=self.identities.account_tags(account, marker),
            trust=canonical(sorted(own, key=canonical)),
            policies=tuple(self.holdings.held_policies(target, address)),
            settings={"description": "" if marker else str(account.description),
                      "displayName": str(account.display_name),
                      "disabled": "true" if account.disabled else "false"})

    def permissions(self, held: HeldIdentity) -> HeldPermissions:
        """Every binding read, each role expanded into its permissions."""
        found = permission_pairs_held(held.policies)
        if held.settings.get("description"):
            found.dropped.append("its description (the manifest keeps it as metadata.description): "
                                 "--apply writes the workload-ids marker there, where GCP keeps it")
        if held.settings.get("disabled") == "true":
            found.dropped.append("the account is disabled: nothing it holds works until it is enabled")
        return found

    def federation(self, held: HeldIdentity) -> tuple[list[Trust], list[str]]:
        """Its own policy's Workload Identity Users as federation entries, where exact."""
        return federation_of(held.trust, held.target, self.config)

    def spec(self, held: HeldIdentity, permissions: HeldPermissions,
             region: str | None = None) -> dict[str, str]:
        """``spec.gcp``: the project (GCP identities have no region)."""
        return {"project": held.target}

    def trust_change(self, held: HeldIdentity, compiled: CompiledWorkload) -> list[str]:
        """The rows by which the manifest's account policy differs from the account's."""
        return trust_change_rows(trust_rows(bindings_of(held.trust)), desired_trust_rows(compiled))

    def mark(self, held: HeldIdentity, marker: Marker) -> None:
        """Write the marker and its MAC (over the email and unique id) into the description,
        after reading the account again: the same account, still unmarked, holding the same."""
        unchanged_since_proof(self.read(held.target, held.address), held, "service account",
                              "who may act as it or what it holds")
        description = self.identities.marked_description(held.target, held.address, held.immutable_id,
                                                         marker)
        self.clients.iam.patch_service_account(request={
            "service_account": {"name": f"projects/{held.target}/serviceAccounts/{held.address}",
                                "description": description},
            "update_mask": {"paths": ["description"]}})
