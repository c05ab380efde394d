"""The config is a trust root: what it may point the tool at.

Every endpoint in ``workload-ids.yaml`` receives something worth stealing: a cloud token,
a new client secret or service-account key, the SCIM bearer token. Anyone who can edit
the config could otherwise send them to a host of their choosing, so these rules are
checked when the config is loaded, before any client is built:

- an endpoint override (``aws.endpointUrl``, the ``gcp.*Endpoint`` and ``azure.*Endpoint``
  fields) is for a local emulator: its host must be this machine (127.0.0.0/8, ::1,
  ``localhost``) and the provider's ``sandboxCredentials`` must be true, so that only the
  sandbox's fake credentials can ever reach it. Plaintext gRPC and http REST are
  therefore only ever spoken to loopback;
- ``azure.keyVaultUrl`` and ``azure.lockContainerUrl`` name real Azure resources: https,
  a Key Vault or Blob Storage host of a public or sovereign Azure cloud, or a loopback
  emulator with sandbox credentials;
- ``azure.caBundle`` is an emulator's CA: only with sandbox credentials (the clients also
  apply it to loopback hosts only, never to Azure itself);
- ``owners.url`` is https; http only to loopback with ``owners.allowInsecureLoopback``;
- ``owners.tokenEnv`` names a variable starting with ``WORKLOAD_IDS_``, so the config
  cannot send the CI's OIDC request token or cloud keys as a bearer token;
- ``templates`` hold no ``..`` segment (they decide what a grant means; a template
  folder must not climb out of the protected place the config lives in).
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING

from .errors import Diagnostic, Position, UserError

if TYPE_CHECKING:
    from .config import Config

VARIABLE_PREFIX = "WORKLOAD_IDS_"

# Key Vault and Blob Storage host suffixes of Azure's public and sovereign clouds.
VAULT_SUFFIXES = (".vault.azure.net", ".vault.azure.cn", ".vault.usgovcloudapi.net",
                  ".vault.microsoftazure.de")
BLOB_SUFFIXES = (".blob.core.windows.net", ".blob.core.chinacloudapi.cn",
                 ".blob.core.usgovcloudapi.net", ".blob.core.cloudapi.de")

# Endpoint overrides, per provider: (field, form) where form is "url" or "grpc" (HOST:PORT).
ENDPOINTS: dict[str, tuple[tuple[str, str], ...]] = {
    "aws": (("endpointUrl", "url"),),
    "gcp": (("iamEndpoint", "grpc"), ("resourceManagerEndpoint", "url"),
            ("secretManagerEndpoint", "grpc"), ("resourcePolicyEndpoint", "grpc"),
            ("storageEndpoint", "url"), ("policyAnalyzerEndpoint", "url")),
    "azure": (("armEndpoint", "url"), ("graphEndpoint", "url"), ("authorityEndpoint", "url")),
}
_CLOUD: dict[str, str] = {"aws": "AWS", "gcp": "Google Cloud", "azure": "Azure"}


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` is this machine: ``localhost``, 127.0.0.0/8 or ::1 (by name, never
    by a DNS lookup that someone else answers)."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_of(value: str, form: str = "url") -> str | None:
    """The host of a URL, or of a gRPC ``HOST:PORT`` target; None when it has none."""
    if form == "grpc":
        return value.rsplit(":", 1)[0] or None
    try:
        return urllib.parse.urlsplit(value).hostname
    except ValueError:
        return None


def loopback_url(url: str | None) -> bool:
    """Whether ``url`` points at this machine (an emulator)."""
    return bool(url) and is_loopback(host_of(url or ""))


def config_problems(config: Config) -> list[Diagnostic]:
    """Every way ``config`` would send credentials, keys or tokens off the machine or to a
    host that is not the cloud's own, or read them from a variable it should not."""
    out: list[Diagnostic] = []

    def at(dotted: str) -> Position:
        return config.position(dotted) or Position(str(config.path))

    def add(dotted: str, message: str) -> None:
        out.append(Diagnostic(at(dotted), message))

    for provider, fields in ENDPOINTS.items():
        section = getattr(config.data, provider)
        for name, form in fields:
            value = getattr(section, name)
            if not value:
                continue
            dotted = f"{provider}.{name}"
            host = host_of(value, form)
            if not is_loopback(host):
                add(dotted, f"{dotted} points at {host or value}, which is not this machine: endpoint "
                            "overrides are for local emulators only (127.0.0.1, ::1 or localhost), "
                            f"because the tool sends them credentials. Remove {dotted} to use "
                            f"{_CLOUD[provider]}'s own endpoints")
            elif not section.sandboxCredentials:
                add(dotted, f"{dotted} overrides {_CLOUD[provider]}'s endpoint, but "
                            f"{provider}.sandboxCredentials is not true: real credentials are never "
                            "sent to an endpoint other than the cloud's own. Set "
                            f"{provider}.sandboxCredentials: true (local emulators only) or remove "
                            f"{dotted}")

    azure = config.data.azure
    for name, suffixes, example in (
            ("keyVaultUrl", VAULT_SUFFIXES, "https://VAULT.vault.azure.net"),
            ("lockContainerUrl", BLOB_SUFFIXES, "https://ACCOUNT.blob.core.windows.net/CONTAINER")):
        value = getattr(azure, name)
        host = host_of(value) if value else None
        if not value or (host and host.lower().endswith(suffixes)):
            continue
        dotted = f"azure.{name}"
        if not is_loopback(host):
            add(dotted, f"azure.{name} points at {host or value}, which is not an Azure "
                        f"{'Key Vault' if name == 'keyVaultUrl' else 'Blob Storage'} host: new client "
                        f"secrets and tokens would go there. Write the resource's own URL, e.g. {example}")
        elif not azure.sandboxCredentials:
            add(dotted, f"azure.{name} points at a local emulator, but azure.sandboxCredentials is not "
                        "true: real credentials are never sent to an emulator. Set "
                        f"azure.sandboxCredentials: true or write the real resource's URL, e.g. {example}")

    if azure.caBundle and not azure.sandboxCredentials:
        add("azure.caBundle", "azure.caBundle is the CA of local emulators, and is used only with "
                              "azure.sandboxCredentials: true; real Azure endpoints are always verified "
                              "against the system's CA store. Remove azure.caBundle")

    out.extend(_audit_sink_problems(config, at))

    owners = config.data.owners
    if owners is not None and owners.url:
        try:
            parts = urllib.parse.urlsplit(owners.url)
        except ValueError:
            parts = None
        if parts is not None and parts.scheme == "http":
            if not is_loopback(parts.hostname):
                add("owners.url", f"owners.url is plain http to {parts.hostname or owners.url}: the "
                                  "SCIM bearer token would cross the network in clear. Use https")
            elif not owners.allowInsecureLoopback:
                add("owners.url", "owners.url is plain http: use https, or, for a test directory on "
                                  "this machine only, set owners.allowInsecureLoopback: true")
    if owners is not None and owners.tokenEnv and not owners.tokenEnv.startswith(VARIABLE_PREFIX):
        add("owners.tokenEnv", f"owners.tokenEnv is {owners.tokenEnv}: the SCIM token is read only from "
                               f"a variable whose name starts with {VARIABLE_PREFIX} (so the config "
                               "cannot send another secret, such as a CI token or a cloud key, as the "
                               f"bearer token). Export the token as e.g. {VARIABLE_PREFIX}SCIM_TOKEN and "
                               "name that variable")

    for i, folder in enumerate(config.data.templates):
        if ".." in folder.replace("\\", "/").split("/"):
            add(f"templates.{i}", f"templates.{i} ({folder}) climbs out of the config's folder with "
                                  "'..': templates decide what a grant means, so keep them in or below "
                                  "the config's (protected) folder, or name an absolute path")
    return out


