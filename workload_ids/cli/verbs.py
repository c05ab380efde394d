"""The verbs: each parses nothing, calls the library (``workload_ids.api`` and the
workflows), and renders what comes back. Heavy modules are imported inside each verb, so
``--version`` and ``validate`` start fast."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import one_line
from .console import Output, Progress, is_terminal

if TYPE_CHECKING:
    from ..calls import CallRecord, CallSeam
    from ..config import Config
    from ..plan import Plan
    from ..targets import Shard
    from ..validate import Validation

EXIT_OK, EXIT_ERROR, EXIT_CHANGES, EXIT_GUARDRAIL, EXIT_BUSY = 0, 1, 2, 3, 4


def _config(args: argparse.Namespace) -> Config:
    from ..config import load_config
    config = load_config(args.config)
    _clock_gate(args, config)
    wait = getattr(args, "lock_timeout", None)
    if wait is not None:
        from ..durations import parse_duration
        from ..errors import UserError
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
    from .. import clock
    from ..errors import UserError
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


def _validated(args: argparse.Namespace, config: Config, out: Output) -> Validation:
    from ..validate import validate
    skip = bool(getattr(args, "skip_non_manifests", False))
    result = validate(args.paths, config, skip_non_manifests=skip)
    _checked(args, result, out)
    result.raise_for_errors()
    return result


def _checked(args: argparse.Namespace, result: Validation, out: Output) -> None:
    """Print the warnings of ``result``; refuse a run that found no manifest at all."""
    for d in result.diagnostics:
        if d.severity == "warning":
            out.note(str(d))
    if not result.compiled and not result.errors and not getattr(args, "skip_non_manifests", False):
        from ..errors import Diagnostic, InputErrors, Position
        raise InputErrors([Diagnostic(Position(str(path)), "no workload manifest (kind: Workload) found "
                                      "here; pass the files or folders that hold them")
                           for path in args.paths])


def cmd_validate(args: argparse.Namespace, out: Output) -> int:
    """`validate`: check manifests offline; exit 1 on any error."""
    config = _config(args)
    result = _validated(args, config, out)
    providers = sorted({c.provider for c in result.compiled})
    clouds = f" ({', '.join(providers)})" if providers else ""
    out.text(f"OK: {len(result.compiled)} workload(s) in {result.files} file(s) are valid{clouds}.")
    out.document({"valid": True, "workloads": [c.label for c in result.compiled],
                  "files": result.files, "diagnostics": []})
    return EXIT_OK


def cmd_lint(args: argparse.Namespace, out: Output) -> int:
    """`lint`: warnings and suggestions (with --cloud, key ages read from the cloud too)."""
    from ..lint import lint
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


def cmd_explain(args: argparse.Namespace, out: Output) -> int:
    """`explain`: what each workload would get on its cloud, entry by entry, offline."""
    from ..explain import explain, explain_json, render_explanation
    config = _config(args)
    result = _validated(args, config, out)
    explanations = explain(result, config)
    out.text(render_explanation(explanations))
    out.document(explain_json(explanations))
    return EXIT_OK


def cmd_templates(args: argparse.Namespace, out: Output) -> int:
    """`templates`: the templates a run can use, or one template's grants and resource forms."""
    from ..explain import (
        find_template,
        render_template_detail,
        render_templates,
        template_detail,
        templates_json,
    )
    from ..templates import load_templates
    config = _config(args)
    templates = load_templates(config.template_dirs(), config.catalog_extra())
    if args.name is None:
        out.text(render_templates(templates, args.provider))
        out.document(templates_json(templates, args.provider))
        return EXIT_OK
    detail = template_detail(find_template(templates, args.name), args.provider)
    out.text(render_template_detail(detail))
    out.document({"template": detail})
    return EXIT_OK


def _seam(config: Config) -> CallSeam:
    from ..api import seam_for
    seam = seam_for(config)
    if is_terminal(sys.stderr):
        # On a terminal a retry is said as it starts: a throttled or flaky cloud shows as
        # waiting, not as a hang. Logs get the outcome only.
        def retrying(call: CallRecord, kind: str, delay: float) -> None:
            print(f"  {call.provider}:{call.operation}: {kind}, retrying in {delay:.1f} s "
                  f"(attempt {call.attempt + 1})", file=sys.stderr, flush=True)
        seam.retry_observers.append(retrying)
    return seam


def _plan(args: argparse.Namespace, out: Output) -> tuple[Plan, Config, CallSeam]:
    from ..api import plan_paths
    config = _config(args)
    seam = _seam(config)
    plan = plan_paths(args.paths, config, seam=seam, progress=Progress("reading"),
                      checked=lambda result: _checked(args, result, out))
    return plan, config, seam


