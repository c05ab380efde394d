"""A few AWS managed policies in the local AWS, which moto 5.2 leaves out by default.

moto loads all of AWS's managed policies (over a thousand, seconds per account) only when
told to, so attaching ``arn:aws:iam::aws:policy/AdministratorAccess`` fails there while it
works on AWS. Hand-made identities in the sandbox and discover's tests hold these, so each
moto account gets them, from moto's own bundled copy of AWS's documents; moto's setting to
load them all still wins.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

# The managed policies people attach by hand most, and the ones discover judges by name.
POLICIES = ("AdministratorAccess", "IAMFullAccess", "PowerUserAccess", "ReadOnlyAccess",
            "AmazonS3FullAccess", "AmazonS3ReadOnlyAccess")
_INSTALLED = False


@cache
def _documents() -> dict[str, Any]:
    from moto.iam.aws_managed_policies import aws_managed_policies_data
    everything = json.loads(aws_managed_policies_data)
    return {name: everything[name] for name in POLICIES if name in everything}


def install() -> None:
    """Idempotent; call before moto serves a request."""
    global _INSTALLED
    if _INSTALLED:
        return
    from moto.iam import models
    from moto.settings import load_iam_aws_managed_policies
    everything = models.IAMBackend._init_aws_policies

    def a_few(self: Any) -> list[Any]:
        if load_iam_aws_managed_policies():
            return list(everything(self))
        return [models.AWSManagedPolicy.from_data(name, self.account_id, self.region_name, data)
                for name, data in _documents().items()]

    models.IAMBackend._init_aws_policies = a_few  # type: ignore[method-assign]
    _INSTALLED = True
