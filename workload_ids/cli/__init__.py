"""The ``workload-ids`` command: parse arguments, call a verb, and map what it raises to
an exit code through one table (:func:`exit_code`). Nothing here talks to a cloud
directly, and nothing heavy is imported before a verb needs it (``--version`` and
``validate`` start fast).

    console.py   Output (text, notes, the JSON document) and Progress
    verbs.py     one function per command: call the library, render the result
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from .. import __version__
from ..errors import one_line, printable
from ..perf import RELAXED
from .console import Output, Progress, colour_wanted
from .verbs import (
    EXIT_BUSY,
    EXIT_CHANGES,
    EXIT_ERROR,
    EXIT_GUARDRAIL,
    EXIT_OK,
    cmd_adopt,
    cmd_apply,
    cmd_attest,
    cmd_audit_verify,
    cmd_bootstrap,
    cmd_cleanup,
    cmd_demo,
    cmd_discover,
    cmd_explain,
    cmd_inventory,
    cmd_lint,
    cmd_plan,
    cmd_recover,
    cmd_report_merge,
    cmd_restore,
    cmd_review,
    cmd_rotate,
    cmd_sandbox,
    cmd_schema,
    cmd_templates,
    cmd_validate,
)

# --- parser -------------------------------------------------------------------------

class UsageError(Exception):
    """A command line argparse refused. Exit 1, like every other error: 2 means "changes
    pending" to a pipeline (plan --detailed-exitcode), and a mistyped flag is not drift."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser


class _Parser(argparse.ArgumentParser):
    """argparse, except that a usage error is raised (for :func:`main` to explain) instead
    of printed and ended with ``sys.exit(2)``."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(self, message)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _verb_parser(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser of the verb the command line names (audit's nested verbs included)."""
    level = parser
    for token in argv:
        level = _subparsers(level).get(token, level)
    return level


def _explained(parser: argparse.ArgumentParser, exc: UsageError, argv: Sequence[str]) -> tuple[str, str]:
    """The usage to show and the message, with a suggestion for a mistyped verb or flag."""
    import difflib
    import re
    message = str(exc)
    choice = re.search(r"invalid choice: '([^']*)'", message)
    if choice:
        close = difflib.get_close_matches(choice.group(1), list(_subparsers(exc.parser)), n=1)
        return exc.parser.format_usage(), message + (f"; did you mean {close[0]!r}?" if close else "")
    unknown = re.search(r"unrecognized arguments: (.*)", message)
    if not unknown:
        return exc.parser.format_usage(), message
    verb = _verb_parser(parser, argv)
    flags = list(verb._option_string_actions)
    said = []
    for token in unknown.group(1).split():
        close = difflib.get_close_matches(token.split("=", 1)[0], flags, n=1) if token.startswith("-") else []
        said.append(f"{token} (did you mean {close[0]}?)" if close else token)
    return verb.format_usage(), f"{verb.prog}: unrecognized arguments: {' '.join(said)}"


