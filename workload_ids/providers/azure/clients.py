"""Azure clients behind the call seam, and azure-core's errors in our terms.

ARM is reached with azure-mgmt-msi (managed identities, federated credentials) and
azure-mgmt-authorization (role definitions, role assignments), one client per
subscription; Microsoft Graph with our REST client on the azure-core pipeline
(:mod:`.graph`); Key Vault with azure-keyvault-secrets. The SDKs' own retry policies are
switched off: retries with backoff live in the seam, where they are counted. With
endpoints in the config (the sandbox, on loopback with sandbox credentials: see
:mod:`workload_ids.endpoints`) the clients go there and trust its CA bundle; otherwise
Azure's public endpoints, the system's CA store and ``DefaultAzureCredential`` apply.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from ...calls import (
    CONFLICT,
    DENIED,
    NO_CREDENTIALS,
    NOT_FOUND,
    OTHER,
    REJECTED,
    THROTTLE,
    TRANSIENT,
    UNREACHABLE,
    CallSeam,
    ErrorInfo,
)
from ...config import Config
from ...errors import CloudError
from ...markers import KEY_SECRET, KeyCache, check, sign
from ...model import FORGED, IMMUTABLE_ID, TAG_MAC, UNAUTHENTICATED, Marker
from . import render

T = TypeVar("T")

ARM_ENDPOINT = "https://management.azure.com"
ARM_SCOPE = "https://management.azure.com/.default"
GRAPH_ENDPOINT = "https://graph.microsoft.com"
AUTHORITY = "https://login.microsoftonline.com"

# ARM answers these with 400 while a new principal replicates, or while a deletion
# settles: worth a retry with backoff, unlike other 400s.
_TRANSIENT_CODES = frozenset({"PrincipalNotFound", "RetryableError", "AnotherOperationInProgress"})
# Graph says so with a 400 while a new application has not reached every replica (Vault's
# Azure secrets engine retries on the same text).
_REPLICATING = ("does not reference a valid application object",)


class StaticTokenCredential:
    """A ``TokenCredential`` that always returns the same far-future token: the sandbox's
    emulators only check that a bearer token is present."""

    def __init__(self, token: str = "sandbox") -> None:  # not a secret: emulators ignore it  # nosec B107
        self._token = token

    def get_token(self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
                  enable_cae: bool = False, **kwargs: Any) -> AccessToken:
        """The token, valid for a year."""
        return AccessToken(self._token, int(time.time()) + 365 * 24 * 3600)


def error_code(exc: BaseException) -> str:
    """ARM's or Graph's error code (``RoleAssignmentExists``, ``Request_ResourceNotFound``),
    else the exception's class name."""
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    if code:
        return str(code)
    response = getattr(exc, "response", None)
    if response is not None:
        try:
            body = response.json()
            nested = body.get("error") if isinstance(body, dict) else None
            if isinstance(nested, dict) and nested.get("code"):
                return str(nested["code"])
        except Exception:  # a body that is not JSON: no code to read  # nosec B110
            pass
    return type(exc).__name__


def classify(exc: BaseException) -> ErrorInfo | None:
    """azure-core exceptions in our terms (see calls.ErrorInfo)."""
    if not isinstance(exc, AzureError):
        return None
    code = error_code(exc)
    message = str(getattr(exc, "message", "") or exc).split("\n", 1)[0]
    status = getattr(exc, "status_code", None)
    if isinstance(exc, ServiceRequestError):
        # The request never reached a server (refused, no route, DNS): a wrong endpoint
        # or a stopped sandbox, given up on in seconds rather than retried for a minute.
        return ErrorInfo(UNREACHABLE, code, message)
    if isinstance(exc, ServiceResponseError):
        return ErrorInfo(TRANSIENT, code, message)
    if type(exc).__name__ == "CredentialUnavailableError":  # azure.identity: nothing to sign in with
        return ErrorInfo(NO_CREDENTIALS, code, message.split(". ", 1)[0])
    if isinstance(exc, ClientAuthenticationError) and status is None:
        # Raised by the credential itself (a token request Entra refused), not by a service.
        return ErrorInfo(REJECTED, code, message)
    if status == 429:
        return ErrorInfo(THROTTLE, code, message)
    if isinstance(status, int) and status >= 500:
        return ErrorInfo(TRANSIENT, code, message)
    if code in _TRANSIENT_CODES or any(text in message for text in _REPLICATING):
        return ErrorInfo(TRANSIENT, code, message)
    if isinstance(exc, ResourceNotFoundError) or status == 404:
        return ErrorInfo(NOT_FOUND, code, message)
    if isinstance(exc, ClientAuthenticationError) or status in (401, 403):
        return ErrorInfo(DENIED, code, message)
    if isinstance(exc, ResourceExistsError | ResourceModifiedError) or status in (409, 412):
        return ErrorInfo(CONFLICT, code, message)
    return ErrorInfo(OTHER, code, message)