def _audit_sink_problems(config: Config, at: Callable[[str], Position]) -> list[Diagnostic]:
    """``audit.sink``: a URL of one of the three forms, on the cloud's own host (or a
    loopback emulator with sandbox credentials); an Azure key on a Key Vault host."""
    audit = config.data.audit
    sink = audit.sink if audit is not None else None
    if sink is None:
        return []
    out: list[Diagnostic] = []
    try:
        kind, _, _ = parse_sink_url(sink.url)
    except ValueError as exc:
        return [Diagnostic(at("audit.sink.url"), f"audit.sink.url {sink.url} is not an audit sink: {exc}")]
    azure = config.data.azure
    checks = []
    if kind == "azure":
        checks.append(("audit.sink.url", sink.url, BLOB_SUFFIXES,
                       "https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX"))
    if secret_reference_kind(sink.signingKey) == "azure":
        checks.append(("audit.sink.signingKey", sink.signingKey, VAULT_SUFFIXES,
                       "https://VAULT.vault.azure.net/secrets/NAME"))
    for dotted, value, suffixes, example in checks:
        host = host_of(value)
        if host and host.lower().endswith(suffixes):
            continue
        if not is_loopback(host):
            out.append(Diagnostic(at(dotted), f"{dotted} points at {host or value}, which is not an "
                                              f"Azure host of that kind: the tool's token would go "
                                              f"there. Write the resource's own URL, e.g. {example}"))
        elif not azure.sandboxCredentials:
            out.append(Diagnostic(at(dotted), f"{dotted} points at a local emulator, but "
                                              "azure.sandboxCredentials is not true: real credentials "
                                              "are never sent to an emulator. Set "
                                              "azure.sandboxCredentials: true or write the real "
                                              f"resource's URL, e.g. {example}"))
    return out


def require_sandbox_credentials(config: Config, provider: str) -> None:
    """Refuse to build ``provider``'s clients with real credentials while one of its
    endpoints is overridden: the check the config loader makes, repeated where clients
    are built, for configs made in code."""
    section = getattr(config.data, provider)
    if section.sandboxCredentials:
        return
    for name, _ in ENDPOINTS[provider]:
        if getattr(section, name):
            raise UserError(f"{provider}.{name} is set but {provider}.sandboxCredentials is not true: "
                         "real credentials are never sent to an endpoint other than the cloud's own")


# Where the audit sink and its signing key live: parsed here, beside the other checks of
# where the config sends things, and used by the sink itself.
_GCP_SECRET = re.compile(r"^projects/[^/]+/secrets/[^/]+$")


def parse_sink_url(url: str) -> tuple[str, str, str]:
    """(kind, bucket or container URL, prefix) of ``audit.sink.url``; ValueError when it is
    none of the three forms."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path.strip("/")
    if parts.scheme in ("s3", "gs"):
        if not parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"write {parts.scheme}://BUCKET/PREFIX")
        return parts.scheme, parts.netloc, path
    if parts.scheme == "https" and parts.hostname and not parts.query and not parts.fragment:
        return "azure", url, path
    raise ValueError("write s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or "
                     "https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX")


def secret_reference_kind(ref: str) -> str:
    """``aws``, ``gcp`` or ``azure``: whose secret store ``ref`` names."""
    if _GCP_SECRET.match(ref):
        return "gcp"
    if ref.startswith("https://"):
        return "azure"
    return "aws"
