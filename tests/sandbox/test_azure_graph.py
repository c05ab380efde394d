"""The Graph emulator, driven over HTTPS through our GraphClient (and raw azure-core where
the wire shape itself is the point)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core import PipelineClient
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest, HttpResponse
from azure.mgmt.authorization import AuthorizationManagementClient

from workload_ids.providers.azure.graph import GraphClient, odata_string, tag_filter
from workload_ids.sandbox.azure.arm import ArmEmulator, StaticTokenCredential
from workload_ids.sandbox.azure.graph import GraphEmulator
from workload_ids.sandbox.common.clock import ManualClock

SUB = "6f1c2a4e-0b7d-4c3e-9a51-2d8e7f0a1b2c"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
MISSING = "0b5e3a52-6c1f-4d7e-9a11-3f2e4d5c6b7a"


@pytest.fixture(scope="module")
def emulator() -> Iterator[GraphEmulator]:
    with GraphEmulator(page_size=2) as emu:
        yield emu


@pytest.fixture(scope="module")
def graph(emulator: GraphEmulator) -> Iterator[GraphClient]:
    with GraphClient(StaticTokenCredential(), **emulator.client_kwargs()) as client:
        yield client


def _client(emu: GraphEmulator) -> GraphClient:
    return GraphClient(StaticTokenCredential(), **emu.client_kwargs())


def _raw(emu: GraphEmulator, method: str, path: str, *, bearer: bool = True, **kwargs: Any) -> HttpResponse:
    """One request through a bare azure-core pipeline (no policies at all)."""
    headers = {"Authorization": "Bearer test"} if bearer else {}
    client: PipelineClient[HttpRequest, HttpResponse] = PipelineClient(
        emu.url, policies=[], transport=RequestsTransport(connection_verify=emu.ca_bundle_path))
    with client:
        return client.send_request(HttpRequest(method, emu.url + path, headers=headers, **kwargs))


def _tag() -> str:
    return f"wid:test:{uuid.uuid4().hex[:8]}"


def _in_a_day(clock: ManualClock | None = None) -> datetime:
    return (clock.as_datetime() if clock else datetime.now(UTC)) + timedelta(days=1)


def _app_with_principal(graph: GraphClient, tag: str) -> tuple[dict[str, Any], dict[str, Any]]:
    app = graph.create_application(f"svc-{tag}", [tag])
    return app, graph.create_service_principal(app["appId"], [tag])


# --- applications and service principals ------------------------------------------------


def test_create_application_and_service_principal(emulator: GraphEmulator, graph: GraphClient) -> None:
    tag = _tag()
    app = graph.create_application("svc-orders", [tag, "owner:team-a"], notes="managed by workload-ids")
    uuid.UUID(app["id"])
    uuid.UUID(app["appId"])
    assert app["id"] != app["appId"]
    assert app["displayName"] == "svc-orders" and app["tags"] == [tag, "owner:team-a"]
    assert app["notes"] == "managed by workload-ids"
    assert app["passwordCredentials"] == []
    datetime.fromisoformat(app["createdDateTime"].replace("Z", "+00:00"))

    assert graph.get_application(app["id"])["appId"] == app["appId"]
    by_app_id = _raw(emulator, "GET", f"/v1.0/applications(appId='{app['appId']}')")
    assert by_app_id.status_code == 200 and by_app_id.json()["id"] == app["id"]
    assert by_app_id.json()["@odata.context"].endswith("$metadata#applications/$entity")

    sp = graph.create_service_principal(app["appId"], [tag])
    assert sp["appId"] == app["appId"] and sp["id"] not in (app["id"], app["appId"])
    assert sp["accountEnabled"] is True and sp["servicePrincipalType"] == "Application"
    assert sp["appOwnerOrganizationId"] == emulator.tenant_id
    assert graph.get_service_principal_by_app_id(app["appId"])["id"] == sp["id"]
    assert [s["id"] for s in graph.find_service_principals(tag_filter(tag))] == [sp["id"]]
    assert emulator.calls["POST servicePrincipals"] >= 1


def test_update_application_and_service_principal(graph: GraphClient) -> None:
    tag, new_tag = _tag(), _tag()
    app, sp = _app_with_principal(graph, tag)
    graph.update_application(app["id"], {"tags": [new_tag], "notes": "quarantined"})
    got = graph.get_application(app["id"])
    assert got["tags"] == [new_tag] and got["notes"] == "quarantined"
    assert graph.find_applications(tag_filter(tag)) == []
    assert [a["id"] for a in graph.find_applications(tag_filter(new_tag))] == [app["id"]]
    graph.update_service_principal(sp["id"], {"accountEnabled": False})
    assert graph.get_service_principal(sp["id"])["accountEnabled"] is False
    with pytest.raises(HttpResponseError) as unknown:
        graph.update_application(app["id"], {"colour": "blue"})
    assert unknown.value.status_code == 400 and "colour" in str(unknown.value)


def test_tags_filter_pages_and_counts_requests(emulator: GraphEmulator, graph: GraphClient) -> None:
    tag = _tag()
    ids = {graph.create_application(f"paged-{i}", [tag])["id"] for i in range(5)}
    graph.create_application("unrelated", [_tag()])

    before = emulator.calls["GET applications"]
    assert {a["id"] for a in graph.find_applications(tag_filter(tag))} == ids
    assert emulator.calls["GET applications"] - before == 3  # page size 2: 2 + 2 + 1

    sizes, seen, next_link = [], set(), None
    while True:
        items, next_link = graph.list_applications_page(tag_filter(tag), next_link)
        sizes.append(len(items))
        seen |= {a["id"] for a in items}
        if next_link is None:
            break
    assert sizes == [2, 2, 1] and seen == ids
    items, next_link = graph.list_applications_page(tag_filter(tag), top=5)
    assert len(items) == 5 and next_link is None


def test_filters_by_display_name_and_quotes(graph: GraphClient) -> None:
    name = f"o'brien-{uuid.uuid4().hex[:6]}"
    app = graph.create_application(name, ["it's a tag"])
    assert [a["id"] for a in graph.find_applications(f"displayName eq {odata_string(name)}")] == [app["id"]]
    both = tag_filter("it's a tag") + f" and displayName eq {odata_string(name)}"
    tagged = graph.find_applications(both)
    assert [a["id"] for a in tagged] == [app["id"]]
    with pytest.raises(HttpResponseError) as bad:
        graph.find_applications("notes eq 'x'")
    assert bad.value.status_code == 400 and bad.value.error is not None
    assert bad.value.error.code == "Request_UnsupportedQuery"


def test_create_application_validates_input(graph: GraphClient) -> None:
    with pytest.raises(HttpResponseError) as long_tag:
        graph.create_application("svc", ["x" * 257])
    assert long_tag.value.status_code == 400 and "tags" in str(long_tag.value)
    assert graph.create_application("svc-max-tag", ["x" * 256])["tags"] == ["x" * 256]
    with pytest.raises(HttpResponseError) as no_name:
        graph.create_application("  ", [])
    assert no_name.value.status_code == 400 and "displayName" in str(no_name.value)


def test_second_service_principal_conflicts(graph: GraphClient) -> None:
    app, _sp = _app_with_principal(graph, _tag())
    with pytest.raises(ResourceExistsError) as conflict:
        graph.create_service_principal(app["appId"], [])
    assert conflict.value.status_code == 409 and conflict.value.error is not None
    assert conflict.value.error.code == "Request_MultipleObjectsWithSameKeyValue"
    with pytest.raises(HttpResponseError) as unknown_app:
        graph.create_service_principal(MISSING, [])
    assert unknown_app.value.status_code == 400
    assert "does not reference a valid application object" in str(unknown_app.value)


# --- client secrets ---------------------------------------------------------------------


def test_add_password_returns_the_secret_once(emulator: GraphEmulator, graph: GraphClient) -> None:
    tag = _tag()
    app, _sp = _app_with_principal(graph, tag)
    end = _in_a_day()
    added = graph.add_password(app["id"], "rotation-1", end)
    secret = added["secretText"]
    assert isinstance(secret, str) and len(secret) == 40
    assert added["hint"] == secret[:3] and added["displayName"] == "rotation-1"
    uuid.UUID(added["keyId"])
    answered_end = datetime.fromisoformat(added["endDateTime"].replace("Z", "+00:00"))
    assert abs(answered_end - end) < timedelta(seconds=1)

    listed = graph.get_application(app["id"])["passwordCredentials"]
    assert [(p["keyId"], p["hint"], p["secretText"]) for p in listed] == [(added["keyId"], secret[:3], None)]
    assert secret not in json.dumps(graph.find_applications(tag_filter(tag)))
    assert secret not in _raw(emulator, "GET", f"/v1.0/applications/{app['id']}").text()
    assert secret not in repr(emulator._applications)  # only a digest is kept
    assert graph.client_secret_works(None, app["appId"], secret)


def test_remove_password(graph: GraphClient) -> None:
    app, _sp = _app_with_principal(graph, _tag())
    first = graph.add_password(app["id"], "old", _in_a_day())
    second = graph.add_password(app["id"], "new", _in_a_day())
    graph.remove_password(app["id"], first["keyId"])
    assert [p["keyId"] for p in graph.get_application(app["id"])["passwordCredentials"]] == [second["keyId"]]
    assert not graph.client_secret_works(None, app["appId"], first["secretText"])
    assert graph.client_secret_works(None, app["appId"], second["secretText"])
    with pytest.raises(HttpResponseError) as again:
        graph.remove_password(app["id"], first["keyId"])
    assert again.value.status_code == 400 and again.value.error is not None
    assert again.value.error.code == "Request_BadRequest"
    assert f"No password credential found with keyId {first['keyId']}" in str(again.value)


def test_password_credential_limit() -> None:
    with GraphEmulator(max_password_credentials=2) as emu, _client(emu) as graph:
        app = graph.create_application("svc-limit", [])
        for name in ("a", "b"):
            graph.add_password(app["id"], name, _in_a_day())
        with pytest.raises(HttpResponseError) as full:
            graph.add_password(app["id"], "c", _in_a_day())
        assert full.value.status_code == 400 and full.value.error is not None
        assert full.value.error.code == "Directory_ResourceSizeExceeded"
        assert len(graph.get_application(app["id"])["passwordCredentials"]) == 2


# --- the token endpoint -----------------------------------------------------------------


def test_token_endpoint_accepts_only_a_live_secret() -> None:
    clock = ManualClock(1_700_000_000.0)
    with GraphEmulator(clock=clock) as emu, _client(emu) as graph:
        app, sp = _app_with_principal(graph, _tag())
        short = graph.add_password(app["id"], "short", clock.as_datetime() + timedelta(hours=1))
        assert graph.client_secret_works(emu.tenant_id, app["appId"], short["secretText"])
        assert not graph.client_secret_works(emu.tenant_id, app["appId"], short["secretText"][:-1] + "#")
        assert not graph.client_secret_works(emu.tenant_id, MISSING, short["secretText"])

        graph.update_service_principal(sp["id"], {"accountEnabled": False})
        assert not graph.client_secret_works(None, app["appId"], short["secretText"])
        graph.update_service_principal(sp["id"], {"accountEnabled": True})
        assert graph.client_secret_works(None, app["appId"], short["secretText"])

        clock.now += 2 * 3600
        assert not graph.client_secret_works(None, app["appId"], short["secretText"])
        issued = emu.tokens_issued
        assert issued == 2 and emu.calls["POST oauth2/v2.0/token"] == 6


def test_token_endpoint_error_shapes() -> None:
    clock = ManualClock(1_700_000_000.0)
    with GraphEmulator(clock=clock) as emu, _client(emu) as graph:
        app, sp = _app_with_principal(graph, _tag())
        secret = graph.add_password(app["id"], "k", clock.as_datetime() + timedelta(hours=1))["secretText"]

        def token(client_id: str, client_secret: str) -> HttpResponse:
            return _raw(emu, "POST", f"/{emu.tenant_id}/oauth2/v2.0/token", bearer=False,
                        data={"client_id": client_id, "client_secret": client_secret,
                              "grant_type": "client_credentials", "scope": "https://graph.microsoft.com/.default"})

        good = token(app["appId"], secret)
        assert good.status_code == 200 and good.json()["token_type"] == "Bearer"
        assert good.json()["expires_in"] == 3599 and good.json()["access_token"]
        wrong = token(app["appId"], "not-the-secret")
        assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
        assert wrong.json()["error_codes"] == [7000215]
        assert wrong.json()["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")
        assert token(MISSING, secret).json()["error_codes"] == [700016]
        graph.update_service_principal(sp["id"], {"accountEnabled": False})
        disabled = token(app["appId"], secret)
        assert disabled.status_code == 400 and disabled.json()["error_codes"] == [7000112]
        clock.now += 7200
        assert token(app["appId"], secret).json()["error_codes"] == [7000222]


def test_token_failure_other_than_the_client_raises_without_the_secret() -> None:
    with GraphEmulator() as emu, _client(emu) as graph:
        app, _sp = _app_with_principal(graph, _tag())
        secret = graph.add_password(app["id"], "k", _in_a_day())["secretText"]
        with pytest.raises(HttpResponseError) as wrong_tenant:
            graph.client_secret_works(MISSING, app["appId"], secret)
        assert wrong_tenant.value.status_code == 400 and "90002" in str(wrong_tenant.value)
        assert secret not in str(wrong_tenant.value) and wrong_tenant.value.response is None
        emu.throttle(1, label="token")
        with pytest.raises(HttpResponseError) as throttled:
            graph.client_secret_works(None, app["appId"], secret)
        assert throttled.value.status_code == 429


# --- deletion and restore ---------------------------------------------------------------


def test_delete_goes_to_deleted_items_and_restore(graph: GraphClient) -> None:
    tag = _tag()
    app, sp = _app_with_principal(graph, tag)
    secret = graph.add_password(app["id"], "k", _in_a_day())
    graph.delete_application(app["id"])
    with pytest.raises(ResourceNotFoundError):
        graph.get_application(app["id"])
    with pytest.raises(ResourceNotFoundError):
        graph.get_service_principal_by_app_id(app["appId"])
    assert graph.find_applications(tag_filter(tag)) == []

    deleted = graph.list_deleted_applications(tag_filter(tag))
    assert [d["id"] for d in deleted] == [app["id"]] and deleted[0]["deletedDateTime"]
    assert [d["id"] for d in graph.list_deleted_service_principals(tag_filter(tag))] == [sp["id"]]

    restored = graph.restore_deleted(app["id"])
    assert restored["id"] == app["id"] and restored["@odata.type"] == "#microsoft.graph.application"
    again = graph.get_application(app["id"])
    assert [p["keyId"] for p in again["passwordCredentials"]] == [secret["keyId"]]
    # As in Entra, the service principal stays deleted until restored on its own.
    with pytest.raises(ResourceNotFoundError):
        graph.get_service_principal_by_app_id(app["appId"])
    assert not graph.client_secret_works(None, app["appId"], secret["secretText"])
    graph.restore_deleted(sp["id"])
    assert graph.get_service_principal_by_app_id(app["appId"])["id"] == sp["id"]
    assert graph.client_secret_works(None, app["appId"], secret["secretText"])


def test_permanent_delete_and_soft_delete_expiry() -> None:
    clock = ManualClock(1_700_000_000.0)
    with GraphEmulator(clock=clock, soft_delete_days=30) as emu, _client(emu) as graph:
        purged, expiring = (graph.create_application(name, []) for name in ("purged", "expiring"))
        graph.delete_application(purged["id"])
        graph.purge_deleted(purged["id"])
        with pytest.raises(ResourceNotFoundError):
            graph.restore_deleted(purged["id"])
        graph.delete_application(expiring["id"])
        clock.now += 29 * 86400
        assert [d["id"] for d in graph.list_deleted_applications()] == [expiring["id"]]
        clock.now += 2 * 86400
        assert graph.list_deleted_applications() == []
        with pytest.raises(ResourceNotFoundError):
            graph.restore_deleted(expiring["id"])


def test_service_principal_in_the_arm_directory() -> None:
    scope = f"/subscriptions/{SUB}/resourceGroups/rg-keys"
    role = f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{READER}"
    with ArmEmulator() as arm, GraphEmulator(directory=arm) as emu, _client(emu) as graph:
        authz = AuthorizationManagementClient(StaticTokenCredential(), SUB, **arm.client_kwargs())
        app, sp = _app_with_principal(graph, _tag())
        assert arm.principal_exists(sp["id"])
        created = authz.role_assignments.create(scope, str(uuid.uuid4()),
                                                {"role_definition_id": role, "principal_id": sp["id"]})
        assert created.principal_id == sp["id"] and created.principal_type == "ServicePrincipal"

        graph.delete_application(app["id"])
        assert not arm.principal_exists(sp["id"])
        with pytest.raises(HttpResponseError) as gone:
            authz.role_assignments.create(f"/subscriptions/{SUB}", str(uuid.uuid4()),
                                          {"role_definition_id": role, "principal_id": sp["id"]})
        assert gone.value.error is not None and gone.value.error.code == "PrincipalNotFound"

        graph.restore_deleted(app["id"])
        graph.restore_deleted(sp["id"])
        assert arm.principal_exists(sp["id"])


# --- errors, authentication, throttling, replication -----------------------------------


def test_not_found_and_bad_identifier_shapes(emulator: GraphEmulator, graph: GraphClient) -> None:
    with pytest.raises(ResourceNotFoundError) as missing:
        graph.get_application(MISSING)
    assert missing.value.status_code == 404 and missing.value.error is not None
    assert missing.value.error.code == "Request_ResourceNotFound"
    assert f"Resource '{MISSING}' does not exist" in missing.value.error.message

    body = _raw(emulator, "GET", f"/v1.0/servicePrincipals/{MISSING}").json()
    assert body["error"]["code"] == "Request_ResourceNotFound"
    assert set(body["error"]["innerError"]) == {"date", "request-id", "client-request-id"}
    bad_id = _raw(emulator, "GET", "/v1.0/applications/not-a-guid")
    assert bad_id.status_code == 400 and bad_id.json()["error"]["code"] == "Request_BadRequest"
    unknown = _raw(emulator, "GET", "/v1.0/groups")
    assert unknown.status_code == 400 and "segment 'groups'" in unknown.json()["error"]["message"]


def test_bearer_token_required(emulator: GraphEmulator) -> None:
    before = emulator.calls["POST applications"]
    anonymous = _raw(emulator, "POST", "/v1.0/applications", bearer=False, json={"displayName": "x"})
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert emulator.calls["POST applications"] == before + 1
    with GraphClient(StaticTokenCredential(""), **emulator.client_kwargs()) as empty_token, \
            pytest.raises(ClientAuthenticationError) as refused:
        empty_token.find_applications(tag_filter("x"))
    assert refused.value.status_code == 401


def test_throttling_is_raised_with_status_429(emulator: GraphEmulator, graph: GraphClient) -> None:
    app = graph.create_application("svc-throttled", [])
    emulator.throttle(2, retry_after=7, label="GET applications/{id}")
    for _ in range(2):
        with pytest.raises(HttpResponseError) as throttled:
            graph.get_application(app["id"])
        assert type(throttled.value) is HttpResponseError and throttled.value.status_code == 429
        assert throttled.value.response is not None
        assert throttled.value.response.headers["Retry-After"] == "7"
    assert graph.get_application(app["id"])["id"] == app["id"]


def test_next_link_must_point_back_to_graph(emulator: GraphEmulator, graph: GraphClient) -> None:
    before = sum(emulator.calls.values())
    with pytest.raises(HttpResponseError):
        graph.list_applications_page(None, "https://attacker.example/v1.0/applications?$skiptoken=x")
    assert sum(emulator.calls.values()) == before


def test_replication_delay_hides_new_objects_and_secrets() -> None:
    clock = ManualClock(1_700_000_000.0)
    with GraphEmulator(clock=clock, replication_delay=10) as emu, _client(emu) as graph:
        app = graph.create_application("svc-new", [])
        with pytest.raises(ResourceNotFoundError):
            graph.get_application(app["id"])
        with pytest.raises(HttpResponseError) as early_sp:
            graph.create_service_principal(app["appId"], [])
        assert early_sp.value.status_code == 400
        clock.now += 10
        graph.create_service_principal(app["appId"], [])
        clock.now += 10
        secret = graph.add_password(app["id"], "k", clock.as_datetime() + timedelta(days=1))["secretText"]
        assert not graph.client_secret_works(None, app["appId"], secret)
        clock.now += 10
        assert graph.client_secret_works(None, app["appId"], secret)


# --- certificates, federated credentials of applications, sign-in activity -----------------


def _certificate(days: int, start: datetime) -> str:
    """A self-signed certificate (DER, base64), as a .cer file's bytes are sent to Graph."""
    import base64

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "signer")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(start).not_valid_after(start + timedelta(days=days))
            .sign(key, hashes.SHA256()))
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii")


