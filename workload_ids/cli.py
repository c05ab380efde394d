"""The ``workload-ids`` command: parse arguments, call the library, map errors to exit
codes. Nothing here talks to a cloud directly, and nothing heavy is imported before a
verb needs it (``--version`` and ``validate`` start fast)."""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from . import __version__
from .errors import one_line, printable
from .perf import RELAXED

if TYPE_CHECKING:
    from .calls import CallSeam
    from .config import Config
    from .plan import Plan
    from .validate import Validation

EXIT_OK, EXIT_ERROR, EXIT_CHANGES, EXIT_GUARDRAIL, EXIT_BUSY = 0, 1, 2, 3, 4


class Output:
    """Where results go: text for people, one JSON document for machines."""

    def __init__(self, fmt: str, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.json = fmt == "json"
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    def text(self, line: str = "") -> None:
        """Print ``line`` (text format only). Control characters are escaped here for every
        caller; a string from a manifest or the cloud is put on one line by the renderer
        (``errors.one_line``), which knows where its lines end."""
        if not self.json:
            print(printable(line), file=self.out)

    def note(self, line: str) -> None:
        """Progress and notes: stderr, so stdout stays clean for JSON."""
        print(printable(line), file=self.err)

    def document(self, doc: dict[str, Any]) -> None:
        if self.json:
            print(json.dumps(doc, indent=2, sort_keys=False), file=self.out)


class Progress:
    """A progress bar on a terminal; on a pipe (CI logs), a plain line every tenth of a
    large fleet run, and nothing for small ones."""

    PLAIN_FROM = 50

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            step = max(1, total // 10)
            if total >= self.PLAIN_FROM and (done % step == 0 or done == total):
                print(f"{self.label}: {done}/{total}", file=self.stream, flush=True)
            return
        if total < 2:
            return
        width = 30
        filled = int(width * done / total)
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        if done == total:
            self.stream.write("\n")
        self.stream.flush()


# --- verbs --------------------------------------------------------------------------

def _config(args: argparse.Namespace) -> Config:
    from .config import load_config
    config = load_config(args.config)
    _clock_gate(args, config)
    wait = getattr(args, "lock_timeout", None)
    if wait is not None:
        from .durations import parse_duration
        from .errors import UserError
        try:
            parse_duration(wait)
        except ValueError as exc:
            raise UserError(f"--lock-timeout: {exc}") from exc
        credentials = config.data.credentials.model_copy(update={"lockTimeout": wait})
        config.data = config.data.model_copy(update={"credentials": credentials})
    return config


def _clock_gate(args: argparse.Namespace, config: Config) -> None:
    """Decide, once, before any cloud is read, whether ``WORKLOAD_IDS_CLOCK`` is honoured:
    with --drill, or on sandbox credentials (a client about to use real ones then refuses).
    Otherwise a run with it set is refused: a stray variable in a CI environment would make
    cleanup delete what is still in its grace period."""
    from . import clock
    from .errors import UserError
    value = clock.requested()
    if not value:
        clock.enable_override(None)
        return
    if getattr(args, "drill", False):
        clock.enable_override("drill")
    elif any(getattr(config.data, p).sandboxCredentials for p in ("aws", "gcp", "azure")):
        clock.enable_override("sandbox")
    else:
        raise UserError(f"{clock.ENV}={value!r} is set: it moves the clock that cleanup and rotation "
                        "decide by, and is honoured only in a drill or the sandbox; nothing was read or "
                        f"changed. Unset {clock.ENV} for a real run, or pass --drill to run a drill on "
                        "purpose (a config with sandboxCredentials: true needs neither)")
    try:
        clock.parse_time(value, source=clock.ENV)
    except clock.ClockError as exc:
        raise UserError(str(exc)) from None


def _validated(args: argparse.Namespace, config: Config, out: Output,
               on_target: Any = None) -> Validation:
    from .validate import validate
    skip = bool(getattr(args, "skip_non_manifests", False))
    result = validate(args.paths, config, skip_non_manifests=skip, on_target=on_target)
    for d in result.diagnostics:
        if d.severity == "warning":
            out.note(str(d))
    result.raise_for_errors()
    if not result.compiled and not skip:
        from .errors import Diagnostic, InputErrors, Position
        raise InputErrors([Diagnostic(Position(str(path)), "no workload manifest (kind: Workload) found "
                                      "here; pass the files or folders that hold them")
                           for path in args.paths])
    return result


def cmd_validate(args: argparse.Namespace, out: Output) -> int:
    config = _config(args)
    result = _validated(args, config, out)
    providers = sorted({c.provider for c in result.compiled})
    clouds = f" ({', '.join(providers)})" if providers else ""
    out.text(f"OK: {len(result.compiled)} workload(s) in {result.files} file(s) are valid{clouds}.")
    out.document({"valid": True, "workloads": [c.label for c in result.compiled],
                  "files": result.files, "diagnostics": []})
    return EXIT_OK


def cmd_lint(args: argparse.Namespace, out: Output) -> int:
    from .lint import lint
    config = _config(args)
    result = _validated(args, config, out)
    findings = lint(result, config, _seam(config) if args.cloud else None)
    for f in findings:
        out.text(str(f))
    warnings = sum(1 for f in findings if f.severity == "warning")
    out.text(f"{len(result.compiled)} workload(s): {warnings} warning(s), "
             f"{len(findings) - warnings} suggestion(s).")
    out.document({"findings": [{"position": str(f.position) if f.position else None,
                                "severity": f.severity, "message": f.message} for f in findings]})
    return EXIT_ERROR if args.strict and warnings else EXIT_OK


def _seam(config: Config) -> CallSeam:
    from .calls import CallSeam, RetryPolicy
    return CallSeam(RetryPolicy(max_attempts=config.calls.maxAttempts,
                                max_seconds=config.calls.maxRetrySeconds))


def _plan(args: argparse.Namespace, out: Output) -> tuple[Plan, Config, CallSeam]:
    from .plan import ScopePrefetch, build_plan
    config = _config(args)
    seam = _seam(config)
    fleet = True if any(Path(p).is_dir() for p in args.paths) else None
    # A fleet run starts reading each account while the manifests are still being checked.
    prefetch = ScopePrefetch(config, seam) if fleet else None
    try:
        result = _validated(args, config, out, on_target=prefetch)
    except BaseException:
        if prefetch:
            prefetch.close()
        raise
    plan = build_plan(result.compiled, config, seam, fleet=fleet, progress=Progress("reading"),
                      prefetch=prefetch)
    return plan, config, seam


def cmd_plan(args: argparse.Namespace, out: Output) -> int:
    from .plan import render_text
    plan, _, _ = _plan(args, out)
    out.text(render_text(plan))
    out.document(plan.as_json())
    if args.detailed_exitcode and plan.has_changes:
        return EXIT_CHANGES
    return EXIT_OK


def cmd_apply(args: argparse.Namespace, out: Output) -> int:
    from .apply import apply_plan
    from .errors import UserError
    from .plan import render_text
    plan, config, _ = _plan(args, out)
    _clock_notice(out)
    if plan.has_changes and not args.auto_approve:
        if not sys.stdin.isatty():
            raise UserError("apply needs confirmation but standard input is not a terminal; "
                            "review `workload-ids plan` and pass --auto-approve in pipelines")
        out.text(render_text(plan))
        answer = input("Apply these changes? Only 'yes' is accepted: ")
        if answer.strip() != "yes":
            out.text("Apply cancelled; nothing was changed.")
            return EXIT_ERROR
    elif plan.has_changes:
        out.text(render_text(plan))
    result = apply_plan(plan, concurrency=config.calls.concurrency, progress=Progress("applying"))
    for r in result.results:
        if r.error:
            out.note(one_line(f"error: {r.workload}: {r.error}"))
            if args.verbose and r.trace:
                out.note(r.trace.rstrip())
    summary = result.as_json()["summary"]
    assert isinstance(summary, dict)
    out.text(f"Apply {'complete' if result.ok else 'FAILED'}: {summary['changed']} workload(s) "
             f"changed, {summary['failed']} failed, {len(result.results)} in all.")
    for r in result.results:
        out.text(one_line(f"  {r.workload}: " + "  ".join(f"{k}={v}" for k, v in r.outputs.items())))
        if r.key is not None:
            for action in r.key.actions:
                out.text(one_line(f"      {action}"))
    doc = result.as_json()
    doc["plan"] = plan.as_json()
    out.document(doc)
    _github_output(result.results)
    if result.ok:
        return EXIT_OK
    return EXIT_BUSY if result.only_busy else EXIT_ERROR


def _github_output(results: Sequence[Any]) -> None:
    """Write deployment outputs for the next steps of a GitHub Actions job."""
    path = os.environ.get("GITHUB_OUTPUT")
    if not path:
        return
    lines: list[str] = []
    if len(results) == 1:
        lines.extend(f"{k}={v}" for k, v in results[0].outputs.items())
    lines.append("outputs_json=" + json.dumps({r.workload: r.outputs for r in results},
                                              separators=(",", ":")))
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def _clock_notice(out: Output) -> str | None:
    from .clock import notice
    text = notice()
    if text:
        out.note(text)
    return text


def cmd_rotate(args: argparse.Namespace, out: Output, *, recover_only: bool = False) -> int:
    from .rotation import rotate_workloads
    config = _config(args)
    if not args.paths:
        return _rotate_fleet(args, config, out, recover_only=recover_only)
    result = _validated(args, config, out)
    clock_text = _clock_notice(out)
    seam = _seam(config)
    reports = rotate_workloads(result.compiled, config, seam, now_name=getattr(args, "now", None),
                               recover_only=recover_only, progress=Progress("rotating"))
    for r in reports:
        out.text(one_line(f"{r.workload}  {r.identity}  secret {r.secret}"))
        for action in r.actions:
            out.text(one_line(f"    {action}"))
        if r.keys:
            out.text(one_line("    keys: " + "  ".join(f"{k['id']} ({k['role']}, {k['status']}, "
                                                       f"{k['ageDays']}d)" for k in r.keys)))
        if r.error:
            out.text(one_line(f"    {'REFUSED' if r.refused else 'BUSY' if r.busy else 'ERROR'}: "
                              f"{r.error}"))
        elif r.next_step:
            when = f" at {r.next_at.strftime('%Y-%m-%dT%H:%M:%SZ')}" if r.next_at else ""
            out.text(one_line(f"    next: {r.next_step}{when}"))
    failed = [r for r in reports if r.error and not r.refused and not r.busy]
    refused = [r for r in reports if r.refused]
    busy = [r for r in reports if r.busy]
    advanced = [r for r in reports if r.actions]
    verb = "Recover" if recover_only else "Rotate"
    out.text(f"{verb}: {len(reports)} key-mode workload(s), {len(advanced)} changed, "
             f"{len(refused)} refused, {len(busy)} busy, {len(failed)} failed "
             f"({seam.stats.total} API calls).")
    out.document({"workloads": [r.as_json() for r in reports], "clock": clock_text,
                  "summary": {"workloads": len(reports), "changed": len(advanced),
                              "refused": len(refused), "busy": len(busy), "failed": len(failed),
                              "apiCalls": seam.stats.total}})
    if failed or refused:
        return EXIT_ERROR
    return EXIT_BUSY if busy else EXIT_OK


def _rotate_fleet(args: argparse.Namespace, config: Config, out: Output, *, recover_only: bool) -> int:
    """``rotate``/``recover`` without PATH: judge every target (an unreadable one stops the
    run, exit 1), list the key-mode identities found, and change nothing."""
    from .errors import UserError
    from .rotation import fleet_keys
    verb = "recover" if recover_only else "rotate"
    if getattr(args, "now", None):
        raise UserError(f"rotate --now {args.now} needs the workload's manifest (its secret and "
                        f"rotation settings come from it): workload-ids rotate --now {args.now} "
                        "MANIFEST")
    seam = _seam(config)
    found = fleet_keys(config, seam, provider=args.provider, targets=args.target)
    for r in found.identities:
        keys = "  ".join(f"{k['id']} ({k['status']}, {k['ageDays']}d)" for k in r.keys) or "-"
        out.text(one_line(f"{r.environment}/{r.workload}  {r.identity}  {r.provider}:{r.target}  "
                          f"{r.state}  keys: {keys}"))
    where = ", ".join(f"{p}:{t}" for p, t in found.targets) or "none"
    out.text(f"{verb.capitalize()}: no manifests given: read every target ({where}); "
             f"{len(found.identities)} key-mode identit{'y' if len(found.identities) == 1 else 'ies'} "
             "found, nothing changed. A workload's rotation settings and secret come from its "
             f"manifest: run `workload-ids {verb} MANIFESTS` to act ({seam.stats.total} API calls).")
    out.document({"workloads": [], "fleet": found.as_json(),
                  "summary": {"workloads": 0, "changed": 0, "refused": 0, "busy": 0, "failed": 0,
                              "identities": len(found.identities), "apiCalls": seam.stats.total}})
    return EXIT_OK


def cmd_recover(args: argparse.Namespace, out: Output) -> int:
    return cmd_rotate(args, out, recover_only=True)


def cmd_audit_verify(args: argparse.Namespace, out: Output) -> int:
    from .audit import JsonlAuditLog
    from .errors import UserError
    config = _config(args)
    store = JsonlAuditLog(Path(args.file)) if args.file else config.audit_store(_seam(config))
    if store is None:
        raise UserError("no audit log configured: set audit.path or audit.sink in workload-ids.yaml, "
                        "or pass --file")
    where = store.where
    if not store.durable and not Path(where).is_file():
        raise UserError(f"audit log {where} does not exist")
    result = store.verify(args.expect_head)
    unit = "line" if not store.durable else "record"
    if result.ok:
        out.text(f"OK: {result.records} record(s) in {where}; head {result.head}")
    else:
        out.note(f"{where}:{result.bad_line}: {result.problem}")
        out.text(f"TAMPERED: {where} {unit} {result.bad_line}: {result.problem} "
                 f"({result.records} record(s) before it verify)")
    out.document({"ok": result.ok, "records": result.records, "head": result.head,
                  "badLine": result.bad_line, "problem": result.problem, "path": where})
    return EXIT_OK if result.ok else EXIT_ERROR


def cmd_schema(args: argparse.Namespace, out: Output) -> int:
    from .schema import manifest_schema
    print(json.dumps(manifest_schema(), indent=2), file=out.out)
    return EXIT_OK


def cmd_inventory(args: argparse.Namespace, out: Output) -> int:
    from .inventory import inventory, render_inventory
    config = _config(args)
    seam = _seam(config)
    rows = inventory(args.paths, config, seam, provider=args.provider, targets=args.target)
    out.text(render_inventory(rows))
    out.document({"identities": [r.as_json() for r in rows],
                  "summary": {"identities": len(rows), "apiCalls": seam.stats.total}})
    return EXIT_OK


def cmd_cleanup(args: argparse.Namespace, out: Output) -> int:
    from .cleanup.workflow import cleanup, render_report
    config = _config(args)
    _clock_notice(out)
    seam = _seam(config)
    report = cleanup(args.paths, config, seam, apply=args.apply, max_actions=args.max_actions,
                     provider=args.provider, targets=args.target, progress=Progress("cleaning up"),
                     delete_with_local_audit=args.delete_with_local_audit)
    out.text(render_report(report))
    out.document(report.as_json())
    if report.applied and not report.ok:
        return EXIT_ERROR
    # A held deletion waits for a person (a durable sink, or the flag): pending, like any action.
    if args.detailed_exitcode and not report.applied and (report.actions or report.held):
        return EXIT_CHANGES
    return EXIT_OK


def cmd_restore(args: argparse.Namespace, out: Output) -> int:
    from .cleanup.restore import restore
    config = _config(args)
    seam = _seam(config)
    checked = None
    if args.issue_key:
        from .validate import validate
        # Checked before anything is restored: a wrong manifest must not leave half a job.
        checked = validate([args.issue_key], config)
        checked.raise_for_errors()
    result = restore(args.identity, config, seam, target=args.target)
    out.text(f"Restored {result.kind} {result.identity} ({result.workload}) in {result.target}:")
    for step in result.steps:
        out.text(f"    {step}")
    key_report = None
    if checked is not None and result.kind == "user":
        from .rotation import rotate_workloads
        name = result.workload.split("/", 1)[1]
        [key_report] = rotate_workloads(checked.compiled, config, seam, now_name=name)
        for action in key_report.actions:
            out.text(f"    {action}")
        if key_report.error:
            out.note(f"error: issuing a new key: {key_report.error}")
        result.notes = [n for n in result.notes if not n.startswith("access keys cannot")]
        result.notes.insert(0, "access keys cannot be restored (AWS never shows a secret twice); "
                               f"a new one was issued to secret {key_report.secret}")
    for note in result.notes:
        out.text(f"note: {note}")
    out.document({**result.as_json(), "key": key_report.as_json() if key_report else None,
                  "apiCalls": seam.stats.total})
    return EXIT_ERROR if key_report is not None and key_report.error else EXIT_OK


def cmd_bootstrap(args: argparse.Namespace, out: Output) -> int:
    from .bootstrap.command import bootstrap
    config = _config(args)
    seam = _seam(config)
    result = bootstrap(config, seam, args.provider, args.target, apply=args.apply,
                       gcp_roles=args.gcp_role, resource_group=args.resource_group, location=args.location)
    for text in result.texts:
        out.text(text)
        out.text()
    for line in result.applied:
        out.text(line)
    for note in result.notes:
        out.note(f"note: {note}")
    if not args.apply:
        out.text("Printed only; `workload-ids bootstrap --provider aws|gcp|azure --target ID --apply` "
                 "creates it (Azure: also --resource-group and --location).")
    else:
        out.text(f"({seam.stats.total} API calls)")
    out.document({**result.as_json(), "apiCalls": seam.stats.total})
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, out: Output) -> int:
    from .demo import run_demo
    return run_demo(out)


def cmd_sandbox(args: argparse.Namespace, out: Output) -> int:
    from .sandbox.aws import run_sandbox
    return run_sandbox(port=args.port, config_out=args.config_out, out=out)


# --- parser -------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workload-ids",
        description="Provision, rotate and retire least-privilege cloud identities for services.",
        epilog="Exit codes: 0 success, 1 error, 2 changes pending (plan --detailed-exitcode), "
               "3 refused by a guardrail, 4 busy: another run is changing a workload's keys, retry.")
    parser.add_argument("--version", action="version", version=f"workload-ids {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE",
                        help="config file (default: ./workload-ids.yaml if present)")
    common.add_argument("--output", choices=("text", "json"), default="text",
                        help="text for people (default) or one JSON document on stdout")
    common.add_argument("-v", "--verbose", action="store_true",
                        help="show the underlying exception of an error")
    common.add_argument("--drill", action="store_true",
                        help="honour WORKLOAD_IDS_CLOCK (a moved clock) against real clouds; without "
                             "it a run with that variable set is refused unless on sandbox credentials")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND")

    def verb(name: str, fn: Callable[[argparse.Namespace, Output], int], help_text: str,
             paths: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        if paths:
            p.add_argument("paths", nargs="+", metavar="PATH",
                           help="manifest files, or directories searched for kind: Workload")
        p.set_defaults(fn=fn)
        return p

    validate = verb("validate", cmd_validate, "check manifests without any cloud access")
    lint = verb("lint", cmd_lint, "advice on manifests: warnings and suggestions")
    for p in (validate, lint):
        p.add_argument("--skip-non-manifests", action="store_true",
                       help="ignore named files that hold no kind: Workload (for pre-commit)")
    lint.add_argument("--strict", action="store_true", help="exit 1 when there are warnings")
    lint.add_argument("--cloud", action="store_true",
                      help="also read the cloud: warn about keys older than their maxAge")
    plan = verb("plan", cmd_plan, "show what apply would change")
    plan.add_argument("--detailed-exitcode", action="store_true",
                      help="exit 2 when there are changes, 0 when none")
    apply = verb("apply", cmd_apply, "create or converge identities to the manifests")
    apply.add_argument("--auto-approve", action="store_true",
                       help="apply without asking (for pipelines)")
    rotate = verb("rotate", cmd_rotate, "advance key rotation of key-mode workloads by whatever is due",
                  paths=False)
    rotate.add_argument("--now", metavar="NAME",
                        help="emergency: replace workload NAME's key at once and deactivate the old one")
    recover = verb("recover", cmd_recover, "finish or undo key rotations that a crashed run left behind",
                   paths=False)
    for p in (rotate, recover):
        p.add_argument("paths", nargs="*", metavar="PATH",
                       help="the manifests of the key-mode workloads to act on; without any, every "
                            "target (config targets:, aws.accounts, and those the audit trail shows "
                            "written to) is read and its key-mode identities listed, nothing changed")
        p.add_argument("--provider", default="aws", help="provider to read when no PATH is given")
        p.add_argument("--target", action="append", default=[],
                       help="without PATH: also read this account/project/subscription (repeatable)")
    for p in (apply, rotate, recover):
        p.add_argument("--lock-timeout", metavar="DURATION",
                       help="how long to wait for a workload whose keys another run is changing, "
                            "then exit 4 (default: credentials.lockTimeout, 3m)")
    audit = sub.add_parser("audit", help="the audit log", description="the audit log")
    audit_sub = audit.add_subparsers(dest="audit_verb", metavar="ACTION")
    verify = audit_sub.add_parser("verify", parents=[common],
                                  help="check the hash chain; name the first bad line")
    verify.add_argument("--file", help="audit log to check (default: audit.path from the config)")
    verify.add_argument("--expect-head", metavar="SHA256",
                        help="the last record's hash as kept elsewhere (detects removed tail records)")
    verify.set_defaults(fn=cmd_audit_verify)
    verb("schema", cmd_schema, "print the JSON Schema of a workload manifest", paths=False)
    inv = verb("inventory", cmd_inventory, "list the identities workload-ids manages", paths=False)
    inv.add_argument("paths", nargs="*", metavar="PATH",
                     help="manifests: read their accounts and mark identities without one")
    inv.add_argument("--provider", default="aws", help="provider to read when no PATH is given")
    inv.add_argument("--target", action="append", default=[],
                     help="account/project/subscription to read (repeatable)")
    clean = verb("cleanup", cmd_cleanup, "find identities whose owner or manifest is gone; "
                 "quarantine, transfer, release and delete them (dry run unless --apply)", paths=False)
    clean.add_argument("paths", nargs="*", metavar="PATH",
                       help="the manifests (usually the whole folder): identities no manifest "
                            "declares are decommissioned")
    clean.add_argument("--apply", action="store_true", help="act; without it, only report")
    clean.add_argument("--max-actions", type=int, metavar="N",
                       help="refuse to quarantine or delete more than N identities (default: "
                            "cleanup.maxActions, 10)")
    clean.add_argument("--detailed-exitcode", action="store_true",
                       help="dry run: exit 2 when there is something to do (a held deletion "
                            "too), 0 when nothing")
    clean.add_argument("--delete-with-local-audit", action="store_true",
                       help="delete due identities although the audit trail is only a local file "
                            "(audit.path): their restore bundles are lost with that file. Without "
                            "it, deletions need a durable audit sink (audit.sink) and are held")
    clean.add_argument("--provider", default="aws", help="provider to read when no PATH is given")
    clean.add_argument("--target", action="append", default=[],
                       help="also read this account/project/subscription (repeatable)")
    restore = verb("restore", cmd_restore, "recreate an identity that cleanup deleted, from the "
                   "restore bundle in the audit log", paths=False)
    restore.add_argument("identity", metavar="IDENTITY", help="the role or user name")
    restore.add_argument("--target", help="the account, when the name was deleted in several")
    restore.add_argument("--issue-key", metavar="MANIFEST",
                         help="key mode: also issue a new access key (keys cannot be restored) "
                              "and deliver it as this manifest says")
    boot = verb("bootstrap", cmd_bootstrap, "print (and with --apply create) the tool's own least-privilege "
                "identities per cloud, and the workload permissions boundary", paths=False)
    boot.add_argument("--provider", action="append", default=[], metavar="aws|gcp|azure",
                      help="cloud to bootstrap (repeatable; default: all three)")
    boot.add_argument("--target", help="the account, project or subscription (with one --provider)")
    boot.add_argument("--apply", action="store_true",
                      help="create or converge what is printed (GCP and Azure: with --target)")
    boot.add_argument("--resource-group", metavar="NAME",
                      help="Azure --apply: the resource group that holds the tool's managed identities")
    boot.add_argument("--location", metavar="LOCATION",
                      help="Azure --apply: the managed identities' location (e.g. westeurope)")
    boot.add_argument("--gcp-role", action="append", default=[], metavar="ROLE",
                      help="a workload custom role (projects/P/roles/ID) the GCP grant condition may bind")
    verb("demo", cmd_demo, "a guided tour against an in-process AWS; no account needed",
         paths=False)
    sandbox = verb("sandbox", cmd_sandbox, "run a local AWS (moto server) until stopped",
                   paths=False)
    sandbox.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free)")
    sandbox.add_argument("--config-out", metavar="FILE",
                         help="write a workload-ids.yaml that points at the sandbox")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Pydantic scans installed entry points for plugins on import (~30 ms); a CLI that
    # starts once per pipeline step has no use for them.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    # A run builds many small, short-lived objects (manifest nodes, policy documents) and
    # ends; the default collector thresholds spend ~25% of a fleet plan on them.
    gc.set_threshold(*RELAXED)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "fn", None):
        parser.print_help()
        return EXIT_ERROR
    out = Output(args.output)
    from . import clock
    # The clock override is decided per run (_clock_gate), never inherited from a caller.
    previous = clock.enable_override(None)
    try:
        return int(args.fn(args, out))
    except KeyboardInterrupt:
        out.note("interrupted")
        return 130
    except Exception as exc:
        return _report(exc, out, args.verbose)
    finally:
        clock.enable_override(previous)