def cmd_plan(args: argparse.Namespace, out: Output) -> int:
    """`plan`: what apply would change (exit 2 with --detailed-exitcode when something would)."""
    from ..plan import render_markdown, render_text
    plan, _, _ = _plan(args, out)
    if args.output == "markdown":
        out.text(render_markdown(plan).rstrip("\n"))
    else:
        out.changes(render_text(plan))
    out.document(plan.as_json())
    if args.detailed_exitcode and plan.has_changes:
        return EXIT_CHANGES
    return EXIT_OK


def cmd_apply(args: argparse.Namespace, out: Output) -> int:
    """`apply`: plan, then carry the changes out; outputs for the deployment."""
    from ..apply import apply_plan
    from ..errors import UserError
    from ..plan import render_text
    plan, config, _ = _plan(args, out)
    _clock_notice(out)
    if config.guardrails.refuseRemovingUsedAccess and not args.accept_breaking:
        from ..plan import refuse_breaking
        refuse_breaking(plan)  # before asking: the answer could not change it
    if plan.applicable and not args.auto_approve:
        if not is_terminal(sys.stdin):
            raise UserError("apply needs confirmation but standard input is not a terminal; "
                            "review `workload-ids plan` and pass --auto-approve in pipelines")
        out.changes(render_text(plan))
        answer = input("Apply these changes? Only 'yes' is accepted: ")
        if answer.strip() != "yes":
            out.text("Apply cancelled; nothing was changed.")
            return EXIT_ERROR
    elif plan.has_changes:
        out.changes(render_text(plan))
    result = apply_plan(plan, concurrency=config.calls.concurrency, progress=Progress("applying"),
                        accept_breaking=args.accept_breaking)
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
        if r.not_applied:
            out.text(one_line(f"      observe mode: {r.not_applied} change(s) of drift reported, none "
                              "applied (set spec.mode: manage to converge it)"))
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
    from ..clock import notice
    text = notice()
    if text:
        out.note(text)
    return text


def cmd_rotate(args: argparse.Namespace, out: Output, *, recover_only: bool = False) -> int:
    """`rotate` (and `recover`): advance every key-mode workload's keys."""
    from ..keys.fleet import rotate_workloads
    config = _config(args)
    if not args.paths:
        return _rotate_fleet(args, config, out, recover_only=recover_only)
    if args.shard:
        from ..errors import UserError
        raise UserError(f"--shard splits the targets a run without PATH reads; with manifests, "
                        f"give each worker its own: workload-ids {'recover' if recover_only else 'rotate'} "
                        "MANIFESTS (no --shard)")
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
    from ..errors import UserError
    from ..keys.fleet import fleet_keys
    verb = "recover" if recover_only else "rotate"
    if getattr(args, "now", None):
        raise UserError(f"rotate --now {args.now} needs the workload's manifest (its secret and "
                        f"rotation settings come from it): workload-ids rotate --now {args.now} "
                        "MANIFEST")
    seam = _seam(config)
    found = fleet_keys(config, seam, provider=args.provider, targets=args.target, shard=_shard(args))
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
    """`recover`: finish what interrupted rotations left, and nothing else."""
    return cmd_rotate(args, out, recover_only=True)


ADOPT_APPLY_DENIED = (
    "adopt --apply writes the workload-ids marker on a role outside aws.rolePath, which no identity "
    "`workload-ids bootstrap` makes may do (by design: see README 'Bootstrap'); run `adopt --apply` "
    "with an administrator's credentials (iam:TagRole on that role), or run `adopt` without --apply "
    "with the discover identity and hand the manifests to an administrator; the role named was not "
    "marked")


def cmd_adopt(args: argparse.Namespace, out: Output) -> int:
    """`adopt`: write manifests that mirror existing identities; with --apply, mark them."""
    from ..adopt import render_report
    from ..api import adopt
    from ..calls import DENIED
    from ..errors import CloudError
    config = _config(args)
    try:
        report = adopt(args.identities, args.out, config, owner=args.owner, environment=args.environment,
                       region=args.region, apply=args.apply, seam=_seam(config))
    except CloudError as exc:
        if exc.kind != DENIED or not exc.operation.endswith(".tag_role"):
            raise
        # By design no tool identity may tag a role outside aws.rolePath (README
        # 'Bootstrap'): the marker adopt --apply writes is an administrator's act.
        raise CloudError(exc.operation, exc.code, exc.message, ADOPT_APPLY_DENIED, kind=exc.kind) from exc
    out.text(render_report(report))
    out.document(report.as_json())
    refused = [a for a in report.adoptions if a.refused]
    if not refused:
        return EXIT_OK
    # --apply's refusal (widening, a trust change) is a guardrail; an identity that is
    # somebody's already is an error.
    return EXIT_GUARDRAIL if any(a.manifest for a in refused) else EXIT_ERROR