def _json_of(answer: HttpResponse) -> Any:
    return json.loads(answer.text() or "null")


def test_certificates_are_set_by_patching_the_whole_collection(emulator: GraphEmulator,
                                                               graph: GraphClient) -> None:
    app = graph.create_application("svc-certs", [_tag()])
    start = datetime(2026, 3, 1, tzinfo=UTC)
    body = {"keyCredentials": [{"type": "AsymmetricX509Cert", "usage": "Verify",
                                "key": _certificate(30, start)}]}
    assert _raw(emulator, "PATCH", f"/v1.0/applications/{app['id']}", json=body).status_code == 204
    [held] = graph.get_application(app["id"])["keyCredentials"]
    # Dates from the certificate, the thumbprint as customKeyIdentifier, never the key back.
    assert (held["startDateTime"], held["endDateTime"], held["displayName"], held["key"]) == (
        "2026-03-01T00:00:00Z", "2026-03-31T00:00:00Z", "CN=signer", None)
    uuid.UUID(held["keyId"])
    # Resending an entry by keyId keeps it; a second certificate joins it.
    second = {"type": "AsymmetricX509Cert", "usage": "Verify", "key": _certificate(10, start),
              "displayName": "rollover", "endDateTime": "2026-03-05T00:00:00Z"}
    _raw(emulator, "PATCH", f"/v1.0/applications/{app['id']}",
         json={"keyCredentials": [{"keyId": held["keyId"]}, second]})
    names = [(c["displayName"], c["endDateTime"])
             for c in graph.get_application(app["id"])["keyCredentials"]]
    assert names == [("CN=signer", "2026-03-31T00:00:00Z"), ("rollover", "2026-03-05T00:00:00Z")]
    for bad in ({"type": "AsymmetricX509Cert", "usage": "Verify", "key": "bm90IGEgY2VydA=="},
                {"keyId": str(uuid.uuid4())}):
        answer = _raw(emulator, "PATCH", f"/v1.0/applications/{app['id']}", json={"keyCredentials": [bad]})
        assert answer.status_code == 400 and _json_of(answer)["error"]["code"] == "Request_BadRequest"
    # Client secrets are never PATCHed: addPassword makes them.
    answer = _raw(emulator, "PATCH", f"/v1.0/applications/{app['id']}", json={"passwordCredentials": []})
    assert answer.status_code == 400


