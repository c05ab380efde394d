"""The local AWS's policy simulator is strict: what it does not understand never allows
(and always denies in a Deny statement); a key missing from the request fails its
condition; explicit deny wins; the boundary must allow too."""

from __future__ import annotations

from typing import Any

from workload_ids.sandbox.moto_simulator import decide

NOW = {"aws:currenttime": "2026-12-31T17:59:59Z"}
LATE = {"aws:currenttime": "2026-12-31T18:00:00Z"}
UNTIL = {"DateLessThan": {"aws:CurrentTime": "2026-12-31T18:00:00Z"}}


def _allow(condition: dict[str, Any] | None = None, action: str = "s3:GetObject",
           effect: str = "Allow") -> list[tuple[str, dict[str, Any]]]:
    st: dict[str, Any] = {"Effect": effect, "Action": action, "Resource": "arn:aws:s3:::b/*"}
    if condition:
        st["Condition"] = condition
    return [("p", st)]


def _decision(identity: Any, context: dict[str, str], boundary: Any = None) -> str:
    return str(decide(identity, boundary, "s3:GetObject", "arn:aws:s3:::b/a", context)["EvalDecision"])


def test_date_less_than_ends_at_the_instant() -> None:
    assert _decision(_allow(UNTIL), NOW) == "allowed"
    assert _decision(_allow(UNTIL), LATE) == "implicitDeny"
    missing = decide(_allow(UNTIL), None, "s3:GetObject", "arn:aws:s3:::b/a", {})
    assert missing["EvalDecision"] == "implicitDeny"
    assert missing["MissingContextValues"] == ["aws:CurrentTime"]


def test_what_it_does_not_understand_never_allows_and_always_denies() -> None:
    odd = {"NumericLessThan": {"s3:max-keys": "10"}}
    assert _decision(_allow(odd), {"s3:max-keys": "5"}) == "implicitDeny"
    assert _decision([*_allow(), *_allow(odd, effect="Deny")], {"s3:max-keys": "50"}) == "explicitDeny"
    assert _decision(_allow({"DateLessThan": {"aws:CurrentTime": "2026-12-31T18:00:00"}}), NOW) \
        == "implicitDeny"  # no zone: not an instant this evaluator reads


def test_explicit_deny_wins_and_the_boundary_must_allow() -> None:
    assert _decision([*_allow(), *_allow(action="s3:*", effect="Deny")], NOW) == "explicitDeny"
    assert _decision(_allow(), NOW, boundary=_allow(action="sqs:*")) == "implicitDeny"
    assert _decision(_allow(), NOW, boundary=_allow(action="*")) == "allowed"
    assert _decision(_allow(action="S3:getobject"), NOW) == "allowed"  # actions in any case
