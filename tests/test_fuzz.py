"""Property-based fuzzing of every user input: manifests (``validate``, ``lint``, ``plan``),
the config file and owners files. Whatever the input, the outcome is exit 0 (valid), or
exit 1 (3 for guardrail refusals only) with every problem on a ``FILE:LINE:COLUMN:`` line;
never a traceback or an "internal error"; and ``plan`` asks for no cloud backend for input
that ``validate`` refuses.

The strategies and the properties live in ``support/fuzz_inputs.py``, shared with
``benchmarks/fuzz.py``, which runs the same properties on ten thousand examples. Here the
examples are few and derandomized (the same every run), so the file takes well under a
minute and CI is deterministic.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.cli import run_cli
from support.fuzz_inputs import (
    CONFIG_EXAMPLES,
    MANIFEST_EXAMPLES,
    Case,
    Properties,
    configs,
    manifests,
    owners_files,
    owners_paths,
    schema_documents,
)

from workload_ids import clouds as clouds_module

# Files are rewritten in place by every example, so one function-scoped folder serves
# them all. Generating a 1 MB scalar is slow and large by design.
FUZZ = settings(deadline=None, derandomize=True, database=None, print_blob=False,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.large_base_example,
                                       HealthCheck.filter_too_much])


@pytest.fixture
def props(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Properties]:
    properties = Properties(run_cli, tmp_path / "fuzz")
    monkeypatch.setattr(clouds_module, "connect", properties.refuse)
    yield properties


@settings(FUZZ, max_examples=150)
@given(case=manifests(), json_output=st.booleans())
def test_validate_never_crashes(props: Properties, case: Case, json_output: bool) -> None:
    props.validate(case, json_output)


@settings(FUZZ, max_examples=60)
@given(case=manifests())
def test_lint_agrees_with_validate_and_never_crashes(props: Properties, case: Case) -> None:
    props.lint(case)


@settings(FUZZ, max_examples=60)
@given(case=manifests())
def test_plan_refuses_bad_input_before_any_backend(props: Properties, case: Case) -> None:
    props.plan(case)


@settings(FUZZ, max_examples=100)
@given(case=configs(), manifest=st.sampled_from(sorted(MANIFEST_EXAMPLES)))
def test_config_never_crashes(props: Properties, case: Case, manifest: str) -> None:
    props.config(case, manifest)


@settings(FUZZ, max_examples=120)
@given(data=st.data())
def test_owners_loader_raises_only_positioned_input_errors(props: Properties, data: st.DataObject) -> None:
    case = data.draw(owners_files(), label="owners file")
    props.owners(case, data.draw(owners_paths(case.name), label="owners.path"))


@settings(FUZZ, max_examples=40)
@given(case=manifests())
def test_what_validate_accepts_the_json_schema_accepts(props: Properties, case: Case) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from workload_ids.schema import manifest_schema
    if props.validate(case) != "valid":
        return
    validator = jsonschema.validators.validator_for(manifest_schema())(manifest_schema())
    for doc in schema_documents(case):
        errors = [e.message for e in validator.iter_errors(doc)]
        assert not errors, (case.how, errors[:3])


@pytest.mark.parametrize("name", sorted(MANIFEST_EXAMPLES))
def test_every_example_is_valid_for_every_property(props: Properties, name: str) -> None:
    """The baselines the strategies start from pass, so 'valid' outcomes are reachable."""
    case = Case("workload.yaml", MANIFEST_EXAMPLES[name].encode(), name)
    assert props.validate(case, json_output=True) == "valid"
    assert props.lint(case) == "valid"
    assert props.plan(case) == "valid"
    # The examples' own config lists their trust roots; with none, federation is refused.
    examples = CONFIG_EXAMPLES["examples/workload-ids.yaml"].encode()
    assert props.config(Case("workload-ids.yaml", examples, "examples"), name) == "valid"
