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

from ...calls import NOT_FOUND
from ...errors import CloudError
from ...model import IssuedKey, SecretValue, StoredSecret
from ..interface import SecretStore
from ..secret_rules import foreign_marker, refuse_secret
from .clients import AwsClients

_PREFIX = "wid-"
# Secrets Manager's own key: describe_secret names no KmsKeyId, or this alias.
_DEFAULT_KMS = ("", "alias/aws/secretsmanager")
POLICY_SID = "WorkloadIdsOnlyListedPrincipalsRead"


def reader_patterns(caller: str, readers: tuple[str, ...] | list[str]) -> list[str]:
    """``aws:PrincipalArn`` patterns allowed to read a key secret: the tool's own principal
    and the configured readers. An assumed-role caller ARN loses the role's path, so the
    role is allowed under any path."""
    parts = caller.split(":", 5)
    allowed: list[str] = []
    if len(parts) == 6 and parts[2] == "sts" and parts[5].startswith("assumed-role/"):
        role = parts[5].split("/")[1]
        allowed += [f"arn:{parts[1]}:iam::{parts[4]}:role/{role}",
                    f"arn:{parts[1]}:iam::{parts[4]}:role/*/{role}"]
    elif caller:
        allowed.append(caller)
    if len(parts) == 6:  # the account itself, so an administrator can always repair the policy
        allowed.append(f"arn:{parts[1]}:iam::{parts[4]}:root")
    return [*allowed, *[r for r in readers if r not in allowed]]


def deny_policy(allowed: list[str]) -> str:
    """A resource policy that grants nothing and denies reading the value (and changing
    this policy) to every principal not in ``allowed``. Deny only: it cannot open the
    secret to anyone; who may read stays with IAM."""
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": POLICY_SID, "Effect": "Deny", "Principal": "*",
        "Action": ["secretsmanager:GetSecretValue", "secretsmanager:PutResourcePolicy",
                   "secretsmanager:DeleteResourcePolicy"],
        "Resource": "*",
        "Condition": {"ArnNotLike": {"aws:PrincipalArn": allowed}}}]}, sort_keys=True)


def grants_nothing(text: str) -> bool:
    """True if a resource policy has only Deny statements (it can open the secret to nobody)."""
    try:
        doc = json.loads(text)
    except ValueError:
        return False
    statements = doc.get("Statement") if isinstance(doc, dict) else None
    if isinstance(statements, dict):
        statements = [statements]
    return isinstance(statements, list) and all(
        isinstance(st, dict) and st.get("Effect") == "Deny" for st in statements)


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