def build_parser() -> argparse.ArgumentParser:
    """Every verb with its options; the epilog lists the exit codes pipelines branch on."""
    parser = _Parser(
        prog="workload-ids",
        description="Provision, rotate and retire least-privilege cloud identities for services.",
        epilog="Exit codes: 0 success, 1 error, 2 changes pending (plan --detailed-exitcode), "
               "3 refused by a guardrail, 4 busy: another run is changing a workload's keys, retry.")
    parser.add_argument("--version", action="version", version=f"workload-ids {__version__}")
    # Every verb's options but --output, which discover gives more formats.
    base = _Parser(add_help=False)
    base.add_argument("--config", metavar="FILE", action="append",
                      help="config file (default: ./workload-ids.yaml if present); repeat it to "
                           "layer files, later ones overriding earlier ones key by key")
    base.add_argument("-v", "--verbose", action="store_true",
                      help="show the underlying exception of an error")
    base.add_argument("--drill", action="store_true",
                      help="honour WORKLOAD_IDS_CLOCK (a moved clock) against real clouds; without "
                           "it a run with that variable set is refused unless on sandbox credentials")
    common = _Parser(add_help=False, parents=[base])
    common.add_argument("--output", choices=("text", "json"), default="text",
                        help="text for people (default) or one JSON document on stdout")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND")

    def verb(name: str, fn: Callable[[argparse.Namespace, Output], int], help_text: str,
             paths: bool = True, parent: _Parser = common) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[parent], help=help_text, description=help_text)
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
    explain = verb("explain", cmd_explain, "show what each workload would get on its cloud, entry by "
                   "entry (actions, resources, conditions, who may obtain credentials); offline")
    explain.add_argument("--skip-non-manifests", action="store_true",
                         help="ignore named files that hold no kind: Workload")
    templates = verb("templates", cmd_templates, "list the access templates, or show one template's "
                     "grants and resource forms per cloud; offline", paths=False)
    templates.add_argument("name", nargs="?", metavar="NAME", help="the template to show")
    templates.add_argument("--provider", choices=("aws", "gcp", "azure"),
                           help="only this cloud's definitions")
    lint.add_argument("--strict", action="store_true", help="exit 1 when there are warnings")
    lint.add_argument("--cloud", action="store_true",
                      help="also read the cloud: warn about keys older than their maxAge")
    plan = verb("plan", cmd_plan, "show what apply would change", parent=base)
    plan.add_argument("--output", choices=("text", "json", "markdown"), default="text",
                      help="text for people (default), one JSON document, or Markdown for a "
                           "pull-request comment (widening changes first)")
    plan.add_argument("--detailed-exitcode", action="store_true",
                      help="exit 2 when there are changes, 0 when none")
    apply = verb("apply", cmd_apply, "create or converge identities to the manifests")
    apply.add_argument("--auto-approve", action="store_true",
                       help="apply without asking (for pipelines)")
    apply.add_argument("--accept-breaking", action="store_true",
                       help="apply even though the plan removes permissions the workload used "
                            "within review.window (guardrails.refuseRemovingUsedAccess)")
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
        add_target_arguments(p)
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
    report = sub.add_parser("report", help="combine and render discover and inventory reports",
                            description="combine and render discover and inventory reports")
    report_sub = report.add_subparsers(dest="report_verb", metavar="ACTION")
    merge = report_sub.add_parser(
        "merge", help="combine the JSON documents of a sharded discover or inventory run into one report",
        description="combine the JSON documents of a sharded discover or inventory run (`discover "
                    "--shard I/N --output json`, `inventory --shard I/N --output json`) into the one "
                    "report an unsharded run writes; refuses a missing or repeated shard, other "
                    "settings, a mix of the two kinds, or another kind of file")
    merge.add_argument("files", nargs="+", metavar="FILE", help="the shards' JSON documents")
    merge.add_argument("--output", choices=("json", "html", "table"), default="json",
                       help="json: the merged document (default); html: the self-contained report "
                            "page (with --out, or to a pipe); table: text for people")
    merge.add_argument("--out", metavar="FILE", help="write the output to FILE instead of stdout")
    merge.add_argument("-v", "--verbose", action="store_true",
                       help="show the underlying exception of an error")
    merge.set_defaults(fn=cmd_report_merge)
    inv = verb("inventory", cmd_inventory, "list the identities workload-ids manages", paths=False)
    inv.add_argument("paths", nargs="*", metavar="PATH",
                     help="manifests: read their accounts and mark identities without one")
    add_target_arguments(inv)
    disc = verb("discover", cmd_discover, "every non-human identity in the targets, ours or not, "
                "with its owner, last use, keys, who can use it, and findings mapped to the OWASP "
                "NHI Top 10; read-only", paths=False, parent=base)
    add_target_arguments(disc)
    disc.add_argument("--service-linked", action="store_true",
                      help="AWS: include service-linked roles (made and owned by AWS services)")
    disc.add_argument("--output", choices=("table", "json", "csv", "html"), default="table",
                      help="table for people (default), the JSON document, CSV (one row per "
                           "identity), or a self-contained HTML page (with --out or to a pipe)")
    disc.add_argument("--out", metavar="FILE", help="write the output to FILE instead of stdout")
    disc.add_argument("--fail-on", choices=("low", "medium", "high"), metavar="SEVERITY",
                      help="exit 2 when any finding is SEVERITY (low, medium, high) or worse")
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
    add_target_arguments(clean)
    restore = verb("restore", cmd_restore, "recreate an identity that cleanup deleted, from the "
                   "restore bundle in the audit log", paths=False)
    restore.add_argument("identity", metavar="IDENTITY", help="the role or user name")
    restore.add_argument("--target", help="the account, when the name was deleted in several")
    restore.add_argument("--issue-key", metavar="MANIFEST",
                         help="key mode: also issue a new access key (keys cannot be restored) "
                              "and deliver it as this manifest says")
    attest = verb("attest", cmd_attest, "record an owner's confirmation that each workload still "
                  "needs its access (signed, in the audit trail); PERSON must be an active member "
                  "of the owning group in the owner directory", paths=False)
    attest.add_argument("workloads", nargs="+", metavar="WORKLOAD",
                        help="ENVIRONMENT/NAME as `workload-ids inventory` lists it, or a manifest")
    attest.add_argument("--by", required=True, metavar="PERSON",
                        help="who attests: their user name in the owner directory")
    attest.add_argument("--note", metavar="TEXT",
                        help="why the access is still needed (one line, at most 500 characters)")
    review = verb("review", cmd_review, "per owner, each workload's last attestation, its due date "
                  "(review.every) and state: ok, due soon, overdue, never attested; read-only",
                  paths=False, parent=base)
    review.add_argument("paths", nargs="*", metavar="PATH",
                        help="the manifests (with their access entries); without any, the workloads "
                             "managed in every target")
    review.add_argument("--output", choices=("text", "json", "markdown", "html"), default="text",
                        help="text for people (default), one JSON document, Markdown for a "
                             "pull-request comment, or one self-contained HTML page")
    review.add_argument("--diff-out", metavar="DIR",
                        help="also write each manifest's suggested edit to DIR as FILE.patch")
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
    adopt = verb("adopt", cmd_adopt, "write a manifest (observe mode, deletionPolicy retain) for each "
                 "existing identity, proving it grants nothing the identity lacks; with --apply, "
                 "mark the identities as managed", paths=False)
    adopt.add_argument("identities", nargs="+", metavar="IDENTITY",
                       help="an IAM role ARN or an Azure user-assigned managed identity's resource "
                       "id, as `workload-ids discover` shows it")
    adopt.add_argument("--out", required=True, metavar="DIR", help="the folder the manifests go to")
    adopt.add_argument("--owner", metavar="ID", help="the owner to write (default: the identity's "
                       "owner or team tag)")
    adopt.add_argument("--environment", metavar="ENV", help="the environment to write (default: "
                       "its environment tag, else 'adopted')")
    adopt.add_argument("--region", metavar="REGION", help="spec.aws.region (default: the region "
                       "most of its resources are in)")
    adopt.add_argument("--apply", action="store_true", help="mark each identity once the proof "
                       "shows no widening and no trust change (exit 3 otherwise)")
    verb("demo", cmd_demo, "a guided tour against local AWS, GCP and Azure emulators; no account "
         "needed", paths=False)
    sandbox = verb("sandbox", cmd_sandbox, "run local AWS (moto), GCP and Azure emulators until "
                   "stopped (-v: log every request)", paths=False)
    sandbox.add_argument("--port", type=int, default=0, metavar="BASE",
                         help="moto on 127.0.0.1:BASE and the GCP and Azure emulators on the nine "
                              "ports after it, the same on every start (default: any free ports)")
    sandbox.add_argument("--config-out", metavar="FILE",
                         help="write a workload-ids.yaml that points at the sandbox")
    sandbox.add_argument("--with-existing", action="store_true",
                         help="also make a few identities by hand on every cloud (a GitHub-trusted "
                              "role, an IAM user with a key, a service account, a managed identity) "
                              "to try discover and adopt on")
    return parser


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """``--provider``, ``--target`` and ``--shard``, the same on every command that reads
    every target (inventory, cleanup, discover, rotate and recover without PATH)."""
    parser.add_argument("--provider", choices=("aws", "gcp", "azure"),
                        help="read only this cloud's targets (default: every cloud's)")
    parser.add_argument("--target", action="append", default=[], metavar="[PROVIDER:]TARGET",
                        help="read only this account, project or subscription (repeatable); one "
                             "the config does not list is read too")
    parser.add_argument("--shard", metavar="I/N",
                        help="read the I-th of N deterministic parts of the targets (for N "
                             "parallel workers; JSON output records the shard)")