def cmd_audit_verify(args: argparse.Namespace, out: Output) -> int:
    """`audit verify`: check every record of the audit trail (and its head, with --expect-head)."""
    from ..audit import JsonlAuditLog, open_store
    from ..errors import UserError
    config = _config(args)
    store = JsonlAuditLog(Path(args.file)) if args.file else open_store(config, _seam(config))
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
    """`schema`: print the manifest JSON Schema for editors. Its template names include the
    config's templates (the config ``validate`` would read), so the editor accepts what
    ``validate`` accepts."""
    from ..config import load_config
    from ..schema import manifest_schema
    from ..templates import load_templates
    config = load_config(args.config)
    templates = load_templates(config.template_dirs(), config.catalog_extra())
    print(json.dumps(manifest_schema(templates), indent=2), file=out.out)
    return EXIT_OK


def cmd_inventory(args: argparse.Namespace, out: Output) -> int:
    """`inventory`: every identity of ours in the targets, with keys and state."""
    from ..inventory import inventory_report, render_inventory
    config = _config(args)
    shard = _shard(args)
    seam = _seam(config)
    report = inventory_report(args.paths, config, seam, provider=args.provider, targets=args.target,
                              shard=shard)
    out.text(render_inventory(report.rows))
    if shard is not None:
        out.text(f"shard {shard.index}/{shard.count}: {len(report.scopes.read)} target(s) read")
    out.document(report.as_json(seam.stats.total))
    return EXIT_OK


def _shard(args: argparse.Namespace) -> Shard | None:
    """``--shard I/N`` as a Shard (a UserError for another form), or None."""
    from ..targets import Shard
    text = getattr(args, "shard", None)
    return Shard.parse(text) if text else None


def cmd_discover(args: argparse.Namespace, out: Output) -> int:
    """`discover`: every non-human identity of the targets, judged; read-only. Exit 0 when
    it ran (findings are data), 2 with --fail-on when a finding is that severe, 1 when a
    target could not be read (after reporting the others)."""
    from ..clouds import Clouds
    from ..discover.workflow import discover
    from ..errors import UserError
    from ..targets import read_scopes
    if args.output == "html" and not args.out and is_terminal(out.out):
        raise UserError("an HTML page is not for a terminal: pass --out report.html (or pipe "
                        "the output to a file)")
    config = _config(args)
    _clock_notice(out)
    seam = _seam(config)
    clouds = Clouds(config, seam)
    shard = _shard(args)
    scopes = read_scopes(config, clouds, provider=args.provider, targets=args.target, shard=shard)
    report = discover(config, clouds, scopes.ordered(), service_linked=args.service_linked,
                      shard=None if shard is None else (shard.index, shard.count))
    from ..discover.document import to_document, to_json_text
    from ..discover.render import render_csv, render_table
    if args.output == "json":
        text = to_json_text(report) + "\n"
    elif args.output == "csv":
        text = render_csv(report)
    elif args.output == "html":
        from ..discover.html import render
        text = render(to_document(report))
    else:
        text = render_table(report) + "\n"
    if args.out:
        _write_output(Path(args.out), text)
        out.note(f"wrote {len(report.identities)} identities ({args.output}) to {args.out}")
    elif args.output == "table":
        out.text(text.rstrip("\n"))
    else:
        out.out.write(text)
        out.out.flush()
    for t in report.failed:
        out.note(f"error: {t.provider} {t.target} could not be read: {t.error}")
    if report.failed:
        return EXIT_ERROR
    if args.fail_on and report.any_at_least(args.fail_on):
        out.note(f"findings of severity {args.fail_on} or worse: exit 2 (--fail-on {args.fail_on})")
        return EXIT_CHANGES
    return EXIT_OK


def _write_output(path: Path, text: str) -> None:
    """Write a report file whole (a reader never sees half of one)."""
    from ..errors import UserError
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}; check the folder exists and "
                        "is writable") from None


def cmd_report_merge(args: argparse.Namespace, out: Output) -> int:
    """`report merge`: the shards of a discover run as one document, HTML page or table;
    those of an inventory run as one document or table."""
    from ..discover.document import from_document
    from ..discover.merge import INVENTORY, merge
    from ..discover.render import render_table
    from ..errors import UserError
    from ..jsontext import dumps_indented
    document = merge(args.files)
    if document["kind"] == INVENTORY and args.output != "json":
        if args.output == "html":
            raise UserError("the HTML page is discover's report; an inventory merges to --output json "
                            "or --output table (nothing was written)")
        from ..inventory import render_inventory, rows_from_document
        text = render_inventory(rows_from_document(document)) + "\n"
    elif args.output == "html":
        if not args.out and is_terminal(out.out):
            raise UserError("the HTML report is a page for a browser, not text for a terminal; "
                            "nothing was written: pass --out report.html (or redirect it to a file)")
        from ..discover.html import render
        text = render(document)
    elif args.output == "table":
        text = render_table(from_document(document)) + "\n"
    else:
        text = dumps_indented(document) + "\n"
    if not args.out:
        out.out.write(text)
        return EXIT_OK
    _write_output(Path(args.out), text)
    out.note(f"wrote {args.out}: {len(document['identities'])} identities in {len(document['targets'])} "
             f"target(s), merged from {len(args.files)} file(s)")
    return EXIT_OK


