"""AWS Secrets Manager as the store for issued access keys.

Version ids are ``wid-KEYID-HASH`` (the API's ClientRequestToken), so ``DescribeSecret``
alone says which keys we issued and which one is AWSCURRENT. A retried store of the same
key is idempotent (same token, same value).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from ..calls import NOT_FOUND, CallSeam, to_cloud_error
from ..config import Config
from ..providers.aws.provider import AwsProvider, classify
from .interface import IssuedKey, SecretValue, StoredSecret

_PREFIX = "wid-"


def version_id(key_id: str, issued: datetime) -> str:
    """Secrets Manager version id (32-64 chars) naming the key and when we issued it."""
    return f"{_PREFIX}{key_id}-{issued.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def parse_version(version: str) -> tuple[str, datetime | None] | None:
    """``wid-KEYID-20261125T190000Z`` -> (key id, issue time)."""
    if not version.startswith(_PREFIX):
        return None
    key, _, stamp = version[len(_PREFIX):].rpartition("-")
    try:
        return key, datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


class SecretsManagerStore:
    """See the module docstring."""

    def __init__(self, config: Config, seam: CallSeam, target: str,
                 provider: AwsProvider | None = None) -> None:
        self.seam = seam
        self.target = target
        self.provider = provider or AwsProvider(config, seam)
        self.client = self.provider.client(target, "secretsmanager")
        self._version_ids: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def _fail(self, operation: str, exc: ClientError) -> Exception:
        return to_cloud_error(self.seam, "aws", operation, exc)

    def describe(self, name: str) -> StoredSecret:
        try:
            doc = self.client.describe_secret(SecretId=name)
        except ClientError as exc:
            info = classify(exc)
            if info and info.kind == NOT_FOUND:
                return StoredSecret(name=name, exists=False)
            raise self._fail("secretsmanager.describe_secret", exc) from exc
        return self._stored(name, doc.get("VersionIdsToStages") or {}, doc.get("Tags") or [])

    def describe_many(self, prefix: str) -> dict[str, StoredSecret]:
        found: dict[str, StoredSecret] = {}
        token: str | None = None
        try:
            while True:
                params: dict[str, Any] = {"MaxResults": 100,
                                          "Filters": [{"Key": "name", "Values": [prefix]}]}
                if token:
                    params["NextToken"] = token
                page = self.client.list_secrets(**params)
                for entry in page.get("SecretList", []):
                    name = entry["Name"]
                    if name.startswith(prefix):
                        found[name] = self._stored(name, entry.get("SecretVersionsToStages") or {},
                                                   entry.get("Tags") or [])
                token = page.get("NextToken")
                if not token:
                    return found
        except ClientError as exc:
            raise self._fail("secretsmanager.list_secrets", exc) from exc

    def _stored(self, name: str, version_stages: Mapping[str, Any], tag_list: list[Any]) -> StoredSecret:
        versions: dict[str, tuple[str, ...]] = {}
        issued: dict[str, datetime] = {}
        with self._lock:
            for version in version_stages:
                parsed = parse_version(version)
                if parsed:
                    self._version_ids[(name, parsed[0])] = version
        for version, stages in version_stages.items():
            parsed = parse_version(version)
            if parsed:
                key, when = parsed
                versions[key] = tuple(stages)
                if when:
                    issued[key] = when
        tags = {t["Key"]: t["Value"] for t in tag_list}
        return StoredSecret(name=name, exists=True, tags=tags, versions=versions, issued_at=issued)

    def ensure(self, name: str, tags: Mapping[str, str]) -> None:
        tag_list = [{"Key": k, "Value": v} for k, v in tags.items()]
        try:
            self.client.create_secret(Name=name, Tags=tag_list,
                                      Description="Access key issued by workload-ids")
        except ClientError as exc:
            info = classify(exc)
            if not info or info.code != "ResourceExistsException":
                raise self._fail("secretsmanager.create_secret", exc) from exc
            self.set_tags(name, tags)

    def put_key(self, name: str, key: IssuedKey, document: Mapping[str, str]) -> None:
        try:
            self.client.put_secret_value(SecretId=name,
                                         ClientRequestToken=version_id(key.key_id, key.issued),
                                         SecretString=json.dumps(dict(document)),
                                         VersionStages=["AWSCURRENT"])
        except ClientError as exc:
            raise self._fail("secretsmanager.put_secret_value", exc) from exc

    def read_key(self, name: str, key_id: str) -> SecretValue:
        version = self._version_ids.get((name, key_id))
        if version is None:
            self.describe(name)
            version = self._version_ids.get((name, key_id))
        try:
            doc: Any = self.client.get_secret_value(SecretId=name, VersionId=version)
        except ClientError as exc:
            raise self._fail("secretsmanager.get_secret_value", exc) from exc
        return SecretValue(str(json.loads(doc["SecretString"])["SecretAccessKey"]))

    def set_tags(self, name: str, tags: Mapping[str, str]) -> None:
        try:
            self.client.tag_resource(SecretId=name,
                                     Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        except ClientError as exc:
            raise self._fail("secretsmanager.tag_resource", exc) from exc

    def remove_tags(self, name: str, keys: list[str]) -> None:
        try:
            self.client.untag_resource(SecretId=name, TagKeys=keys)
        except ClientError as exc:
            raise self._fail("secretsmanager.untag_resource", exc) from exc
