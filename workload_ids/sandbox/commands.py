"""``workload-ids sandbox``: a local AWS, GCP and Azure on loopback until stopped.

The command for all three clouds: moto as a server (AWS), and our GCP and Azure
emulators when their extras are installed. It writes a config that points every client
at them, with the examples' trust roots and targets.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .aws import (
    EXAMPLE_ISSUERS,
    FAKE_CREDENTIALS,
    SANDBOX_ACCOUNT,
    MotoServer,
    seed_boundary,
    seed_oidc_providers,
    seed_signing_key,
)

if TYPE_CHECKING:
    from ..cli.console import Output
    from .existing import Existing


def sandbox_config(url: str) -> str:
    """A workload-ids.yaml that points every AWS call at the sandbox (the GCP and Azure
    blocks follow when their emulators run)."""
    return (
        "# Written by `workload-ids sandbox`: points AWS, GCP and Azure calls at the local\n"
        "# emulators. Layer your own settings over it: --config sandbox.yaml --config mine.yaml\n"
        "aws:\n"
        f"  endpointUrl: {url}\n"
        "  sandboxCredentials: true   # fixed dummy credentials; only for local emulators\n"
        + EXAMPLE_TRUST)


# The trust roots of the bundled examples (examples/workload-ids.yaml lists the same), so
# the sandbox takes them as they are; list your own clusters and organisation here.
EXAMPLE_TRUST = (
    "trust:\n"
    "  allowedGithubOwners: [acme]\n"
    "  allowedIssuers:\n"
    + "".join(f"    - {issuer}\n" for issuer in (
        "https://oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B7",
        "https://container.googleapis.com/v1/projects/acme-prod/locations/europe-west1/clusters/prod-eu"))
    + "  gcpProjectNumbers: {acme-prod: 123456789012}\n"
    + "  allowedDeployers: [group:payments-deployers@acme.example]\n")


# The targets of the bundled examples: written into the sandbox's config so `cleanup` and
# `inventory` read them all, even after the last manifest of one is removed.
EXAMPLE_PROJECT = "acme-prod"
EXAMPLE_SUBSCRIPTION = "0b1f6471-1bf0-4dda-aec3-cb9272f09590"


def sandbox_targets(*, gcp: bool, azure: bool) -> str:
    """The ``targets:`` block of the sandbox's config, for the clouds it emulates."""
    lines = ["targets:   # every account, project and subscription cleanup and inventory read",
             f"  aws: [{{account: '{SANDBOX_ACCOUNT}'}}]"]
    if gcp:
        lines.append(f"  gcp: [{{project: {EXAMPLE_PROJECT}}}]")
    if azure:
        lines.append(f"  azure: [{{subscription: '{EXAMPLE_SUBSCRIPTION}'}}]")
    return "\n".join(lines) + "\n"


# With --with-existing: the audit trail, next to the config, that adopt and cleanup write.
EXISTING_AUDIT = "audit: {path: sandbox-audit.jsonl}   # relative to this file\n"


def _seed_existing(url: str, gcp: Any, azure: Any) -> list[Existing]:
    """Make the hand-made identities on every cloud the sandbox runs, through each cloud's
    own client; returns them in the order printed."""
    from .existing import seed_aws, seed_azure, seed_gcp
    made = seed_aws(url)
    if gcp is not None:
        iam, rm = gcp.emulators[0], gcp.emulators[1]
        made += seed_gcp(iam.client(), rm.client())
    if azure is not None:
        from .azure.arm import StaticTokenCredential
        made += seed_azure(StaticTokenCredential(), azure.arm.client_kwargs())
    return made


# With --port BASE: moto on BASE, the GCP emulators on the next five ports, Azure's on the
# four after them.
GCP_PORTS = 1
AZURE_PORTS = 6