class SecretsManagerStore(SecretStore):
    """The key secrets of one account (see the module docstring)."""

    def __init__(self, clients: AwsClients, target: str) -> None:
        self.clients = clients
        self.target = target
        self.client = clients.client(target, "secretsmanager")
        self.readers = tuple(clients.config.credentials.secretReaders)
        self.config = clients.config
        self._version_ids: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def describe(self, name: str) -> StoredSecret:
        """SecretStore.describe: one ``DescribeSecret``; keys are versions named after their key ids."""
        try:
            doc = self.client.describe_secret(SecretId=name)
        except CloudError as exc:
            if exc.kind != NOT_FOUND:
                raise
            return StoredSecret(name=name, exists=False)
        return self._stored(name, doc.get("VersionIdsToStages") or {}, doc.get("Tags") or [], doc)

    def describe_many(self, prefix: str) -> dict[str, StoredSecret]:
        """SecretStore.describe_many: ``ListSecrets`` filtered by name prefix, 100 a page."""
        found: dict[str, StoredSecret] = {}
        token: str | None = None
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
                                               entry.get("Tags") or [], entry)
            token = page.get("NextToken")
            if not token:
                return found

    def _stored(self, name: str, version_stages: Mapping[str, Any], tag_list: list[Any],
                read: Mapping[str, Any]) -> StoredSecret:
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
        # DescribeSecret and ListSecrets both name the KMS key (absent: Secrets Manager's own)
        # and the ARN.
        return StoredSecret(name=name, exists=True, tags=tags, versions=versions, issued_at=issued,
                            kms_key=str(read.get("KmsKeyId") or ""), address=str(read.get("ARN") or ""),
                            replicas=_replicas(read))

    def ensure(self, name: str, tags: Mapping[str, str]) -> None:
        """SecretStore.ensure: ``CreateSecret`` with no value; an existing secret goes through adopt."""
        tag_list = [{"Key": k, "Value": v} for k, v in tags.items()]
        try:
            self.client.create_secret(Name=name, Tags=tag_list,
                                      Description="Access key issued by workload-ids")
        except CloudError as exc:
            if exc.code != "ResourceExistsException":
                raise
            self.adopt(name, tags)  # made since we looked: ours only if it proves it
            self.set_tags(name, tags)
            return
        self._lock_down(name)

    def adopt(self, name: str, tags: Mapping[str, str], known: StoredSecret | None = None) -> None:
        """Three proofs before a key goes in: our marker for this workload, Secrets
        Manager's own KMS key, and a resource policy that grants nothing.

        The marker and the KMS key may come from ``known``, when this run read them from
        the cloud (the fleet's batched ``ListSecrets``, or the ``DescribeSecret`` the run
        made to decide what was due); the resource policy is always read here, under the
        workload's lock, right before the key goes in. Why that is no weaker than reading
        all three now:

        - a secret deleted and made again since ``known`` was read (a new owner, a new
          policy, a new KMS key, our tags copied) has a new ARN, because Secrets Manager
          ends every ARN with random characters; ``GetResourcePolicy`` answers with the
          ARN, and a different one means the whole proof is made again from a fresh read;
        - a KMS key changed on the same secret since then (``UpdateSecret``) encrypts
          the new version with a key someone else may hold; but the value leaves Secrets
          Manager only through ``GetSecretValue``, and the resource policy just read
          grants it to nobody (Deny statements only; ours also denies it to everyone the
          tool does not list, and denies changing the policy). Whoever IAM already lets
          read the secret reads it with Secrets Manager's own key too: the foreign key
          gives nobody a way in that the fresh policy check let through. A fresh
          ``DescribeSecret`` had the same race, only shorter: AWS has no conditional put,
          so no read closes it.
        """
        listed = known if known is not None and known.exists and known.kms_key is not None \
            and known.address else None
        if listed is None:
            doc: Any = self.client.describe_secret(SecretId=name)
            found = {t["Key"]: t["Value"] for t in doc.get("Tags") or []}
            kms = str(doc.get("KmsKeyId") or "")
            replicas = _replicas(doc)
        else:
            found, kms, replicas = dict(listed.tags), str(listed.kms_key), listed.replicas
        why = foreign_marker(name, found, tags)
        if why is None and kms not in _DEFAULT_KMS:
            why = (f"secret {name} is encrypted with KMS key {kms}, not Secrets Manager's own key: "
                   "whoever controls that key's policy could decrypt it")
        # workload-ids replicates no key secret: a replica is another copy of the key, in a
        # region and under a KMS key of its own that nobody here checked.
        if why is None and replicas:
            why = (f"secret {name} is replicated to {', '.join(replicas)} (workload-ids replicates "
                   "no key secret): each replica is a copy under a KMS key and IAM of its region")
        if why is not None:
            raise refuse_secret(name, why)
        answer: Any = self.client.get_resource_policy(SecretId=name)
        if listed is not None and str(answer.get("ARN") or "") != listed.address:
            self.adopt(name, tags)  # not the secret that was read: prove this one afresh
            return
        policy = str(answer.get("ResourcePolicy") or "")
        if policy and not grants_nothing(policy):
            raise refuse_secret(name, f"secret {name} has a resource policy that grants access "
                                      "(workload-ids writes only Deny statements)")
        if policy:
            why = self._not_our_deny(name, policy)
            if why is not None:
                raise refuse_secret(name, why)
        if not policy:  # ours, but a crash came between creating it and locking it down
            self._lock_down(name)

    def _exemptions(self) -> set[str]:
        """Who a deny policy of ours may leave out: the tool's principal now, the tool's
        own roles (bootstrap's: another of them may have made the secret), the account
        root and the configured readers."""
        from ...config import TOOL_IDENTITIES
        caller = self.clients.caller(self.target)
        allowed = set(reader_patterns(caller, self.readers))
        parts = caller.split(":", 5)
        if len(parts) == 6:
            for identity in TOOL_IDENTITIES:
                role = self.config.aws_tool_name(identity)
                allowed |= {f"arn:{parts[1]}:iam::{parts[4]}:role{self.config.aws_tool_path()}{role}",
                            f"arn:{parts[1]}:iam::{parts[4]}:role/{role}",
                            f"arn:{parts[1]}:iam::{parts[4]}:role/*/{role}"}
        return allowed

    def _not_our_deny(self, name: str, policy: str) -> str | None:
        """Why a deny-only resource policy is not one workload-ids wrote, or None. A deny
        that leaves someone out is how the secret is kept from everyone else: one that
        exempts an unknown principal (or denies nothing that matters) would let whoever
        wrote it read the key with ordinary IAM rights."""
        statements = json.loads(policy).get("Statement")
        if isinstance(statements, dict):
            statements = [statements]
        ours = [st for st in statements if isinstance(st, dict) and st.get("Sid") == POLICY_SID]
        redo = (f"delete its resource policy (aws secretsmanager delete-resource-policy --secret-id "
                f"{name}) and rerun: workload-ids then writes its own")
        if len(ours) != 1:
            return (f"secret {name} has a resource policy workload-ids did not write (no {POLICY_SID} "
                    f"statement); if the secret is ours, {redo}")
        st = ours[0]
        actions = st.get("Action")
        actions = [actions] if isinstance(actions, str) else actions if isinstance(actions, list) else []
        condition = st.get("Condition")
        exempt = condition.get("ArnNotLike", {}).get("aws:PrincipalArn") \
            if isinstance(condition, dict) and set(condition) == {"ArnNotLike"} and \
            isinstance(condition.get("ArnNotLike"), dict) and \
            set(condition["ArnNotLike"]) == {"aws:PrincipalArn"} else None
        exempt = [exempt] if isinstance(exempt, str) else exempt
        if st.get("Principal") != "*" or st.get("Resource") != "*" or \
                "secretsmanager:GetSecretValue" not in actions or not isinstance(exempt, list):
            return (f"secret {name} has a resource policy whose {POLICY_SID} statement is not the "
                    f"deny workload-ids writes; if the secret is ours, {redo}")
        unknown = sorted(str(a) for a in exempt if a not in self._exemptions())
        if unknown:
            return (f"secret {name} has a resource policy that exempts {', '.join(unknown)} from its "
                    "deny (neither the tool nor credentials.secretReaders); if they should read it, "
                    f"add them to credentials.secretReaders, then {redo}")
        return None

    def _lock_down(self, name: str) -> None:
        allowed = reader_patterns(self.clients.caller(self.target), self.readers)
        self.client.put_resource_policy(SecretId=name, ResourcePolicy=deny_policy(allowed),
                                        BlockPublicPolicy=True)

    def put_key(self, name: str, key: IssuedKey, document: Mapping[str, str]) -> None:
        """SecretStore.put_key: a version whose id derives from the key, so a retry is idempotent."""
        self.client.put_secret_value(SecretId=name,
                                     ClientRequestToken=version_id(key.key_id, key.issued),
                                     SecretString=json.dumps(dict(document)),
                                     VersionStages=["AWSCURRENT"])

    def read_key(self, name: str, key_id: str) -> SecretValue:
        """SecretStore.read_key: finds the key's version id, describing the secret if not known yet."""
        version = self._version_ids.get((name, key_id))
        if version is None:
            self.describe(name)
            version = self._version_ids.get((name, key_id))
        doc: Any = self.client.get_secret_value(SecretId=name, VersionId=version)
        return SecretValue(str(json.loads(doc["SecretString"])["SecretAccessKey"]))

    def set_tags(self, name: str, tags: Mapping[str, str]) -> None:
        """SecretStore.set_tags, as Secrets Manager resource tags."""
        self.client.tag_resource(SecretId=name,
                                 Tags=[{"Key": k, "Value": v} for k, v in tags.items()])

    def remove_tags(self, name: str, keys: list[str]) -> None:
        """SecretStore.remove_tags, as Secrets Manager resource tags."""
        self.client.untag_resource(SecretId=name, TagKeys=keys)


def _replicas(read: Mapping[str, Any]) -> tuple[str, ...]:
    """The other regions a DescribeSecret or ListSecrets answer says hold a copy: its
    replicas, or the primary when the secret read is itself a replica."""
    regions = sorted(str(r.get("Region")) for r in read.get("ReplicationStatus") or [])
    primary = read.get("PrimaryRegion")
    arn_region = str(read.get("ARN") or "").split(":")[3:4]
    if primary and [str(primary)] != arn_region:
        regions.append(f"{primary} (its primary)")
    return tuple(regions)
