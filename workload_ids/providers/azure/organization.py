"""The subscriptions under an Azure management group (``targets.azure`` entry
``managementGroup:``).

ARM's ``Microsoft.Management/managementGroups/{id}/descendants`` lists every management
group and subscription below the group, at any depth, in pages. It is one paged GET, so
it goes over an azure-core pipeline with the credential every ARM client of the run uses
(as Graph does, see :mod:`.graph`) rather than through another SDK package
(azure-mgmt-managementgroups): no retry policy (the seam retries and counts), no redirect
policy (the bearer token never follows a redirect), and a ``nextLink`` is followed only
back to the ARM endpoint.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from ...errors import UserError
from ..interface import Member, OrganizationBackend
from .clients import ARM_ENDPOINT, ARM_SCOPE, AzureClients

API_VERSION = "2020-05-01"
_SUBSCRIPTION_TYPES = frozenset({"/subscriptions", "microsoft.management/managementgroups/subscriptions"})


class AzureOrganization(OrganizationBackend):
    """Every subscription under a management group."""

    def __init__(self, clients: AzureClients) -> None:
        self.clients = clients
        self._pipeline: Any = None

    def members(self, kind: str, name: str, *, role: str | None = None) -> list[Member]:
        """The subscriptions below management group ``name`` (its subgroups' too)."""
        if kind != "managementGroup":
            raise UserError(f"Azure has no {kind} targets; write `managementGroup: ID`")
        endpoint = (self.clients.config.azure.armEndpoint or ARM_ENDPOINT).rstrip("/")
        url: str | None = (f"{endpoint}/providers/Microsoft.Management/managementGroups/"
                           f"{quote(name, safe='')}/descendants?api-version={API_VERSION}")
        found: dict[str, Member] = {}
        while url:
            page = self.clients.call("managementgroups.get_descendants", self._get, url)
            for item in page.get("value") or []:
                if str(item.get("type", "")).lower() in _SUBSCRIPTION_TYPES:
                    sub = str(item.get("name", "")).lower()
                    found[sub] = Member(sub, True)
            url = page.get("nextLink") or None
            if url is not None and not url.startswith(endpoint + "/"):
                raise UserError(f"ARM's nextLink for management group {name} points outside "
                                f"{endpoint}; not followed")
        return sorted(found.values(), key=lambda m: m.target)

    def _get(self, url: str) -> dict[str, Any]:
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ResourceNotFoundError,
        )
        from azure.core.rest import HttpRequest
        response = self._client().send_request(HttpRequest("GET", url))
        if not 200 <= response.status_code < 300:
            error = {401: ClientAuthenticationError, 403: ClientAuthenticationError,
                     404: ResourceNotFoundError}.get(response.status_code, HttpResponseError)
            raise error(response=response)
        try:
            parsed = json.loads(response.text() or "{}")
        except (UnicodeDecodeError, json.JSONDecodeError):
            parsed = None
        if not isinstance(parsed, dict):
            raise HttpResponseError(message=f"ARM answered {response.status_code} with a body "
                                            "that is not a JSON object")
        return parsed

    def _client(self) -> Any:
        if self._pipeline is None:
            from azure.core import PipelineClient
            from azure.core.pipeline.policies import BearerTokenCredentialPolicy, HeadersPolicy
            from azure.core.pipeline.transport import RequestsTransport
            endpoint = self.clients.config.azure.armEndpoint or ARM_ENDPOINT
            verify = self.clients.connection(endpoint).get("connection_verify", True)
            self._pipeline = PipelineClient(
                endpoint, policies=[HeadersPolicy({"Accept": "application/json"}),
                                    BearerTokenCredentialPolicy(self.clients.credential, ARM_SCOPE)],
                transport=RequestsTransport(connection_verify=verify, connection_timeout=10,
                                            read_timeout=60))
        return self._pipeline
