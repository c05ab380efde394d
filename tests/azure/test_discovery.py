"""Azure discovery against the emulators: managed identities made by hand through the real
azure-mgmt clients, applications made through Graph's REST API (as ``az rest`` would), and
one identity made by workload-ids from an example manifest, read back as facts."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.msi import ManagedServiceIdentityClient
from support.azure import RG, SUB
from support.paths import EXAMPLES
from support.trust import TEST_TRUST_DATA

from workload_ids.calls import CallSeam, RetryPolicy
from workload_ids.clouds import connect
from workload_ids.config import Config, ConfigFile
from workload_ids.discovered import Credential, DiscoveredIdentity, Grant, Principal, UsageSignal
from workload_ids.providers.azure.discovery import SIGN_IN_SIGNAL
from workload_ids.sandbox.azure.arm import StaticTokenCredential
from workload_ids.sandbox.azure.local import LocalAzure, start_local_azure
from workload_ids.sandbox.common.clock import ManualClock
from workload_ids.validate import validate

START = datetime(2026, 1, 1, tzinfo=UTC)
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
GITHUB = "https://token.actions.githubusercontent.com"
SCOPE = f"/subscriptions/{SUB}"


class Azure:
    """The emulators, a config pointing at them, and the clients a person would use."""

    def __init__(self, local: LocalAzure, clock: ManualClock) -> None:
        self.local, self.clock = local, clock
        kwargs = local.arm.client_kwargs()
        self.msi = ManagedServiceIdentityClient(StaticTokenCredential(), SUB, **kwargs)
        self.authz = AuthorizationManagementClient(StaticTokenCredential(), SUB, **kwargs)
        self.config = Config(ConfigFile.model_validate({"azure": local.settings, "trust": TEST_TRUST_DATA}),
                             Path.cwd(), None)
        self.tenant = local.arm.tenant_id

    def identity(self, name: str, tags: dict[str, str] | None = None) -> Any:
        return self.msi.user_assigned_identities.create_or_update(
            RG, name, {"location": "westeurope", "tags": tags or {}})

    def assign(self, principal: str, role: str, scope: str = SCOPE, condition: str | None = None) -> str:
        name = str(uuid.uuid4())
        self.authz.role_assignments.create(scope, name, {
            "role_definition_id": f"{SCOPE}/providers/Microsoft.Authorization/roleDefinitions/{role}",
            "principal_id": principal, "principal_type": "ServicePrincipal",
            **({"condition": condition, "condition_version": "2.0"} if condition else {})})
        return name

    def graph(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One Graph call as ``az rest`` makes it: a bearer token and JSON."""
        answer = requests.request(method, f"{self.local.graph.url}/v1.0/{path}", json=body, timeout=10,
                                  headers={"Authorization": "Bearer hand-made"},
                                  verify=self.local.graph.ca_bundle_path)
        answer.raise_for_status()
        return answer.json() if answer.content else None

    def token(self, app_id: str, secret: str) -> None:
        answer = requests.post(f"{self.local.graph.url}/{self.tenant}/oauth2/v2.0/token", timeout=10, data={
            "client_id": app_id, "client_secret": secret, "grant_type": "client_credentials",
            "scope": "https://graph.microsoft.com/.default"}, verify=self.local.graph.ca_bundle_path)
        answer.raise_for_status()

    def read(self) -> tuple[list[DiscoveredIdentity], CallSeam]:
        """Discovery of the subscription through workload-ids, and the seam it counted on."""
        seam = CallSeam(RetryPolicy(), sleep=lambda s: None)
        cloud = connect("azure", self.config, seam)
        assert cloud.discovery is not None
        return cloud.discovery.discover(SUB), seam

    def discover(self) -> tuple[dict[str, DiscoveredIdentity], CallSeam]:
        found, seam = self.read()
        assert len({i.name for i in found}) == len(found), "names repeat: use read()"
        return {i.name: i for i in found}, seam


@pytest.fixture
def azure() -> Iterator[Azure]:
    clock = ManualClock(START)
    local = start_local_azure(clock=clock)
    yield Azure(local, clock)
    local.stop()