def test_application_federated_credentials(emulator: GraphEmulator, graph: GraphClient) -> None:
    app = graph.create_application("svc-federated", [_tag()])
    path = f"/v1.0/applications/{app['id']}/federatedIdentityCredentials"
    made = []
    for branch in ("main", "release", "hotfix"):
        answer = _raw(emulator, "POST", path, json={
            "name": f"gh-{branch}", "issuer": "https://token.actions.githubusercontent.com",
            "subject": f"repo:acme/api:ref:refs/heads/{branch}", "audiences": ["api://AzureADTokenExchange"]})
        assert answer.status_code == 201
        made.append(_json_of(answer))
    # Paged like every collection (this emulator: two a page).
    first = _json_of(_raw(emulator, "GET", path))
    assert len(first["value"]) == 2 and "@odata.nextLink" in first
    by_name = _json_of(_raw(emulator, "GET", f"{path}/gh-main"))
    assert by_name["id"] == made[0]["id"] and by_name["subject"] == "repo:acme/api:ref:refs/heads/main"
    duplicate = _raw(emulator, "POST", path, json={
        "name": "gh-main", "issuer": "https://other.example", "subject": "x", "audiences": ["a"]})
    assert duplicate.status_code == 409
    same_pair = _raw(emulator, "POST", path, json={
        "name": "again", "issuer": "https://token.actions.githubusercontent.com",
        "subject": "repo:acme/api:ref:refs/heads/main", "audiences": ["api://AzureADTokenExchange"]})
    assert same_pair.status_code == 400
    assert _raw(emulator, "DELETE", f"{path}/{made[2]['id']}").status_code == 204
    assert _raw(emulator, "GET", f"{path}/{made[2]['id']}").status_code == 404
    # One list of the applications carries them with $expand; other properties are refused.
    expanded, _ = graph.list_applications_page(f"id eq '{app['id']}'", expand="federatedIdentityCredentials")
    assert [f["name"] for f in expanded[0]["federatedIdentityCredentials"]] == ["gh-main", "gh-release"]
    assert "federatedIdentityCredentials" not in graph.get_application(app["id"])
    refused = _raw(emulator, "GET", "/v1.0/applications?$expand=owners")
    assert refused.status_code == 400


