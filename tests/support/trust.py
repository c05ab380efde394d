"""The trust roots every test configuration lists."""

from __future__ import annotations

import json
from typing import Any

from workload_ids.sandbox.aws import EXAMPLE_ISSUERS

# The trust roots the tests' manifests federate from (their GitHub owner, the example
# issuers, the examples' GCP project), as a platform team would list them.
TEST_TRUST_DATA: dict[str, Any] = {
    "allowedGithubOwners": ["acme"],
    "allowedIssuers": [*EXAMPLE_ISSUERS[1:], "https://container.googleapis.com/v1/projects/acme-prod/"
                                             "locations/europe-west1/clusters/prod-eu"],
    "gcpProjectNumbers": {"acme-prod": 123456789012},
    "allowedDeployers": ["group:payments-deployers@acme.example"],  # examples/gcp/checkout-api.yaml's
}
TEST_TRUST = "trust: " + json.dumps(TEST_TRUST_DATA) + "\n"  # JSON is YAML
