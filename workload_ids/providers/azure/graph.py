"""Our Microsoft Graph client: the few calls key mode makes, over azure-core.

Key mode turns a workload into an Entra application registration, its service principal
and client secrets. We call Graph's REST API through ``azure.core.PipelineClient`` rather
than msgraph-sdk: that SDK pulls in kiota and takes seconds to import for the dozen calls
we need, while azure-core is already here for the ARM clients and shares their credential.

The pipeline is deliberately small:

* no retry policy: retries and throttling are handled by our call seam (``calls.py``),
  which must see every attempt to count it and to bound retries in time;
* no redirect policy: a bearer token must not follow a redirect to another host;
* no logging policies: ``addPassword`` answers and token requests carry secrets.

Methods answer Graph's JSON as plain dicts and raise ``azure.core`` errors:
``ResourceNotFoundError`` (404), ``ResourceExistsError`` (409),
``ClientAuthenticationError`` (401, 403) or ``HttpResponseError`` (anything else,
429 included), with the HTTP status in ``.status_code`` and Graph's error code in
``.error.code``. No secret is ever put in an exception message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlencode

from azure.core import PipelineClient
from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.core.pipeline.policies import BearerTokenCredentialPolicy, HeadersPolicy
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest, HttpResponse

GRAPH_ENDPOINT = "https://graph.microsoft.com"
AUTHORITY = "https://login.microsoftonline.com"
CONNECTION_TIMEOUT = 10.0
READ_TIMEOUT = 60.0

Json = dict[str, Any]

_ERRORS: Mapping[int, type[HttpResponseError]] = {
    401: ClientAuthenticationError, 403: ClientAuthenticationError,
    404: ResourceNotFoundError, 409: ResourceExistsError,
}
# Token endpoint errors that mean "this secret does not get a token" (wrong, expired or
# removed secret; unknown, disabled or principal-less application), not a failed request.
_SECRET_REFUSED = frozenset({"invalid_client", "unauthorized_client"})


def odata_string(value: str) -> str:
    """``value`` as an OData string literal (quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def tag_filter(tag: str) -> str:
    """A ``$filter`` for objects carrying ``tag``."""
    return f"tags/any(t:t eq {odata_string(tag)})"


def _graph_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("a timezone-aware datetime is required")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _raise_for_status(response: HttpResponse) -> None:
    if not 200 <= response.status_code < 300:
        raise _ERRORS.get(response.status_code, HttpResponseError)(response=response)


def _json(response: HttpResponse) -> Json:
    """The body as a JSON object, without ``@odata.context``. The body is never quoted in
    the error: an ``addPassword`` answer holds a secret."""
    try:
        parsed = json.loads(response.text() or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        parsed = None
    if not isinstance(parsed, dict):
        error = HttpResponseError(message=f"Graph answered {response.status_code} with a body that is not "
                                          "a JSON object")
        error.status_code = response.status_code
        raise error
    parsed.pop("@odata.context", None)
    return parsed


class GraphClient:
    """Applications, service principals, client secrets and deleted items in Microsoft Graph
    v1.0. Each method makes one HTTP request, except the ``find_*`` and ``list_deleted_*``
    calls, which follow ``@odata.nextLink`` (one request per page)."""

    def __init__(self, credential: TokenCredential, *, endpoint: str = GRAPH_ENDPOINT,
                 authority: str = AUTHORITY, tenant_id: str | None = None,
                 connection_verify: str | bool = True) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.authority = authority.rstrip("/")
        self.tenant_id = tenant_id
        self.scope = self.endpoint + "/.default"
        self._connection_verify = connection_verify
        self._client: PipelineClient[HttpRequest, HttpResponse] = PipelineClient(
            self.endpoint,
            policies=[HeadersPolicy({"Accept": "application/json"}),
                      BearerTokenCredentialPolicy(credential, self.scope)],
            transport=self._transport())
        self._token_client: PipelineClient[HttpRequest, HttpResponse] | None = None

    def _transport(self) -> RequestsTransport:
        return RequestsTransport(connection_verify=self._connection_verify,
                                 connection_timeout=CONNECTION_TIMEOUT, read_timeout=READ_TIMEOUT)

    def close(self) -> None:
        """Close the connections."""
        self._client.close()
        if self._token_client is not None:
            self._token_client.close()

    def __enter__(self) -> GraphClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- requests ----------------------------------------------------------------------

    def _url(self, path: str, params: Mapping[str, str] | None = None, version: str = "v1.0") -> str:
        url = f"{self.endpoint}/{version}/{path}"
        if params:
            url += "?" + urlencode(params, quote_via=quote, safe="$")
        return url

    def _send(self, method: str, url: str, body: Json | None = None) -> HttpResponse:
        request = HttpRequest(method, url, json=body) if body is not None else HttpRequest(method, url)
        response = self._client.send_request(request)
        _raise_for_status(response)
        return response

    def _page(self, path: str, filter: str | None, next_link: str | None,
              top: int | None = None, *, expand: str | None = None,
              version: str = "v1.0") -> tuple[list[Json], str | None]:
        if next_link is not None:
            # The bearer token goes wherever this points: only ever back to Graph.
            if not next_link.startswith(self.endpoint + "/"):
                raise HttpResponseError(message="Graph's nextLink points outside the Graph endpoint")
            url = next_link
        else:
            params = {"$filter": filter} if filter else {}
            if top is not None:
                params["$top"] = str(top)
            if expand is not None:
                params["$expand"] = expand
            url = self._url(path, params, version)
        page = _json(self._send("GET", url))
        return list(page.get("value") or []), page.get("@odata.nextLink")

    def _all(self, path: str, filter: str | None) -> list[Json]:
        items, next_link = self._page(path, filter, None)
        while next_link:
            more, next_link = self._page(path, filter, next_link)
            items.extend(more)
        return items

    @staticmethod
    def _by_app_id(collection: str, app_id: str) -> str:
        return f"{collection}(appId={quote(odata_string(app_id), safe='')})"

    # --- applications ------------------------------------------------------------------

    def create_application(self, display_name: str, tags: list[str], notes: str | None = None) -> Json:
        """Register an application; the answer holds its object ``id`` and client ``appId``."""
        body: Json = {"displayName": display_name, "tags": list(tags)}
        if notes is not None:
            body["notes"] = notes
        return _json(self._send("POST", self._url("applications"), body))

    def get_application(self, object_id: str) -> Json:
        """One application by object id."""
        return _json(self._send("GET", self._url(f"applications/{quote(object_id, safe='')}")))

    def find_applications(self, filter: str) -> list[Json]:
        """Every application matching ``filter`` (a list call: one request per page)."""
        return self._all("applications", filter)

    def list_applications_page(self, filter: str | None, next_link: str | None = None, *,
                               top: int | None = None, expand: str | None = None
                               ) -> tuple[list[Json], str | None]:
        """One page of applications matching ``filter`` and the link to the next page (None
        at the end): one request per call, for callers that count pages. ``expand`` names a
        navigation property to include (``federatedIdentityCredentials``)."""
        return self._page("applications", filter, next_link, top, expand=expand)

    def update_application(self, object_id: str, fields: Mapping[str, Any]) -> None:
        """Set ``fields`` (``tags``, ``notes``, ``displayName``...) on an application."""
        self._send("PATCH", self._url(f"applications/{quote(object_id, safe='')}"), dict(fields))

    def delete_application(self, object_id: str) -> None:
        """Delete an application (it goes to deleted items; its service principal too)."""
        self._send("DELETE", self._url(f"applications/{quote(object_id, safe='')}"))

    def add_password(self, object_id: str, display_name: str, end: datetime) -> Json:
        """Add a client secret valid until ``end``. The answer is the only place its
        ``secretText`` ever appears; ``keyId`` names it afterwards."""
        body = {"passwordCredential": {"displayName": display_name, "endDateTime": _graph_time(end)}}
        return _json(self._send("POST", self._url(f"applications/{quote(object_id, safe='')}/addPassword"),
                                body))

    def remove_password(self, object_id: str, key_id: str) -> None:
        """Remove the client secret ``key_id``. Graph answers 400 ("No password credential
        found with keyId") for one the application does not hold."""
        self._send("POST", self._url(f"applications/{quote(object_id, safe='')}/removePassword"),
                   {"keyId": key_id})

    # --- service principals ------------------------------------------------------------

    def create_service_principal(self, app_id: str, tags: list[str]) -> Json:
        """The application's service principal (409 if it already has one)."""
        body = {"appId": app_id, "tags": list(tags)}
        return _json(self._send("POST", self._url("servicePrincipals"), body))

    def get_service_principal(self, object_id: str) -> Json:
        """One service principal by object id."""
        return _json(self._send("GET", self._url(f"servicePrincipals/{quote(object_id, safe='')}")))

    def get_service_principal_by_app_id(self, app_id: str) -> Json:
        """The service principal of application ``app_id`` (its client id)."""
        return _json(self._send("GET", self._url(self._by_app_id("servicePrincipals", app_id))))

    def find_service_principals(self, filter: str) -> list[Json]:
        """Every service principal matching ``filter`` (a list call: one request per page)."""
        return self._all("servicePrincipals", filter)

    def list_service_principals_page(self, filter: str | None, next_link: str | None = None, *,
                                     top: int | None = None) -> tuple[list[Json], str | None]:
        """One page of service principals matching ``filter`` and the next page's link."""
        return self._page("servicePrincipals", filter, next_link, top)

    # --- reports (beta: Graph has no v1.0 of these) ----------------------------------

    def sign_in_activity_page(self, report: str, next_link: str | None = None
                              ) -> tuple[list[Json], str | None]:
        """One page of a sign-in activity report (``servicePrincipalSignInActivities`` or
        ``appCredentialSignInActivities``). Graph serves them to tenants with Entra ID P1
        and callers holding AuditLog.Read.All; others get 403."""
        return self._page(f"reports/{report}", None, next_link, version="beta")

    def update_service_principal(self, object_id: str, fields: Mapping[str, Any]) -> None:
        """Set ``fields`` (``accountEnabled``, ``tags``...) on a service principal."""
        self._send("PATCH", self._url(f"servicePrincipals/{quote(object_id, safe='')}"), dict(fields))

    def delete_service_principal(self, object_id: str) -> None:
        """Delete a service principal (it goes to deleted items)."""
        self._send("DELETE", self._url(f"servicePrincipals/{quote(object_id, safe='')}"))

    # --- deleted items -----------------------------------------------------------------

    def list_deleted_applications(self, filter: str | None = None) -> list[Json]:
        """Deleted applications still restorable (a list call: one request per page)."""
        return self._all("directory/deletedItems/microsoft.graph.application", filter)

    def list_deleted_service_principals(self, filter: str | None = None) -> list[Json]:
        """Deleted service principals still restorable (a list call: one request per page)."""
        return self._all("directory/deletedItems/microsoft.graph.servicePrincipal", filter)

    def restore_deleted(self, object_id: str) -> Json:
        """Restore a deleted application or service principal. Restoring an application does
        not restore its service principal: restore that too, by its own id."""
        path = f"directory/deletedItems/{quote(object_id, safe='')}/restore"
        return _json(self._send("POST", self._url(path)))

    def purge_deleted(self, object_id: str) -> None:
        """Delete a deleted item for good."""
        self._send("DELETE", self._url(f"directory/deletedItems/{quote(object_id, safe='')}"))

    # --- secret verification -----------------------------------------------------------

    def client_secret_works(self, tenant_id: str | None, app_id: str, secret: str) -> bool:
        """Whether ``secret`` gets a token for application ``app_id`` (client credentials
        grant at the authority; ``tenant_id`` None: the client's). False when the identity
        platform refuses the client (wrong, expired or removed secret, unknown or disabled
        application); any other failure raises."""
        tenant = tenant_id or self.tenant_id
        if not tenant:
            raise ValueError("a tenant id is needed to ask for a token")
        url = f"{self.authority}/{quote(tenant, safe='')}/oauth2/v2.0/token"
        form = {"client_id": app_id, "client_secret": secret, "grant_type": "client_credentials",
                "scope": self.scope}
        response = self._token_pipeline().send_request(HttpRequest("POST", url, data=form))
        if response.status_code == 200:
            return True
        try:
            answer = json.loads(response.text() or "{}")
        except (UnicodeDecodeError, json.JSONDecodeError):
            answer = {}
        error = answer.get("error") if isinstance(answer, dict) else None
        if response.status_code in (400, 401) and error in _SECRET_REFUSED:
            return False
        codes = answer.get("error_codes") if isinstance(answer, dict) else None
        # Built without the response: its request holds the secret in the form body.
        failure = _ERRORS.get(response.status_code, HttpResponseError)(
            message=f"token endpoint answered {response.status_code} {error or response.reason} "
                    f"(AADSTS codes {codes or 'none'})")
        failure.status_code = response.status_code
        raise failure

    def _token_pipeline(self) -> PipelineClient[HttpRequest, HttpResponse]:
        if self._token_client is None:
            self._token_client = PipelineClient(self.authority,
                                                policies=[HeadersPolicy({"Accept": "application/json"})],
                                                transport=self._transport())
        return self._token_client