def cmd_cleanup(args: argparse.Namespace, out: Output) -> int:
    """`cleanup`: judge leavers; with --apply, quarantine, transfer and delete."""
    from ..api import cleanup
    from ..cleanup.workflow import render_report
    config = _config(args)
    _clock_notice(out)
    seam = _seam(config)
    report = cleanup(args.paths, config, seam=seam, apply=args.apply, max_actions=args.max_actions,
                     provider=args.provider, targets=args.target, progress=Progress("cleaning up"),
                     shard=_shard(args),
                     delete_with_local_audit=args.delete_with_local_audit)
    out.text(render_report(report))
    out.document(report.as_json())
    if report.applied and not report.ok:
        return EXIT_ERROR
    # A held deletion waits for a person (a durable sink, or the flag): pending, like any action.
    if args.detailed_exitcode and not report.applied and (report.actions or report.held):
        return EXIT_CHANGES
    return EXIT_OK


def cmd_attest(args: argparse.Namespace, out: Output) -> int:
    """`attest`: record an owner's confirmation of each named workload (signed, in the audit trail)."""
    from ..api import attest
    config = _config(args)
    _clock_notice(out)
    result = attest(args.workloads, args.by, config, note=args.note, seam=_seam(config))
    for a in result.attestations:
        out.text(one_line(f"attested {a.workload} ({a.provider}:{a.target} {a.identity}, owner "
                          f"{a.owner}) by {a.by}" + (f": {a.note}" if a.note else "")))
    out.text(f"Recorded {len(result.attestations)} attestation(s) in {result.where}; "
             "`workload-ids review` shows them with their next due date.")
    out.document(result.as_json())
    return EXIT_OK


def cmd_review(args: argparse.Namespace, out: Output) -> int:
    """`review`: per owner, each workload's last attestation, due date and state."""
    from ..api import review
    from ..review import render_markdown, render_text
    if args.output == "html" and is_terminal(out.out):
        from ..errors import UserError
        raise UserError("an HTML page is not for a terminal: redirect the output to a file "
                        "(workload-ids review --output html PATHS > review.html)")
    config = _config(args)
    _clock_notice(out)
    report = review(args.paths, config, seam=_seam(config))
    if args.diff_out:
        from ..review_usage import write_patches
        for written in write_patches(report.patches, Path(args.diff_out)):
            out.note(f"wrote {written}")
    if args.output == "markdown":
        out.text(render_markdown(report).rstrip("\n"))
    elif args.output == "html":
        from ..review_html import render as render_html
        out.out.write(render_html(report.as_json()))
        return EXIT_OK
    else:
        out.text(render_text(report))
    out.document(report.as_json())
    return EXIT_OK


def cmd_restore(args: argparse.Namespace, out: Output) -> int:
    """`restore`: recreate an identity from its restore bundle in the audit trail."""
    from ..api import restore
    config = _config(args)
    seam = _seam(config)
    restored = restore(args.identity, config, target=args.target, issue_key=args.issue_key, seam=seam)
    result, key_report = restored.identity, restored.key
    out.text(f"Restored {result.kind} {result.identity} ({result.workload}) in {result.target}:")
    for step in result.steps:
        out.text(f"    {step}")
    if key_report is not None:
        for action in key_report.actions:
            out.text(f"    {action}")
        if key_report.error:
            out.note(f"error: issuing a new key: {key_report.error}")
    for note in result.notes:
        out.text(f"note: {note}")
    out.document({**result.as_json(), "key": key_report.as_json() if key_report else None,
                  "apiCalls": seam.stats.total})
    return EXIT_ERROR if key_report is not None and key_report.error else EXIT_OK


def cmd_bootstrap(args: argparse.Namespace, out: Output) -> int:
    """`bootstrap`: the deployer permissions to grant (with --apply, the signing and audit keys)."""
    from ..bootstrap.command import bootstrap
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
    """`demo`: the guided tour over local AWS, GCP and Azure emulators."""
    from ..sandbox.demo import run_demo
    return run_demo(out)


def cmd_sandbox(args: argparse.Namespace, out: Output) -> int:
    """`sandbox`: run the emulators and write a config that points at them."""
    from ..sandbox.commands import run_sandbox
    return run_sandbox(port=args.port, config_out=args.config_out, out=out, verbose=args.verbose,
                       with_existing=args.with_existing)