def _report(exc: Exception, out: Output, verbose: bool) -> int:
    from .errors import InputErrors, MissingDependencyError, WorkloadIdsError
    if isinstance(exc, ModuleNotFoundError) and exc.name and exc.name.split(".")[0] in (
            "boto3", "botocore", "moto", "google", "azure"):
        exc = MissingDependencyError(
            f"this command needs {exc.name.split('.')[0]}, which is not installed; "
            "install the extra for your cloud, e.g. pip install 'workload-ids[aws]'")
    if isinstance(exc, WorkloadIdsError):
        text = exc.diagnostics()
        if verbose and exc.__cause__ is not None:
            text += f"\n  caused by: {exc.__cause__!r}"
        print(printable(text if isinstance(exc, InputErrors) else f"error: {text}"), file=out.err)
        if out.json:
            items = getattr(exc, "items", None)
            out.document({"error": str(exc), "exitCode": exc.exit_code, "diagnostics": [
                {"position": str(d.position) if d.position else None, "severity": d.severity,
                 "message": d.message} for d in items] if items else []})
        return int(exc.exit_code)
    if verbose:
        import traceback
        traceback.print_exception(exc, file=out.err)
    print(f"internal error: {type(exc).__name__}: {one_line(str(exc))}\n  this is a bug in workload-ids; "
          "rerun with --verbose and report it", file=out.err)
    return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