def main(argv: Sequence[str] | None = None) -> int:
    """The ``workload-ids`` entry point: runs one verb and returns its exit code."""
    # Pydantic scans installed entry points for plugins on import (~30 ms); a CLI that
    # starts once per pipeline step has no use for them.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    # A run builds many small, short-lived objects (manifest nodes, policy documents) and
    # ends; the default collector thresholds spend ~25% of a fleet plan on them.
    gc.set_threshold(*RELAXED)
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(words)
    except UsageError as exc:
        usage, message = _explained(parser, exc, words)
        print(usage.rstrip(), file=sys.stderr)
        print(printable(f"error: {message}; `{_verb_parser(parser, words).prog} --help` lists "
                        "what it takes"), file=sys.stderr)
        return EXIT_ERROR
    if not getattr(args, "fn", None):
        parser.print_help()
        return EXIT_ERROR
    out = Output(args.output)
    from .. import clock
    # The clock override is decided per run (_clock_gate), never inherited from a caller.
    previous = clock.enable_override(None)
    try:
        return int(args.fn(args, out))
    except KeyboardInterrupt:
        out.note("interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (`workload-ids plan ... | head`): nothing left to say, and
        # Python's own flush at exit must not print a traceback either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except Exception as exc:
        return _report(exc, out, args.verbose)
    finally:
        clock.enable_override(previous)
        if argv is None:
            # The process's own command line: it ends now. Python's shutdown would walk
            # every object left (and free the cyclic ones) in collections that took ~0.5 s
            # after a discover of 11,000 identities; the OS takes the memory back anyway.
            # (Called with argv, from tests or a program, the collector is left alone.)
            gc.freeze()


def exit_code(exc: BaseException) -> int:
    """The exit code for an error a verb raised: the one table of them.

    ======================================  ====
    a usage error (an unknown flag, a typo)   1
    a guardrail refused (config policy)       3
    input problems, all of them guardrails    3
    any other error of this tool              1
    anything else (a bug)                     1
    ======================================  ====

    2 (changes pending) and 4 (busy) are results, not errors: verbs return them.
    """
    from ..errors import GuardrailError, InputErrors
    if isinstance(exc, GuardrailError):
        return EXIT_GUARDRAIL
    if isinstance(exc, InputErrors) and exc.items and \
            all(d.severity == "guardrail" for d in exc.items):
        return EXIT_GUARDRAIL
    return EXIT_ERROR


def _report(exc: Exception, out: Output, verbose: bool) -> int:
    from ..errors import InputErrors, MissingDependencyError, WorkloadIdsError
    if isinstance(exc, ModuleNotFoundError) and exc.name and exc.name.split(".")[0] in (
            "boto3", "botocore", "moto", "google", "azure"):
        exc = MissingDependencyError(
            f"this command needs {exc.name.split('.')[0]}, which is not installed; "
            "install the extra for your cloud, e.g. pip install 'workload-ids[aws]'")
    code = exit_code(exc)
    if isinstance(exc, WorkloadIdsError):
        text = exc.diagnostics()
        if verbose and exc.__cause__ is not None:
            text += f"\n  caused by: {exc.__cause__!r}"
        text = printable(text if isinstance(exc, InputErrors) else f"error: {text}")
        print(f"\x1b[31m{text}\x1b[0m" if colour_wanted(out.err) else text, file=out.err)
        if out.json:
            items = getattr(exc, "items", None)
            out.document({"error": str(exc), "exitCode": code, "diagnostics": [
                {"position": str(d.position) if d.position else None, "severity": d.severity,
                 "message": d.message} for d in items] if items else []})
        return code
    if verbose:
        import traceback
        traceback.print_exception(exc, file=out.err)
    print(f"internal error: {type(exc).__name__}: {one_line(str(exc))}\n  this is a bug in workload-ids; "
          + ("report it with the traceback above" if verbose else "rerun with --verbose and report it"),
          file=out.err)
    return code


__all__ = ["EXIT_BUSY", "EXIT_CHANGES", "EXIT_ERROR", "EXIT_GUARDRAIL", "EXIT_OK", "Output", "Progress",
           "UsageError", "build_parser", "exit_code", "main"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