def run_sandbox(port: int, config_out: str | None, out: Output, *, verbose: bool = False,
                with_existing: bool = False) -> int:
    """Start the sandbox, print how to use it, and wait until interrupted. With ``port``
    every emulator listens on a port of its own from it and the Azure CA bundle has a
    fixed path, so a config written once stays valid across restarts. ``with_existing``:
    also make a few identities by hand on every cloud (:mod:`.existing`)."""
    import logging
    import tempfile
    for key, value in FAKE_CREDENTIALS.items():
        os.environ.setdefault(key, value)
    # moto's server logs every request through werkzeug's logger, into the terminal the
    # user's commands print to (and its 404s in yellow, like errors).
    logging.getLogger("werkzeug").setLevel(logging.INFO if verbose else logging.WARNING)
    server = MotoServer(port)
    url = server.start()
    seed_oidc_providers(endpoint_url=url)
    seed_boundary(endpoint_url=url)
    seed_signing_key(endpoint_url=url)
    template_config = sandbox_config(url)
    gcp = None
    try:
        from .gcp.local import start_local_gcp
        gcp = start_local_gcp(port + GCP_PORTS if port else 0)
        template_config += gcp.config_block()
    except ModuleNotFoundError:  # the gcp extra is not installed: AWS only
        gcp = None
    azure = None
    try:
        from .azure.local import start_local_azure
        stable_ca = Path(tempfile.gettempdir()) / f"workload-ids-sandbox-{port}" / "ca.pem" if port else None
        azure = start_local_azure(base_port=port + AZURE_PORTS if port else 0, ca_bundle=stable_ca)
        template_config += azure.config_block()
    except ModuleNotFoundError:  # the azure extra is not installed
        azure = None
    template_config += sandbox_targets(gcp=gcp is not None, azure=azure is not None)
    made: list[Existing] = []
    if with_existing:
        made = _seed_existing(url, gcp, azure)
        # Releasing an adopted identity (cleanup after its manifest is removed) is recorded
        # only in the audit trail: without one cleanup refuses to let go.
        template_config += EXISTING_AUDIT
    if config_out:
        # Write atomically: a script may be polling for this file to appear.
        target = Path(config_out)
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.write_text(template_config, encoding="utf-8")
        tmp.replace(target)
    lines = [
        f"Local AWS (moto) listening on {url}; account {SANDBOX_ACCOUNT}.",
        "IAM OIDC providers created for: " + ", ".join(EXAMPLE_ISSUERS),
        "",
        "Point other commands at it, either with a config file:",
        f"  workload-ids plan --config {config_out or 'sandbox.yaml'} PATH"
        + ("" if config_out else "   (write it with --config-out sandbox.yaml)"),
        "or, for AWS only, with the environment:",
        f"  export AWS_ENDPOINT_URL={url} AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing",
        "",
        "State is kept until you stop the sandbox (Ctrl-C)"
        + (f"; restarted with --port {port}, it listens on the same ports." if port else
           "; start it with --port BASE to keep its ports (and that config) across restarts."),
    ]
    if gcp is not None:
        lines[1:1] = ["Local GCP (IAM Admin, Resource Manager, Secret Manager, resource IAM policies) on "
                      + ", ".join(gcp.endpoints.values()) + "; projects and resources appear on first use"]
    else:
        lines[1:1] = ["(install workload-ids[gcp] for a local GCP as well)"]
    if azure is not None:
        lines[1:1] = ["Local Azure (ARM, Microsoft Graph, Key Vault over HTTPS) on "
                      + ", ".join(e.url for e in azure.emulators)
                      + "; subscriptions and resource groups appear on first use"]
    else:
        lines[1:1] = ["(install workload-ids[azure] for a local Azure as well)"]
    if made:
        from .existing import start_text
        lines.append(start_text(made, config_out))
    out.note("\n".join(lines))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        if gcp is not None:
            gcp.stop()
        if azure is not None:
            azure.stop()
        if config_out:
            Path(config_out).unlink(missing_ok=True)
    out.note("sandbox stopped")
    return 0