_FAULTS: dict[str, tuple[type[HttpResponseError], int]] = {
    THROTTLE: (HttpResponseError, 429), TRANSIENT: (HttpResponseError, 503),
    DENIED: (ClientAuthenticationError, 403), NOT_FOUND: (ResourceNotFoundError, 404),
    CONFLICT: (ResourceExistsError, 409),
}


def make_fault(kind: str, operation: str) -> BaseException:
    """An azure-core exception as the SDKs raise it for ``kind``."""
    cls, status = _FAULTS.get(kind, (HttpResponseError, 500))
    exc = cls(message=f"injected {kind} in {operation}")
    exc.status_code = status
    return exc


class AzureClients:
    """Lazily built clients for one run (shared across threads); every call goes
    through :meth:`call` or :meth:`pages`. Also the marker signing key, which every
    backend of the run reads and writes markers with."""

    def __init__(self, config: Config, seam: CallSeam) -> None:
        self.config = config
        self.seam = seam
        # Failures leave the seam as CloudError of their kind (the SDK's error as the cause),
        # so the backends decide by kind and never read an azure-core exception.
        seam.register("azure", classify, make_fault, translate=True)
        self._credential: Any = None
        self._msi: dict[str, Any] = {}
        self._authorization: dict[str, Any] = {}
        self._graph: Any = None
        self._secrets: Any = None
        # One key in the configured vault serves every subscription (read once each).
        self.signing_keys = KeyCache(self._read_signing_key, lambda _: (
            f"Key Vault {config.azure.keyVaultUrl} secret {KEY_SECRET}" if config.azure.keyVaultUrl else
            f"Key Vault secret {KEY_SECRET} (azure.keyVaultUrl is not set in workload-ids.yaml)"))

    # --- plumbing --------------------------------------------------------------------

    def call(self, operation: str, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """One cloud call, counted, fault-injected and retried by the seam."""
        return self.seam.call("azure", operation, fn, *args, **kwargs)

    # --- the marker signing key ------------------------------------------------------

    def _read_signing_key(self, subscription: str) -> str | None:
        if not self.config.azure.keyVaultUrl:
            return None
        vault = self.secrets
        try:
            found = self.call("keyvault.get_secret", vault.get_secret, KEY_SECRET)
        except CloudError as exc:
            if exc.kind == NOT_FOUND:
                return None
            raise
        return str(found.value or "")

    def signed(self, subscription: str, name: str, immutable_id: str,
               tags: Mapping[str, str]) -> dict[str, str]:
        """``tags`` with the MAC of the marker they hold, for this identity."""
        out = {k: v for k, v in tags.items() if k != TAG_MAC}
        marker = Marker.from_tags(out)
        if marker is not None:
            # Subscription ids are GUIDs, written in either case: the MAC binds the lower.
            out[TAG_MAC] = sign(self.signing_keys.get(subscription), "azure", subscription.lower(), name,
                                immutable_id, marker)
        return out

    def ownership(self, subscription: str, name: str, immutable_id: str, tags: Mapping[str, str],
                  marker: Marker | None) -> dict[str, Any]:
        """What an observed identity's ``extra`` says about its marker: forged by place or
        name, the id its MAC binds, and whether the MAC fails to authenticate it."""
        prefix = self.config.azure.namePrefix
        misplaced = render.not_ours(prefix, name, marker) if marker else None
        unauthenticated = check(self.signing_keys.get(subscription), "azure", subscription.lower(),
                                name, immutable_id, marker, tags.get(TAG_MAC)) \
            if marker is not None and not misplaced else None
        if marker is not None and marker.adopted and unauthenticated:
            # Outside our naming only the MAC vouches for an adopted identity: without it the
            # marker is anyone's tags, and apply must never re-mark such an identity.
            misplaced, unauthenticated = f"it is marked as adopted but {unauthenticated}", None
        return {FORGED: misplaced, IMMUTABLE_ID: immutable_id, UNAUTHENTICATED: unauthenticated}

    def pages(self, operation: str, pager: Any) -> Iterator[Any]:
        """The items of an azure-core pager, each page fetched as one seam call (a retry
        refetches the same page: the page iterator advances only on success)."""
        iterator = pager.by_page()
        while True:
            try:
                page = self.call(operation, lambda: list(next(iterator)))
            except StopIteration:
                return
            yield from page
            if getattr(iterator, "continuation_token", "") is None:
                return  # the last page: another next() would only be a counted no-op

    def connection(self, url: str) -> dict[str, Any]:
        """Keyword arguments for an azure-core client of ``url``: no SDK retries, and the
        sandbox's CA bundle when ``url`` is a local emulator."""
        return self._connection(url)

    def _bundle_for(self, *urls: str) -> str | None:
        # The bundle is an emulator's CA: it never replaces the CA store for Azure itself.
        from ...endpoints import loopback_url
        return self.config.azure_ca_bundle() if all(loopback_url(u) for u in urls) else None

    def _connection(self, url: str) -> dict[str, Any]:
        bundle = self._bundle_for(url)
        # retry_total=0: the seam retries, with counting and a budget of its own
        return {"retry_total": 0, **({"connection_verify": bundle} if bundle else {})}

    @property
    def credential(self) -> Any:
        """The credential every client signs with: the sandbox's fixed one, or DefaultAzureCredential."""
        if self._credential is None:
            if self.config.azure.sandboxCredentials:
                self._credential = StaticTokenCredential()
            else:
                from ...clock import check_real_credentials
                from ...endpoints import require_sandbox_credentials
                require_sandbox_credentials(self.config, "azure")
                check_real_credentials("Azure", "azure.sandboxCredentials")
                from azure.identity import DefaultAzureCredential
                self._credential = DefaultAzureCredential()
        return self._credential

    # --- clients ---------------------------------------------------------------------

    def msi(self, subscription: str) -> Any:
        """``ManagedServiceIdentityClient`` for one subscription."""
        if subscription not in self._msi:
            from azure.mgmt.msi import ManagedServiceIdentityClient
            endpoint = self.config.azure.armEndpoint or ARM_ENDPOINT
            self._msi[subscription] = ManagedServiceIdentityClient(
                self.credential, subscription, base_url=endpoint, credential_scopes=[ARM_SCOPE],
                **self._connection(endpoint))
        return self._msi[subscription]

    def authorization(self, subscription: str) -> Any:
        """``AuthorizationManagementClient`` for one subscription."""
        if subscription not in self._authorization:
            from azure.mgmt.authorization import AuthorizationManagementClient
            endpoint = self.config.azure.armEndpoint or ARM_ENDPOINT
            self._authorization[subscription] = AuthorizationManagementClient(
                self.credential, subscription, base_url=endpoint, credential_scopes=[ARM_SCOPE],
                **self._connection(endpoint))
        return self._authorization[subscription]

    @property
    def graph(self) -> Any:
        """Our Graph REST client (:class:`.graph.GraphClient`)."""
        if self._graph is None:
            from .graph import GraphClient
            endpoint = self.config.azure.graphEndpoint or GRAPH_ENDPOINT
            authority = self.config.azure.authorityEndpoint or AUTHORITY
            # One transport serves both: the bundle only when both are emulators.
            bundle = self._bundle_for(endpoint, authority)
            self._graph = GraphClient(self.credential, endpoint=endpoint, authority=authority,
                                      tenant_id=self.config.azure.tenantId,
                                      connection_verify=bundle or True)
        return self._graph

    @property
    def secrets(self) -> Any:
        """``SecretClient`` for the configured vault (key mode)."""
        if self._secrets is None:
            from azure.keyvault.secrets import SecretClient

            from ...errors import UserError
            url = self.config.azure.keyVaultUrl
            if not url:
                raise UserError("Azure key mode delivers client secrets to Key Vault: set azure.keyVaultUrl "
                                "in workload-ids.yaml (https://VAULT.vault.azure.net)")
            self._secrets = SecretClient(url, self.credential, **self._connection(url),
                                         verify_challenge_resource=not self.config.azure.sandboxCredentials)
        return self._secrets
