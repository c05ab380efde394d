"""Attacks through the config (review H8, M4, M5): a config that would send the deployer's
tokens, new secrets or the SCIM token to a host of its choosing, a stray test clock, a
config picked up from a pull request's checkout in CI.

"Nothing is sent" is proven with a listener: a plain socket server that records every
connection, reached through a loopback address and (when the machine has one) through a
non-loopback address of this machine. The same endpoint with sandbox credentials is
accepted and does receive the connection, so the refusals are what kept it quiet."""

from __future__ import annotations

import ipaddress
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.aws import workload
from support.cli import run_cli_exact
from support.paths import EXAMPLES
from support.trust import TEST_TRUST

from workload_ids import clock
from workload_ids.calls import CallSeam
from workload_ids.config import Config, ConfigFile, load_config
from workload_ids.errors import InputErrors, UserError, WorkloadIdsError


class Listener:
    """Accepts and records connections on every interface; answers nothing."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("0.0.0.0", 0))  # nosec B104 - test listener: it must be reachable off loopback
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.connections: list[str] = []
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            self.connections.append(peer[0])
            conn.close()

    def close(self) -> None:
        self._stop = True
        self.sock.close()


def _external_ip() -> str | None:
    """A non-loopback address of this machine (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
            ip = str(probe.getsockname()[0])
        except OSError:
            return None
    return None if ipaddress.ip_address(ip).is_loopback else ip


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


@pytest.fixture(params=["off-machine", "loopback"])
def where(request: pytest.FixtureRequest, listener: Listener) -> str:
    """HOST where the listener is reached: a non-loopback address of this machine, or
    127.0.0.1 (the refusal differs: not this machine / no sandbox credentials)."""
    if request.param == "loopback":
        return "127.0.0.1"
    ip = _external_ip()
    if ip is None:
        pytest.skip("this machine has no non-loopback address to listen on")
    return ip


def write_config(text: str) -> Path:
    """The working directory's config: ``text`` plus the trust roots the manifests use."""
    path = Path("workload-ids.yaml")
    path.write_text(text.rstrip("\n") + "\n" + TEST_TRUST, encoding="utf-8")
    return path.resolve()


def example(provider: str, name: str) -> Path:
    folder = Path("manifests")
    folder.mkdir(exist_ok=True)
    shutil.copy(EXAMPLES / provider / name, folder / name)
    return (folder / name).resolve()


def aws_manifest() -> Path:
    path = Path("svc.yaml")
    path.write_text(workload("svc-a"), encoding="utf-8")
    return path.resolve()


def refused(args: list[str], config: Path, line: int, *fragments: str) -> None:
    result = run_cli_exact(*args, "--config", str(config))
    assert result.code == 1, result.err + result.out
    assert "Traceback" not in result.err and "internal error" not in result.err
    assert result.err.startswith(f"{config}:{line}:"), result.err
    for fragment in fragments:
        assert fragment in result.err, result.err


FAST = "calls: {maxAttempts: 1, maxRetrySeconds: 1}\n"


# --- endpoint overrides ----------------------------------------------------------------

def test_aws_endpoint_elsewhere_is_refused_and_nothing_is_sent(listener: Listener, where: str) -> None:
    config = write_config(f"aws:\n  endpointUrl: http://{where}:{listener.port}\n{FAST}")
    expected = ("which is not this machine" if where != "127.0.0.1"
                else "aws.sandboxCredentials is not true: real credentials are never sent")
    refused(["plan", str(aws_manifest())], config, 2, "aws.endpointUrl", expected)
    assert listener.connections == []


def test_aws_endpoint_on_loopback_with_sandbox_credentials_is_used(listener: Listener) -> None:
    config = write_config(f"aws:\n  endpointUrl: http://127.0.0.1:{listener.port}\n"
                          f"  sandboxCredentials: true\n{FAST}")
    result = run_cli_exact("plan", str(aws_manifest()), "--config", str(config))
    assert result.code != 0  # the listener is no AWS; what matters is that it was reached
    assert listener.connections


@pytest.mark.parametrize(("url", "host"), [
    ("http://127.0.0.1@collector.example:4566", "collector.example"),  # user info, not the host
    ("http://127.0.0.1.nip.io:4566", "127.0.0.1.nip.io"),  # a name someone else's DNS answers
    ("http://0.0.0.0:4566", "0.0.0.0"),
    ("http://localhost.collector.example", "localhost.collector.example"),
])
def test_hosts_that_only_look_local_are_refused(url: str, host: str) -> None:
    config = write_config(f"aws:\n  endpointUrl: '{url}'\n  sandboxCredentials: true\n")
    refused(["validate", str(aws_manifest())], config, 2, f"aws.endpointUrl points at {host}, which is "
            "not this machine")


GCP_FIELDS = ["iamEndpoint", "secretManagerEndpoint", "resourcePolicyEndpoint"]


@pytest.mark.parametrize("field", GCP_FIELDS)
def test_gcp_plaintext_grpc_elsewhere_is_refused(listener: Listener, where: str, field: str) -> None:
    config = write_config(f"gcp:\n  {field}: {where}:{listener.port}\n{FAST}")
    refused(["plan", str(example("gcp", "catalog-sync.yaml"))], config, 2, f"gcp.{field}")
    assert listener.connections == []


def test_gcp_resource_manager_over_http_to_a_collector_is_refused(listener: Listener, where: str) -> None:
    config = write_config(f"gcp:\n  resourceManagerEndpoint: http://{where}:{listener.port}\n{FAST}")
    refused(["plan", str(example("gcp", "catalog-sync.yaml"))], config, 2,
            "gcp.resourceManagerEndpoint")
    assert listener.connections == []
    collector = write_config("gcp:\n  resourceManagerEndpoint: http://collector\n")
    refused(["plan", str(example("gcp", "catalog-sync.yaml"))], collector, 2,
            "gcp.resourceManagerEndpoint points at collector, which is not this machine")


def test_gcp_endpoints_on_loopback_with_sandbox_credentials_are_used(listener: Listener) -> None:
    target = f"127.0.0.1:{listener.port}"
    config = write_config(f"gcp:\n  iamEndpoint: {target}\n  resourceManagerEndpoint: http://{target}\n"
                          f"  resourcePolicyEndpoint: {target}\n  secretManagerEndpoint: {target}\n"
                          f"  sandboxCredentials: true\n{FAST}")
    result = run_cli_exact("plan", str(example("gcp", "catalog-sync.yaml")), "--config", str(config))
    assert result.code != 0
    assert listener.connections


@pytest.mark.parametrize("field", ["armEndpoint", "graphEndpoint", "authorityEndpoint"])
def test_azure_endpoint_elsewhere_is_refused(listener: Listener, where: str, field: str) -> None:
    config = write_config(f"azure:\n  {field}: https://{where}:{listener.port}\n{FAST}")
    refused(["plan", str(example("azure", "order-reconciliation.yaml"))], config, 2, f"azure.{field}")
    assert listener.connections == []


def test_azure_endpoints_on_loopback_with_sandbox_credentials_are_used(listener: Listener) -> None:
    url = f"https://127.0.0.1:{listener.port}"
    config = write_config(f"azure:\n  armEndpoint: {url}\n  graphEndpoint: {url}\n"
                          f"  authorityEndpoint: {url}\n  keyVaultUrl: {url}\n"
                          f"  sandboxCredentials: true\n{FAST}")
    manifest = str(example("azure", "order-reconciliation.yaml"))
    result = run_cli_exact("plan", manifest, "--config", str(config))
    assert result.code != 0
    assert listener.connections


@pytest.mark.parametrize(("field", "url", "fragment"), [
    ("keyVaultUrl", "https://collector.example", "not an Azure Key Vault host"),
    ("keyVaultUrl", "https://vault.azure.net.collector.example", "not an Azure Key Vault host"),
    ("lockContainerUrl", "https://collector.example/locks", "not an Azure Blob Storage host"),
    ("keyVaultUrl", "https://127.0.0.1:1", "azure.sandboxCredentials is not true"),
])
def test_azure_vault_and_lock_container_must_be_azure_hosts(field: str, url: str, fragment: str) -> None:
    config = write_config(f"azure:\n  {field}: {url}\n")
    refused(["validate", str(example("azure", "order-reconciliation.yaml"))], config, 2,
            f"azure.{field}", fragment)


def test_azure_real_vault_and_container_urls_are_accepted() -> None:
    config = write_config("azure:\n  keyVaultUrl: https://acme.vault.azure.net\n"
                          "  lockContainerUrl: https://acme.blob.core.windows.net/locks\n")
    manifest = str(example("azure", "order-reconciliation.yaml"))
    result = run_cli_exact("validate", manifest, "--config", str(config))
    assert result.code == 0, result.err


def test_azure_ca_bundle_with_real_endpoints_is_refused() -> None:
    Path("ca.pem").write_text("not a CA\n")
    config = write_config("azure:\n  caBundle: ca.pem\n  keyVaultUrl: https://acme.vault.azure.net\n")
    refused(["validate", str(example("azure", "order-reconciliation.yaml"))], config, 2,
            "azure.caBundle is the CA of local emulators", "Remove azure.caBundle")


def test_azure_ca_bundle_never_applies_to_azure_itself() -> None:
    """Even in a sandbox config, the emulator's CA is used for loopback hosts only."""
    from workload_ids.providers.azure.clients import ARM_ENDPOINT, AzureClients
    Path("ca.pem").write_text("emulator CA\n")
    config = Config(ConfigFile.model_validate({"azure": {"caBundle": "ca.pem", "sandboxCredentials": True}}),
                    Path.cwd(), None)
    clients = AzureClients(config, CallSeam())
    assert clients.connection("https://127.0.0.1:8443")["connection_verify"] == str(Path("ca.pem").resolve())
    for real in (ARM_ENDPOINT, "https://acme.vault.azure.net", "https://acme.blob.core.windows.net/c"):
        assert "connection_verify" not in clients.connection(real)
    assert clients.graph._connection_verify is True  # Graph and the authority are Azure's own


def test_clients_built_in_code_never_send_real_credentials_to_an_override() -> None:
    """The loader's rules, held again where clients are built (configs made in code)."""
    from workload_ids.providers.aws.clients import AwsClients
    from workload_ids.providers.azure.clients import AzureClients
    from workload_ids.providers.gcp.clients import GcpClients

    def config(data: dict[str, object]) -> Config:
        return Config(ConfigFile.model_validate(data), Path.cwd(), None)

    aws = AwsClients(config({"aws": {"endpointUrl": "http://127.0.0.1:1"}}), CallSeam())
    with pytest.raises(UserError, match=r"aws\.endpointUrl is set but aws\.sandboxCredentials is not true"):
        aws.client("123456789012", "iam")
    gcp = GcpClients(config({"gcp": {"resourceManagerEndpoint": "http://127.0.0.1:1"}}), CallSeam())
    with pytest.raises(UserError, match=r"gcp\.resourceManagerEndpoint is set"):
        _ = gcp.projects
    gcp = GcpClients(config({"gcp": {"iamEndpoint": "collector:443", "sandboxCredentials": True}}),
                     CallSeam())
    with pytest.raises(UserError, match="plaintext gRPC to collector:443 refused"):
        _ = gcp.iam
    azure = AzureClients(config({"azure": {"graphEndpoint": "https://127.0.0.1:1"}}), CallSeam())
    with pytest.raises(UserError, match=r"azure\.graphEndpoint is set"):
        _ = azure.credential


# --- the SCIM directory ------------------------------------------------------------------

SECRET = "s3cr3t-value-never-sent"


def owners_config(url: str, token_env: str = "WORKLOAD_IDS_SCIM_TOKEN", extra: str = "") -> Path:
    return write_config(f"owners:\n  source: scim\n  url: {url}\n  tokenEnv: {token_env}\n{extra}"
                        "  timeout: 2s\n")


def reach(config: Path) -> None:
    """Open the directory the config names and ask it for one owner (the listener answers
    nothing, so this fails once it has connected)."""
    from workload_ids.owners import open_directory
    directory = open_directory(load_config(config))
    assert directory is not None
    with pytest.raises(WorkloadIdsError):
        directory.owners(["alice"])


def test_scim_over_http_off_the_machine_is_refused(aws: object, listener: Listener, where: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKLOAD_IDS_SCIM_TOKEN", SECRET)
    extra = "  allowInsecureLoopback: true\n"  # the opt-in does not stretch beyond loopback
    config = owners_config(f"http://{where}:{listener.port}/scim/v2", extra=extra)
    if where == "127.0.0.1":
        reach(config)
        assert listener.connections, "with the opt-in, a loopback test directory is reached"
        return
    refused(["cleanup", "--apply"], config, 3, "owners.url is plain http to", "Use https")
    assert listener.connections == []


def test_scim_over_http_on_loopback_needs_the_opt_in(aws: object, listener: Listener,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKLOAD_IDS_SCIM_TOKEN", SECRET)
    config = owners_config(f"http://127.0.0.1:{listener.port}/scim/v2")
    refused(["cleanup", "--apply"], config, 3, "owners.allowInsecureLoopback: true")
    assert listener.connections == []


@pytest.mark.parametrize("variable", ["ACTIONS_ID_TOKEN_REQUEST_TOKEN", "AWS_SECRET_ACCESS_KEY"])
def test_scim_token_from_another_secret_is_refused(aws: object, listener: Listener, variable: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(variable, SECRET)
    config = owners_config(f"https://127.0.0.1:{listener.port}/scim/v2", token_env=variable)
    refused(["cleanup", "--apply"], config, 4, f"owners.tokenEnv is {variable}",
            "starts with WORKLOAD_IDS_", "WORKLOAD_IDS_SCIM_TOKEN")
    assert listener.connections == []
    result = run_cli_exact("cleanup", "--apply", "--config", str(config))
    assert SECRET not in result.err + result.out
    # The same directory with the token in a WORKLOAD_IDS_ variable is reached.
    monkeypatch.setenv("WORKLOAD_IDS_SCIM_TOKEN", SECRET)
    reach(owners_config(f"https://127.0.0.1:{listener.port}/scim/v2"))
    assert listener.connections


def test_scim_library_refuses_http_off_the_machine_and_foreign_variables(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from workload_ids.config import OwnersConfig
    from workload_ids.owners.scim import ScimDirectory
    with pytest.raises(UserError, match="plain http"):
        ScimDirectory("http://idp.example.com/scim/v2", "token", 5)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    with pytest.raises(UserError, match="starts with WORKLOAD_IDS_"):
        ScimDirectory.from_config(OwnersConfig(source="scim", url="https://idp.example.com/v2",
                                               tokenEnv="AWS_SECRET_ACCESS_KEY"))


# --- templates ---------------------------------------------------------------------------

def test_template_folder_climbing_out_of_the_config_folder_is_refused() -> None:
    config = write_config("templates:\n  - ../manifests-repo/templates\n")
    refused(["validate", str(aws_manifest())], config, 2, "templates.0", "climbs out")


def test_absolute_template_and_audit_paths_are_accepted(tmp_path: Path) -> None:
    templates = tmp_path / "platform-templates"
    templates.mkdir()
    config = write_config(f"templates: [{templates}]\naudit: {{path: {tmp_path / 'log' / 'audit.jsonl'}}}\n")
    result = run_cli_exact("validate", str(aws_manifest()), "--config", str(config))
    assert result.code == 0, result.err


# --- the test clock ----------------------------------------------------------------------

FAR = "2030-01-01T00:00:00Z"


def test_a_stray_test_clock_refuses_the_run_and_changes_nothing(aws: object,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    iam = boto3.client("iam", region_name="us-east-1")
    manifest = str(aws_manifest())
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", FAR)
    for args in (["apply", "--auto-approve", manifest], ["cleanup", "--apply"], ["rotate", manifest]):
        result = run_cli_exact(*args)
        assert result.code == 1, result.err
        assert result.err.startswith(f"error: WORKLOAD_IDS_CLOCK='{FAR}' is set"), result.err
        assert "nothing was read or changed" in result.err and "--drill" in result.err
        assert iam.list_roles(PathPrefix="/workload-ids/")["Roles"] == []
    assert clock.override() is not None  # the CLI put the tests' own setting back
    drill = run_cli_exact("apply", "--auto-approve", "--drill", manifest)
    assert drill.code == 0, drill.err
    assert [r["RoleName"] for r in iam.list_roles(PathPrefix="/workload-ids/")["Roles"]] == ["wid_prod_svc-a"]


def test_the_library_ignores_the_clock_unless_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", FAR)
    clock.enable_override(None)
    assert clock.override() is None and clock.notice() is None
    clock.enable_override("drill")
    assert clock.format_time(clock.now()) == FAR


def test_a_sandbox_clock_never_reaches_a_cloud_with_real_credentials(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """aws has sandbox credentials, so the moved clock is honoured; the GCP manifest would
    use Application Default Credentials: refused before a GCP client is built."""
    config = write_config("aws: {sandboxCredentials: true}\n")
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", FAR)
    result = run_cli_exact("plan", str(example("gcp", "catalog-sync.yaml")), "--config", str(config))
    assert result.code == 1, result.err
    assert ("WORKLOAD_IDS_CLOCK is set and Google Cloud would use real credentials "
            "(gcp.sandboxCredentials is false)") in result.err
    assert "Traceback" not in result.err


def test_a_bad_clock_value_is_a_plain_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKLOAD_IDS_CLOCK", "next tuesday")
    result = run_cli_exact("validate", "--drill", str(aws_manifest()))
    assert result.code == 1
    assert result.err == ("error: WORKLOAD_IDS_CLOCK='next tuesday' is not an ISO-8601 time such as "
                          "2026-11-25T12:00:00Z\n")


# --- CI ----------------------------------------------------------------------------------

def test_ci_refuses_a_config_found_in_the_working_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = str(aws_manifest())
    found = Path("workload-ids.yaml").resolve()  # written by conftest, as a checkout would hold it
    monkeypatch.setenv("CI", "true")
    result = run_cli_exact("validate", manifest)
    assert result.code == 1
    assert result.err.startswith(f"{found}:1:1: CI is set and this workload-ids.yaml was found in the "
                                 "working directory"), result.err
    assert "Pass --config" in result.err
    with pytest.raises(InputErrors):
        load_config()
    named = run_cli_exact("validate", "--config", str(found), manifest)
    assert named.code == 0, named.err
    monkeypatch.setenv("CI", "false")
    assert run_cli_exact("validate", manifest).code == 0
