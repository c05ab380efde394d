"""Who may approve privilege, and what no manifest may touch (issue 13; review H1, H7).

Escalation-capable grants, and grants on a whole Key Vault, need an approval the platform
team holds in the config (``guardrails.approvedEscalations``), naming the workload, the
actions and the exact resources. A manifest's own ``escalation.reason`` documents the
request for reviewers; it approves nothing, because the requester would be the approver.

Grants on the tool's own namespace are refused outright, approved or not: the key-mode
secrets (every workload's credentials), the Key Vault they live in, and the locks. A grant
there would give one workload another workload's credentials.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from .config import ApprovedEscalation, Config
from .errors import Diagnostic, Position
from .escalation import is_escalation
from .manifest import LoadedWorkload
from .model import CompiledWorkload, Grant

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_SECRETS_MANAGER_ARN = re.compile(
    r"arn:aws[a-z-]*:secretsmanager:[^:]*:[^:]*:secret:(?P<name>.+)")
_ARN_SUFFIX = re.compile(r"-[A-Za-z0-9]{6}$")
_GCP_SECRET = re.compile(r"projects/[^/]+/secrets/(?P<id>[^/]+)")
_AZURE_VAULT = re.compile(r"/providers/Microsoft\.KeyVault/vaults/(?P<vault>[^/]+)", re.IGNORECASE)
_AZURE_CONTAINER = re.compile(
    r"/providers/Microsoft\.Storage/storageAccounts/(?P<account>[^/]+)/blobServices/default"
    r"/containers/(?P<container>[^/]+)$", re.IGNORECASE)
# Key Vault DNS suffixes of the public and sovereign clouds: the vault's name is the first label.
_VAULT_HOSTS = (".vault.azure.net", ".vault.azure.cn", ".vault.usgovcloudapi.net",
                ".vault.microsoftazure.de")
WHOLE_VAULT_KIND = "keyvault-vault"


# --- comparing names ----------------------------------------------------------------------

def action_key(provider: str, action: str) -> str:
    """The form two action names are compared in: AWS and Azure ignore case in action
    names, GCP permissions are exact. The one place to point at a catalog's canonical names."""
    return action if provider == "gcp" else action.casefold()


