"""The audit signing key, read from the cloud's secret store that ``audit.sink.signingKey``
names: an AWS Secrets Manager secret name or ARN, a GCP ``projects/P/secrets/S``, or an
Azure Key Vault ``https://VAULT.vault.azure.net/secrets/NAME``. The secret holds 64
hexadecimal characters (``workload-ids bootstrap`` makes them); only the AUDIT key derived
from it is ever used here, and it never reaches output."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..endpoints import secret_reference_kind
from ..errors import CloudError, UserError

if TYPE_CHECKING:
    from ..calls import CallSeam
    from ..signing import SigningKey

AWS_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:([a-z0-9-]+):\d{12}:secret:.+$")



def key_loader(config: Any, ref: str) -> Callable[[CallSeam], SigningKey]:
    """A function that reads the key through a seam (once per config: the sink caches it)."""
    def load(seam: CallSeam) -> SigningKey:
        from ..signing import SigningKey, SigningKeyError
        kind = secret_reference_kind(ref)
        try:
            text = {"aws": _aws, "gcp": _gcp, "azure": _azure}[kind](config, ref, seam)
        except UserError:
            raise
        except CloudError as exc:  # the seam translates every cloud's failures
            raise _unreadable(ref, f"{exc.code}: {exc.message}") from None
        except Exception as exc:  # anything else (no credentials at all): which secret, not the value
            raise _unreadable(ref, type(exc).__name__) from None
        try:
            return SigningKey.from_stored(text, ref)
        except SigningKeyError as exc:
            raise UserError(f"{exc}; nothing was changed") from None
    return load


def _unreadable(ref: str, reason: str) -> UserError:
    return UserError(f"cannot read the audit signing key {ref} ({reason}); nothing was "
                     "changed. Create it with `workload-ids bootstrap --apply`, or let the "
                     "tool's identity read it, then rerun")


def _aws(config: Any, ref: str, seam: CallSeam) -> str:
    from ..calls import SeamClient
    from .s3 import aws_session, boto_config
    match = AWS_ARN.match(ref)
    session = aws_session(config)
    raw = session.client("secretsmanager", endpoint_url=config.aws.endpointUrl,
                         region_name=match.group(1) if match else session.region_name,
                         config=boto_config())
    _register_aws(seam)
    client = SeamClient(seam, "aws", "secretsmanager", raw)
    return str(client.get_secret_value(SecretId=ref)["SecretString"])


def _register_aws(seam: CallSeam) -> None:
    from ..providers.aws.clients import classify, make_fault
    # As AwsClients registers it: every registration of "aws" says the same.
    seam.register("aws", classify, make_fault, translate=True)


def _gcp(config: Any, ref: str, seam: CallSeam) -> str:
    from ..providers.gcp.clients import GcpClients
    answer = GcpClients(config, seam).secrets.access_secret_version(name=f"{ref}/versions/latest")
    return bytes(answer.payload.data).decode("utf-8")


def _azure(config: Any, ref: str, seam: CallSeam) -> str:
    from azure.keyvault.secrets import SecretClient

    from .azure_blob import credential_and_connection, register
    parts = urllib.parse.urlsplit(ref)
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) not in (2, 3) or segments[0] != "secrets":
        raise UserError(f"audit.sink.signingKey {ref} is not a Key Vault secret URL; write "
                        "https://VAULT.vault.azure.net/secrets/NAME")
    vault = f"{parts.scheme}://{parts.netloc}"
    register(seam)
    credential, connection = credential_and_connection(config, vault)
    client = SecretClient(vault, credential, verify_challenge_resource=False, **connection)
    secret = seam.call("azblob", "keyvault.get_secret", client.get_secret, segments[1],
                       *(segments[2:] or []))
    return str(secret.value)
