from support.aws import PAYMENTS
from support.cli import run_cli


def test_issue_example_validates(manifests):
    folder = manifests({"payments.yaml": PAYMENTS})
    result = run_cli("validate", str(folder / "payments.yaml"))
    assert result.code == 0, result.err
    assert "OK: 1 workload(s)" in result.out