def same_action(provider: str, a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` name the same action on ``provider``."""
    return action_key(provider, a) == action_key(provider, b)


def resource_key(provider: str, resource: str) -> str:
    """Resources are compared exactly, except Azure's ARM IDs, which ARM itself treats
    as case-insensitive (the portal and the CLI spell one ID differently)."""
    return resource.casefold() if provider == "azure" else resource


# --- out-of-band approvals ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Needed:
    """One action on one listed resource that needs an approval, and why."""

    entry: int
    action: str
    resource: str
    why: str  # "escalation" | "vault"


def needed_approvals(provider: str, grants: Iterable[Grant]) -> list[Needed]:
    """Every (action, listed resource) of ``grants`` that needs an approval, in order."""
    out: dict[tuple[int, str, str], Needed] = {}
    for g in grants:
        whole_vault = g.kind == WHOLE_VAULT_KIND
        for action in (*g.actions, *g.data_actions):
            if whole_vault:
                why = "vault"
            elif is_escalation(provider, action):
                why = "escalation"
            else:
                continue
            out.setdefault((g.entry, action, g.listed), Needed(g.entry, action, g.listed, why))
    return list(out.values())


def _applies(approval: ApprovedEscalation, label: str, provider: str, target: str) -> bool:
    return (approval.workload == label and approval.provider in (None, provider)
            and (approval.target is None
                 or resource_key(provider, approval.target) == resource_key(provider, target)))


def matching_approval(config: Config, label: str, provider: str, target: str,
                      need: Needed) -> int | None:
    """The index of the approval in the config that covers ``need``, or None."""
    resource = resource_key(provider, need.resource)
    for i, approval in enumerate(config.guardrails.approvedEscalations):
        if (_applies(approval, label, provider, target)
                and any(same_action(provider, need.action, a) for a in approval.actions)
                and any(resource_key(provider, r) == resource for r in approval.resources)):
            return i
    return None


def approval_snippet(label: str, provider: str, target: str, actions: Sequence[str],
                     resources: Sequence[str]) -> str:
    """The approval the platform team adds to the config, as one line of YAML (flow style,
    values quoted as JSON) so every line of the output stays positioned."""
    def flow(items: Sequence[str]) -> str:
        return "[" + ", ".join(json.dumps(i) for i in items) + "]"
    return ("guardrails: {approvedEscalations: [{"
            f"workload: {json.dumps(label)}, provider: {provider}, target: {json.dumps(target)}, "
            f"actions: {flow(actions)}, resources: {flow(resources)}, "
            'reason: "TICKET-123: who approved this, and why the workload needs it"}]}')


def approval_diagnostics(lw: LoadedWorkload, grants: Sequence[Grant], config: Config) -> list[Diagnostic]:
    """Guardrail refusals, one per access entry, for what needs an approval and has none."""
    spec = lw.workload.spec
    provider, target, label = spec.provider, lw.workload.target(), lw.label
    missing: dict[int, list[Needed]] = {}
    for need in needed_approvals(provider, grants):
        if matching_approval(config, label, provider, target, need) is None:
            missing.setdefault(need.entry, []).append(need)
    out: list[Diagnostic] = []
    for entry, needs in sorted(missing.items()):
        actions = list(dict.fromkeys(n.action for n in needs))
        resources = list(dict.fromkeys(n.resource for n in needs))
        whys = []
        escalating = [n.action for n in needs if n.why == "escalation"]
        if escalating:
            whys.append(f"{', '.join(dict.fromkeys(escalating))} can escalate privilege")
        vaults = [n.resource for n in needs if n.why == "vault"]
        if vaults:
            whys.append(f"a grant on a whole Key Vault ({', '.join(dict.fromkeys(vaults))}) reads "
                        "every secret in it")
        stated = spec.access[entry].escalation
        own = (f" The entry's escalation.reason ({stated.reason!r}) documents the request; it "
               "does not approve it." if stated else "")
        out.append(Diagnostic(
            lw.position("spec", "access", entry),
            f"{'; '.join(whys)}, and no approval in the config's guardrails.approvedEscalations "
            f"covers it for {label}: a manifest cannot approve its own escalation.{own} If the "
            "workload truly needs it, ask the platform team to add to the config "
            "(workload-ids.yaml, kept outside the manifest repository or under code-owner "
            "review): " + approval_snippet(label, provider, target, actions, resources),
            severity="guardrail"))
    return out


def stale_approvals(compiled: Sequence[CompiledWorkload], config: Config, *,
                    whole_fleet: bool) -> list[Diagnostic]:
    """Lint warnings for approvals (or parts of them) that cover nothing this run needs.
    An approval for a workload outside the run is only judged when ``whole_fleet`` (a
    folder was given): a per-service run does not see the other services."""
    used: dict[int, set[tuple[str, str]]] = {}
    present: set[str] = set()
    for cw in compiled:
        present.add(cw.label)
        for need in needed_approvals(cw.provider, cw.grants):
            index = matching_approval(config, cw.label, cw.provider, cw.target, need)
            if index is not None:
                approval = config.guardrails.approvedEscalations[index]
                action = next(a for a in approval.actions if same_action(cw.provider, a, need.action))
                resource = next(r for r in approval.resources
                                if resource_key(cw.provider, r) == resource_key(cw.provider, need.resource))
                used.setdefault(index, set()).update({("action", action), ("resource", resource)})
    out: list[Diagnostic] = []
    for i, approval in enumerate(config.guardrails.approvedEscalations):
        at = config.position(f"guardrails.approvedEscalations.{i}") or Position(str(config.path))
        if approval.workload not in present:
            if whole_fleet:
                out.append(Diagnostic(at, f"approval for {approval.workload} is stale: no manifest "
                                          "declares that workload; remove the approval", "warning"))
            continue
        got = used.get(i, set())
        unused = [a for a in approval.actions if ("action", a) not in got] + \
                 [r for r in approval.resources if ("resource", r) not in got]
        if unused:
            out.append(Diagnostic(at, f"approval for {approval.workload} covers what the workload "
                                      f"no longer asks for: {', '.join(unused)}; remove it from the "
                                      "approval (a stale approval is a standing invitation)", "warning"))
    return out


# --- the tool's own namespace -------------------------------------------------------------

def gcp_secret_id(name: str) -> str:
    """The Secret Manager id (``[A-Za-z0-9_-]{1,255}``) the GCP secret store gives one of
    our secret names (``providers.gcp.render.secret_id`` is this function)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)[:255]


class Namespace:
    """Names of what the tool itself keeps, from the config: key-mode secrets and their
    locks, the Key Vault, the lock container, and the keys it signs markers and audit
    records with (``keys``: Secrets Manager names or ARNs, ``projects/P/secrets/ID``, Key
    Vault secret URLs)."""

    def __init__(self, pattern: str, vault_url: str | None, container_url: str | None,
                 keys: tuple[str, ...] = ()) -> None:
        secret_id = gcp_secret_id
        self.pattern = pattern
        # Everything before the first placeholder is fixed: the tool's prefix. A pattern that
        # starts with a placeholder has none, and only names of the pattern's shape are ours.
        self.prefix = pattern.split("{", 1)[0]
        parts = _PLACEHOLDER.split(pattern)
        aws = "".join(re.escape(p) if i % 2 == 0 else ".+" for i, p in enumerate(parts))
        gcp = "".join(re.escape(secret_id(p)) if i % 2 == 0 else "[A-Za-z0-9_-]+"
                      for i, p in enumerate(parts))
        # The locks live beside the secrets: NAME.lock, whose Secret Manager id is NAME_lock.
        self._aws = re.compile(rf"(?:{aws})(?:\.lock)?")
        self._gcp = re.compile(rf"(?:{gcp})(?:_lock)?")
        self._gcp_prefix = secret_id(self.prefix) if self.prefix else ""
        self.vault = _vault_name(vault_url)
        self.container = _container(container_url)
        # A signing key need not sit under the key-mode prefix (GCP ids cannot hold '/', a
        # team may rename credentials.secretName, audit.sink.signingKey is any name), and a
        # workload that reads one can forge markers or audit records.
        self._keys: dict[str, set[str]] = {"aws": set(), "gcp": set(), "azure": set()}
        for key in keys:
            if key.startswith("https://"):
                path = [p for p in urlsplit(key).path.split("/") if p]
                vault = _vault_name(key)
                if vault and len(path) >= 2 and path[0] == "secrets":
                    self._keys["azure"].add(f"{vault}/{path[1].casefold()}")
            elif secret := _GCP_SECRET.fullmatch(key):
                self._keys["gcp"].add(secret["id"])
            else:
                arn = _SECRETS_MANAGER_ARN.fullmatch(key)
                self._keys["aws"].add(_ARN_SUFFIX.sub("", arn["name"]) if arn else key)
                if "/" not in key and ":" not in key:  # also a Secret Manager id (GCP's marker key)
                    self._keys["gcp"].add(key)

    def _aws_secret(self, name: str) -> bool:
        # The ARN's name ends in a random 6-character suffix; a partial ARN omits it.
        for candidate in {name, _ARN_SUFFIX.sub("", name)}:
            if (self.prefix and candidate.startswith(self.prefix)) or self._aws.fullmatch(candidate):
                return True
        return False

    def owner_of(self, provider: str, resource: str) -> str | None:
        """What of the tool's ``resource`` is, or None when it is not the tool's."""
        if self._signing_key(provider, resource):
            return SIGNING_KEY
        if provider == "aws":
            m = _SECRETS_MANAGER_ARN.fullmatch(resource)
            if m and self._aws_secret(m["name"]):
                return (f"a key-mode secret or lock of workload-ids (credentials.secretName is "
                        f"{self.pattern!r})")
        elif provider == "gcp":
            m = _GCP_SECRET.fullmatch(resource)
            if m and ((self._gcp_prefix and m["id"].startswith(self._gcp_prefix))
                      or self._gcp.fullmatch(m["id"])):
                return (f"a key-mode secret or lock of workload-ids (credentials.secretName is "
                        f"{self.pattern!r}; Secret Manager ids replace '/' with '_')")
        elif provider == "azure":
            vault = _AZURE_VAULT.search(resource)
            if vault and self.vault and vault["vault"].casefold() == self.vault:
                return (f"in Key Vault {vault['vault']}, where workload-ids keeps every key-mode "
                        "client secret (azure.keyVaultUrl)")
            container = _AZURE_CONTAINER.search(resource)
            if container and self.container and \
                    (container["account"].casefold(), container["container"].casefold()) == self.container:
                return "the blob container of workload-ids' locks (azure.lockContainerUrl)"
        return None

    def _signing_key(self, provider: str, resource: str) -> bool:
        if provider == "aws":
            arn = _SECRETS_MANAGER_ARN.fullmatch(resource)
            names = {arn["name"], _ARN_SUFFIX.sub("", arn["name"])} if arn else set()
            return bool(names & self._keys["aws"])
        if provider == "gcp":
            secret = _GCP_SECRET.fullmatch(resource)
            return secret is not None and secret["id"] in self._keys["gcp"]
        vault = _AZURE_VAULT.search(resource)
        if vault is None or not self._keys["azure"]:
            return False
        rest = [p for p in resource[vault.end():].split("/") if p]
        name = vault["vault"].casefold()
        # A whole vault reads every secret in it, the key's included.
        return (any(k.split("/")[0] == name for k in self._keys["azure"]) if not rest else
                len(rest) >= 2 and rest[0].casefold() == "secrets"
                and f"{name}/{rest[1].casefold()}" in self._keys["azure"])


SIGNING_KEY = ("a signing key of workload-ids (of its ownership markers, or audit.sink.signingKey): "
               "a workload that reads it can forge what cleanup, rotate and restore believe")


@functools.lru_cache(maxsize=16)
def _namespace(pattern: str, vault_url: str | None, container_url: str | None,
               keys: tuple[str, ...]) -> Namespace:
    return Namespace(pattern, vault_url, container_url, keys)


def namespace_of(config: Config) -> Namespace:
    """The tool's namespace under ``config`` (built once per distinct setting: a fleet
    compiles thousands of workloads against one config)."""
    from .markers import AWS_KEY_SECRET, KEY_SECRET
    sink = config.data.audit.sink if config.data.audit else None
    keys = (AWS_KEY_SECRET, KEY_SECRET, *([sink.signingKey] if sink else []))
    return _namespace(config.credentials.secretName, config.azure.keyVaultUrl,
                      config.azure.lockContainerUrl, keys)


def _vault_name(url: str | None) -> str | None:
    host = (urlsplit(url).hostname or "") if url else ""
    for suffix in _VAULT_HOSTS:
        if host.endswith(suffix):
            return host[: -len(suffix)].casefold()
    return None  # an emulator's address: no vault name to compare


def _container(url: str | None) -> tuple[str, str] | None:
    if not url:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    path = [p for p in parts.path.split("/") if p]
    if host.endswith(".blob.core.windows.net") and path:
        return host.split(".", 1)[0].casefold(), path[0].casefold()
    if len(path) >= 2:  # an emulator's path-style URL: /ACCOUNT/CONTAINER
        return path[0].casefold(), path[1].casefold()
    return None


def outside_namespace(provider: str, grants: Sequence[Grant], config: Config) -> list[Grant]:
    """``grants`` less those on the tool's namespace (already refused; no approval helps)."""
    namespace = namespace_of(config)
    return [g for g in grants if namespace.owner_of(provider, g.listed) is None
            and namespace.owner_of(provider, g.resource) is None]


def namespace_diagnostics(lw: LoadedWorkload, grants: Sequence[Grant], config: Config) -> list[Diagnostic]:
    """Guardrail refusals for grants on the tool's own namespace (approvals do not help)."""
    provider = lw.workload.spec.provider
    namespace = namespace_of(config)
    out: list[Diagnostic] = []
    seen: set[tuple[int, str]] = set()
    for g in grants:
        if (g.entry, g.listed) in seen:
            continue
        seen.add((g.entry, g.listed))
        what = namespace.owner_of(provider, g.listed) or (
            namespace.owner_of(provider, g.resource) if g.resource != g.listed else None)
        if what is None:
            continue
        listed = lw.workload.spec.access[g.entry].resources
        at = ("spec", "access", g.entry, "resources", listed.index(g.listed)) \
            if g.listed in listed else ("spec", "access", g.entry)
        out.append(Diagnostic(
            lw.position(*at),
            f"resource {g.listed!r} is {what}" + (
                ", so no manifest may hold a grant on it, approved or not" if what == SIGNING_KEY else
                ": a grant on it would give this workload another workload's credentials, so no "
                "manifest may hold one, approved or not. Keep the workload's own secrets under "
                "another name (or another vault), and let each workload read only its own key"),
            severity="guardrail"))
    return out


__all__ = ["Namespace", "Needed", "action_key", "approval_diagnostics", "approval_snippet",
           "gcp_secret_id", "matching_approval", "namespace_diagnostics", "namespace_of",
           "needed_approvals", "outside_namespace", "resource_key", "same_action",
           "stale_approvals"]