def test_sign_in_activity_reports_follow_issued_tokens() -> None:
    clock = ManualClock()
    with GraphEmulator(clock=clock) as emu, _client(emu) as graph:
        app, principal = _app_with_principal(graph, _tag())
        secret = graph.add_password(app["id"], "s", _in_a_day(clock))
        idle, _ = _app_with_principal(graph, _tag())
        assert graph.sign_in_activity_page("servicePrincipalSignInActivities") == ([], None)
        clock.advance(60)
        assert graph.client_secret_works(None, app["appId"], secret["secretText"])
        [activity], _ = graph.sign_in_activity_page("servicePrincipalSignInActivities")
        at = clock.as_datetime().isoformat(timespec="seconds").replace("+00:00", "Z")
        assert (activity["appId"], activity["lastSignInActivity"]["lastSignInDateTime"],
                activity["applicationAuthenticationClientSignInActivity"]["lastSignInDateTime"],
                activity["delegatedClientSignInActivity"]["lastSignInDateTime"]) == (
            app["appId"], at, at, None)
        [key], _ = graph.sign_in_activity_page("appCredentialSignInActivities")
        assert (key["keyId"], key["keyType"], key["credentialOrigin"], key["servicePrincipalObjectId"],
                key["signInActivity"]["lastSignInDateTime"]) == (
            secret["keyId"], "clientSecret", "application", principal["id"], at)
        listed = graph.sign_in_activity_page("servicePrincipalSignInActivities")
        assert idle["appId"] not in json.dumps(listed)
        # Graph answers the reports only to tenants with Entra ID P1 or P2.
        emu.premium = False
        with pytest.raises(ClientAuthenticationError) as refused:
            graph.sign_in_activity_page("servicePrincipalSignInActivities")
        assert refused.value.status_code == 403


def test_service_principal_secrets_of_their_own(graph: GraphClient, emulator: GraphEmulator) -> None:
    _, principal = _app_with_principal(graph, _tag())
    answer = _raw(emulator, "POST", f"/v1.0/servicePrincipals/{principal['id']}/addPassword",
                  json={"passwordCredential": {"displayName": "sp-secret"}})
    assert answer.status_code == 200
    made = _json_of(answer)
    held = graph.get_service_principal(principal["id"])["passwordCredentials"]
    assert [(p["keyId"], p["secretText"]) for p in held] == [(made["keyId"], None)]