def certificate(common_name: str, days: int) -> str:
    """A self-signed certificate (DER, base64) valid from START for ``days``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(START)
            .not_valid_after(START + timedelta(days=days)).sign(key, hashes.SHA256()))
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")


def apply_example(azure: Azure, tmp_path: Path) -> str:
    """examples/azure/order-reconciliation.yaml planned and applied by workload-ids; its name."""
    path = tmp_path / "order-reconciliation.yaml"
    path.write_text((EXAMPLES / "azure" / "order-reconciliation.yaml").read_text())
    checked = validate([path], azure.config)
    checked.raise_for_errors()
    cloud = connect("azure", azure.config, CallSeam(RetryPolicy(), sleep=lambda s: None))
    desired = cloud.desired(checked.compiled[0])
    for change in cloud.identities.diff(desired, cloud.identities.observe_one(desired)):
        cloud.identities.apply(change)
    return desired.name


def test_managed_identities_read_as_facts(azure: Azure) -> None:
    admin = azure.identity("ops-admin", {"owner": "team-ops"})
    azure.assign(str(admin.principal_id), OWNER)
    azure.msi.federated_identity_credentials.create_or_update(RG, "ops-admin", "github-main", {
        "issuer": GITHUB, "subject": "repo:acme/ops:ref:refs/heads/main",
        "audiences": ["api://AzureADTokenExchange"]})
    aks = f"https://westeurope.oic.prod-aks.azure.com/{azure.tenant}/0c5f1d2e-aaaa-bbbb-cccc-000000000001/"
    azure.msi.federated_identity_credentials.create_or_update(RG, "ops-admin", "aks-ops", {
        "issuer": aks, "subject": "system:serviceaccount:ops:runner",
        "audiences": ["api://AzureADTokenExchange"]})
    reader = azure.identity("blob-reader")
    role = str(uuid.uuid4())
    azure.authz.role_definitions.create_or_update(SCOPE, role, {
        "role_name": "Blob reader (hand-made)", "role_type": "CustomRole", "assignable_scopes": [SCOPE],
        "permissions": [{"actions": ["Microsoft.Storage/storageAccounts/read"],
                         "not_actions": ["Microsoft.Storage/storageAccounts/listKeys/action"],
                         "data_actions": [
                             "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"]}]})
    group = f"{SCOPE}/resourceGroups/{RG}"
    assignment = azure.assign(str(reader.principal_id), role, group,
                              "@Resource[Microsoft.Storage/storageAccounts/blobServices/containers:name] "
                              "StringEquals 'reports'")

    found, seam = azure.discover()

    base = f"{SCOPE}/resourcegroups/{RG}/providers/Microsoft.ManagedIdentity/userAssignedIdentities"
    ops = found["ops-admin"]
    assert ops.id == f"{base}/ops-admin" and ops.kind == "managed-identity" and not ops.managed
    assert ops.created == START  # ARM's systemData.createdAt
    assert ops.tags == {"owner": "team-ops"}
    assert ops.principals == (
        Principal("federated-credential", GITHUB, "sub = repo:acme/ops:ref:refs/heads/main, "
                  "aud = api://AzureADTokenExchange (federated credential github-main)", external=False),
        Principal("federated-credential", aks, "sub = system:serviceaccount:ops:runner, "
                  "aud = api://AzureADTokenExchange (federated credential aks-ops)", external=False))
    [owner] = ops.grants
    assert (owner.actions, owner.resources, owner.source.endswith("(Owner)"), owner.conditional) == (
        ("role:Owner",), (SCOPE,), True, False)
    assert found["blob-reader"].grants == (Grant(
        ("Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
         "Microsoft.Storage/storageAccounts/read"), (group,),
        f"role assignment {assignment} (custom role Blob reader (hand-made); "
        "except Microsoft.Storage/storageAccounts/listKeys/action)", conditional=True),)
    assert found["blob-reader"].principals == ()
    # Neither signed in: the signal is there and says no use.
    assert ops.usage == (UsageSignal(SIGN_IN_SIGNAL, None),) and ops.unread == ()
    # Per subscription: identities, role definitions, role assignments, then each identity's
    # federated credentials; the tenant from Graph: applications, service principals and
    # the two sign-in reports. No signing key read: nothing claims to be ours.
    assert dict(seam.stats.calls) == {
        "azure:msi.user_assigned_identities.list_by_subscription": 1,
        "azure:authorization.role_definitions.list": 1,
        "azure:authorization.role_assignments.list_for_subscription": 1,
        "azure:msi.federated_identity_credentials.list": 2,
        "azure:graph.list_applications_page": 1, "azure:graph.list_service_principals_page": 1,
        "azure:graph.sign_in_activity_page": 2}


def test_ours_is_managed_and_copied_tags_are_not(azure: Azure, tmp_path: Path) -> None:
    name = apply_example(azure, tmp_path)
    ours = azure.msi.user_assigned_identities.get(RG, name)
    # Attack: our tags, MAC included, copied onto an identity made by hand.
    azure.identity("copied-tags", dict(ours.tags))
    # Attack: the same tags on an identity at our naming for another workload.
    azure.identity("wid-prod-ghost", dict(ours.tags))
    found, seam = azure.discover()
    assert {n: i.managed for n, i in found.items()} == {name: True, "copied-tags": False,
                                                         "wid-prod-ghost": False}
    mine = found[name]
    assert [(p.value, p.detail.split(" (")[0], p.external) for p in mine.principals] == [
        (GITHUB, "sub = repo:acme/order-reconciliation:environment:production, "
                 "aud = api://AzureADTokenExchange", False)]
    assert mine.grants and all("(custom role workload-ids prod/order-reconciliation " in g.source
                               for g in mine.grants)
    assert seam.stats.calls["azure:keyvault.get_secret"] == 1  # the signing key, once


def test_applications_with_secrets_and_certificates(azure: Azure) -> None:
    legacy = azure.graph("POST", "applications", {"displayName": "legacy-export",
                                                  "tags": ["owner=team-data"]})
    principal = azure.graph("POST", "servicePrincipals", {"appId": legacy["appId"]})
    secret = azure.graph("POST", f"applications/{legacy['id']}/addPassword", {"passwordCredential": {
        "displayName": "forever", "endDateTime": "2299-12-31T00:00:00Z"}})
    azure.assign(principal["id"], OWNER)
    signer = azure.graph("POST", "applications", {"displayName": "cert-signer"})
    azure.graph("PATCH", f"applications/{signer['id']}", {"keyCredentials": [{
        "type": "AsymmetricX509Cert", "usage": "Verify", "key": certificate("cert-signer", 365)}]})
    azure.graph("POST", f"applications/{signer['id']}/federatedIdentityCredentials", {
        "name": "deploy", "issuer": GITHUB, "subject": "repo:acme/signer:environment:prod",
        "audiences": ["api://AzureADTokenExchange"]})
    azure.graph("POST", "applications", {"displayName": "no-credentials"})
    azure.clock.advance(days=10)
    azure.token(legacy["appId"], secret["secretText"])
    used = START + timedelta(days=10)
    azure.clock.advance(days=5)

    found, _ = azure.discover()

    assert sorted(n for n, i in found.items() if i.kind == "application") == ["cert-signer", "legacy-export"]
    app = found["legacy-export"]
    assert app == DiscoveredIdentity(
        provider="azure", target=SUB, kind="application", id=legacy["id"], name="legacy-export",
        created=START, managed=False, tags={"owner": "team-data"},
        grants=app.grants, credentials=(Credential(
            secret["keyId"], "client-secret", START, datetime(2299, 12, 31, tzinfo=UTC), used, True),),
        usage=(UsageSignal(SIGN_IN_SIGNAL, used),))
    assert [g.actions for g in app.grants] == [("role:Owner",)]
    assert "secretText" not in repr(found) and secret["secretText"] not in repr(found)
    cert = found["cert-signer"]
    [held] = cert.credentials
    assert (held.kind, held.created, held.expires, held.last_used, held.active) == (
        "certificate", START, START + timedelta(days=365), None, True)
    assert cert.principals == (Principal(
        "federated-credential", GITHUB, "sub = repo:acme/signer:environment:prod, "
        "aud = api://AzureADTokenExchange (federated credential deploy)", external=False),)
    assert cert.unread == ("it has no service principal in this tenant: nothing can sign in as it here",)


def test_sign_ins_refused_without_entra_p1_are_said_unread(azure: Azure) -> None:
    azure.identity("quiet-one")
    azure.local.graph.premium = False
    found, _ = azure.discover()
    [why] = found["quiet-one"].unread
    assert found["quiet-one"].usage == ()
    assert why.startswith("sign-in activity (Microsoft Graph reports, beta): not read, because Graph "
                          "refused it (Authentication_RequestFromNonPremiumTenantOrB2CTenant")
    assert why.endswith("it needs Entra ID P1 and AuditLog.Read.All")


def test_issuers_of_the_own_tenant_and_flexible_credentials() -> None:
    from workload_ids.providers.azure.discovery import _federated
    tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
    words = {issuer: (p.external, p.wildcard) for issuer, p in (
        (issuer, _federated(issuer, "x", [], "f", tenant)) for issuer in (
            f"https://login.microsoftonline.com/{tenant}/v2.0", f"https://sts.windows.net/{tenant}/",
            "https://login.microsoftonline.com/0b5e3a52-6c1f-4d7e-9a11-3f2e4d5c6b7a/v2.0",
            f"https://login.microsoftonline.com.evil.example/{tenant}/v2.0"))}
    assert list(words.values()) == [(False, False), (False, False), (True, False), (True, False)]
    # GitHub (or a cluster) the config trusts is the tenant's own federation, as an OIDC
    # provider registered in an AWS account is; an issuer nobody listed is a stranger.
    trusted = frozenset({GITHUB})
    assert not _federated(GITHUB, "repo:acme/x:ref:refs/heads/main", [], "f", tenant, trusted).external
    assert _federated(GITHUB, "repo:acme/x:ref:refs/heads/main", [], "f", tenant).external
    assert _federated("https://issuer.evil.example", "x", [], "f", tenant, trusted).external
    # A flexible credential (Graph beta's claimsMatchingExpression) has no subject: it may
    # admit many callers.
    flexible = _federated(GITHUB, None, ["api://AzureADTokenExchange"], "any-branch", tenant)
    assert (flexible.detail, flexible.wildcard) == (
        "no subject: a claims-matching expression decides, aud = api://AzureADTokenExchange "
        "(federated credential any-branch)", True)


def test_our_application_is_managed_and_copied_tags_are_not(azure: Azure, tmp_path: Path) -> None:
    from support.azure import KEY_MODE
    path = tmp_path / "vendor-sync.yaml"
    path.write_text(KEY_MODE)
    checked = validate([path], azure.config)
    checked.raise_for_errors()
    cloud = connect("azure", azure.config, CallSeam(RetryPolicy(), sleep=lambda s: None))
    desired = cloud.desired(checked.compiled[0])
    for change in cloud.identities.diff(desired, cloud.identities.observe_one(desired)):
        cloud.identities.apply(change)
    [ours] = azure.graph("GET", f"applications?$filter=displayName eq '{desired.name}'")["value"]
    azure.graph("POST", f"applications/{ours['id']}/addPassword", {"passwordCredential": {}})
    # Attack: our tags, MAC included, copied onto an application made by hand (same name
    # too: Graph does not keep display names unique).
    copy = azure.graph("POST", "applications", {"displayName": desired.name, "tags": ours["tags"]})
    azure.graph("POST", f"applications/{copy['id']}/addPassword", {"passwordCredential": {}})
    found, _ = azure.read()
    apps = {i.id: i.managed for i in found if i.kind == "application"}
    assert apps == {ours["id"]: True, copy["id"]: False}
