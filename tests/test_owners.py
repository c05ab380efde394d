"""Owner directories: the file directory (YAML and CSV), the SCIM directory against a real
SCIM 2.0 server on loopback (scim2-server), ``owner_status`` over both, and
``open_directory`` from a ``workload-ids.yaml``."""

from __future__ import annotations

import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.paths import EXAMPLES
from support.scim_server import (
    RawTcpServer,
    ScimServer,
    canned,
    closed_port,
    rewrite_json,
    rewrite_query,
    self_signed_tls,
)

from workload_ids.cli import exit_code
from workload_ids.config import OwnersConfig, load_config
from workload_ids.errors import InputErrors, Position, UserError, WorkloadIdsError
from workload_ids.owners import open_directory
from workload_ids.owners.file import FileDirectory
from workload_ids.owners.interface import MAX_SUCCESSION, Owner, OwnerStatus, owner_status
from workload_ids.owners.scim import PAGE, DirectoryUnavailable, ScimDirectory

TOKEN_ENV = "WORKLOAD_IDS_TEST_SCIM_TOKEN"


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def gone(owner_id: str, reason: str, successor: str | None = None) -> OwnerStatus:
    return OwnerStatus(owner_id, True, reason, successor)


def here(owner_id: str) -> OwnerStatus:
    return OwnerStatus(owner_id, False, "active", None)


# --- the file directory -------------------------------------------------------------------

BRIEF_YAML = """\
    owners:
      - id: team-payments
        kind: group
        active: true
        members: [alice, bob]
        successor: team-platform   # optional: who inherits this owner's workloads
      - id: alice
        kind: person
        active: false
    """


def test_yaml_file_in_the_documented_form(tmp_path: Path) -> None:
    path = write(tmp_path / "owners.yaml", BRIEF_YAML)
    directory = FileDirectory.load(path)
    assert (directory.name, directory.path) == ("file", str(path))
    assert directory.owners(["team-payments", "alice", "bob", "team-platform"]) == {
        "team-payments": Owner("team-payments", "group", True, ("alice", "bob"), "team-platform"),
        "alice": Owner("alice", "person", False),
        "bob": None,
        "team-platform": None,
    }
    team = directory.owners(["team-payments"])["team-payments"]
    assert team is not None
    assert directory.members(team) == {"alice": Owner("alice", "person", False), "bob": None}
    # alice is inactive and bob unknown: the group has no active member; its successor is
    # not in the directory, so nobody inherits.
    assert owner_status(directory, ["team-payments", "alice", "bob"]) == {
        "alice": gone("alice", "person alice is inactive"),
        "bob": gone("bob", "bob is not in the owner directory"),
        "team-payments": gone("team-payments", "group team-payments has no active member"),
    }


CHAIN_YAML = """\
    owners:
      - {id: alice, kind: person, active: true}
      - {id: bob, kind: person, active: false, successor: alice}
      - {id: team-live, kind: group, active: true, members: [bob, alice]}
      - {id: team-closed, kind: group, active: false, members: [alice], successor: team-live}
      - {id: team-old, kind: group, active: true, members: [bob, nobody], successor: team-mid}
      - {id: team-mid, kind: group, active: false, successor: team-new}
      - {id: team-new, kind: group, active: true, members: [alice]}
      - {id: team-hollow, kind: group, active: true, members: [], successor: bob}
      - {id: cyc-a, kind: person, active: false, successor: cyc-b}
      - {id: cyc-b, kind: person, active: false, successor: cyc-a}
      - {id: selfish, kind: person, active: false, successor: selfish}
      - {id: dangling, kind: person, active: false, successor: nobody}
      - {id: long-0, kind: person, active: false, successor: long-1}
      - {id: long-1, kind: person, active: false, successor: long-2}
      - {id: long-2, kind: person, active: false, successor: long-3}
      - {id: long-3, kind: person, active: false, successor: long-4}
      - {id: long-4, kind: person, active: false, successor: long-5}
      - {id: long-5, kind: person, active: true}
      - {id: longer-0, kind: person, active: false, successor: long-0}
    """


def test_file_owner_status_reasons_and_successor_chains(tmp_path: Path) -> None:
    directory = FileDirectory.load(write(tmp_path / "owners.yaml", CHAIN_YAML))
    ids = ["alice", "bob", "team-live", "team-closed", "team-old", "team-hollow", "cyc-a", "selfish",
           "dangling", "long-0", "longer-0", "ghost"]
    assert MAX_SUCCESSION == 5
    assert owner_status(directory, ids) == {
        "alice": here("alice"),
        "bob": gone("bob", "person bob is inactive", "alice"),
        "team-live": here("team-live"),  # one active member is enough
        "team-closed": gone("team-closed", "group team-closed is inactive", "team-live"),
        # team-mid is itself gone (inactive): the chain goes on to team-new.
        "team-old": gone("team-old", "group team-old has no active member", "team-new"),
        # bob (gone) -> alice.
        "team-hollow": gone("team-hollow", "group team-hollow has no active member", "alice"),
        "cyc-a": gone("cyc-a", "person cyc-a is inactive"),
        "selfish": gone("selfish", "person selfish is inactive"),
        "dangling": gone("dangling", "person dangling is inactive"),
        # Five steps (long-1 .. long-5) are followed, a sixth is not.
        "long-0": gone("long-0", "person long-0 is inactive", "long-5"),
        "longer-0": gone("longer-0", "person longer-0 is inactive"),
        "ghost": gone("ghost", "ghost is not in the owner directory"),
    }


class CountingFileDirectory(FileDirectory):
    """The file directory, counting how often group members are asked for."""

    member_calls: list[str]

    def members(self, group: Owner) -> dict[str, Owner | None]:
        self.member_calls.append(group.id)
        return super().members(group)


def test_a_successor_cycle_is_walked_once(tmp_path: Path) -> None:
    path = write(tmp_path / "owners.yaml", """\
        owners:
          - {id: bob, kind: person, active: false}
          - {id: g1, kind: group, active: true, members: [bob], successor: g2}
          - {id: g2, kind: group, active: true, members: [bob], successor: g1}
        """)
    loaded = FileDirectory.load(path)
    directory = CountingFileDirectory(loaded._owners, loaded.path)
    directory.member_calls = []
    assert owner_status(directory, ["g1"]) == {"g1": gone("g1", "group g1 has no active member")}
    # g1 judged, then g2; back at g1 the walk stops (not after MAX_SUCCESSION steps).
    assert directory.member_calls == ["g1", "g2"]


def test_csv_file(tmp_path: Path) -> None:
    path = tmp_path / "owners.csv"
    # A byte order mark (spreadsheets write one), a blank line, quoted cells, members split
    # by semicolons or spaces, yes/no and 1/0 for active, spaces around cells.
    path.write_bytes(
        b"\xef\xbb\xbfid,kind,active,members,successor\n"
        b"team-payments,group,true,alice;bob,team-platform\n"
        b"\n"
        b"team-platform,group,yes,\"carol dave\",\n"
        b"alice,person,false,,\n"
        b" carol , person , 1 ,,\n"
        b"dave,person,0,,carol\n")
    directory = FileDirectory.load(path)
    assert directory.owners(["team-payments", "team-platform", "alice", "carol", "dave", "bob"]) == {
        "team-payments": Owner("team-payments", "group", True, ("alice", "bob"), "team-platform"),
        "team-platform": Owner("team-platform", "group", True, ("carol", "dave")),
        "alice": Owner("alice", "person", False),
        "carol": Owner("carol", "person", True),
        "dave": Owner("dave", "person", False, (), "carol"),
        "bob": None,
    }
    assert owner_status(directory, ["team-payments", "dave"]) == {
        "team-payments": gone("team-payments", "group team-payments has no active member",
                              "team-platform"),
        "dave": gone("dave", "person dave is inactive", "carol"),
    }


def test_csv_file_with_only_the_required_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "OWNERS.CSV", "kind,id,active\nperson,alice,TRUE\ngroup,team-a,false\n")
    directory = FileDirectory.load(path)
    assert directory.owners(["alice", "team-a"]) == {
        "alice": Owner("alice", "person", True), "team-a": Owner("team-a", "group", False)}


def test_the_bundled_example_owners_are_all_active() -> None:
    directory = FileDirectory.load(EXAMPLES / "owners.yaml")
    ids = ["team-payments", "team-platform", "team-data", "alice", "bob", "carol", "dave"]
    assert owner_status(directory, ids) == {i: here(i) for i in ids}


BROKEN_FILES = [
    pytest.param("owners.yaml", "owners:\n  - id: [alice\n",
                 ["{p}:3:1: invalid YAML: did not find expected ',' or ']' (while parsing a flow "
                  "sequence at line 2, column 9)"], id="yaml-syntax"),
    pytest.param("owners.yaml", "owners:\n  - {id: a, kind: person, active: true}\n"
                                "  - {id: a, kind: person, active: true}\n",
                 ["{p}:3:10: owner 'a' is listed twice (first at line 2)"], id="yaml-duplicate-id"),
    pytest.param("owners.yaml", "owners:\n- id: x\n  kind: person\n  active: true\n  sucessor: y\n",
                 ["{p}:5:3: unknown field 'sucessor'; did you mean 'successor'? (allowed here: id, "
                  "kind, active, members, successor)"], id="yaml-unknown-field"),
    pytest.param("owners.yaml", "owner:\n  - {id: x, kind: person, active: true}\n",
                 # One mistake, one message: no "missing required field 'owners'" beside it.
                 ["{p}:1:1: unknown field 'owner'; did you mean 'owners'? (allowed here: owners)"],
                 id="yaml-unknown-top-field"),
    pytest.param("owners.yaml", "owners:\n  - id: team-a\n    kind: team\n    active: maybe\n"
                                "    members: alice\n  - id: 42\n    kind: person\n    active: true\n"
                                "  - {id: b, active: true}\n",
                 ["{p}:3:11: 'kind' must be one of 'person' or 'group', not 'team'",
                  "{p}:4:13: 'active' must be true or false, not 'maybe'",
                  "{p}:5:14: 'members' must be a list, not str",
                  "{p}:6:9: 'id' must be a string, not int (quote numbers, e.g. \"123456789012\")",
                  "{p}:9:5: missing required field 'kind'"], id="yaml-wrong-types"),
    pytest.param("owners.yaml", "owners:\n  - {id: a, kind: person, active: true}\n"
                                "  - {id: b, kind: person, active: 7}\n"
                                "  - {id: a, kind: group, active: true}\n",
                 ["{p}:3:35: 'active' must be true or false, not 7",
                  "{p}:4:10: owner 'a' is listed twice (first at line 2)"], id="yaml-every-problem-at-once"),
    pytest.param("owners.yaml", "owners:\n  - {id: a, kind: person, active: true, members: [b]}\n",
                 ["{p}:2:50: person 'a' cannot have members; make it a group"], id="yaml-person-members"),
    pytest.param("owners.yaml", "- {id: a, kind: person, active: true}\n",
                 ["{p}:1:1: an owners file holds one mapping with an 'owners' list"], id="yaml-list"),
    pytest.param("owners.yaml", "", ["{p}:1:1: an owners file holds one mapping with an 'owners' list"],
                 id="yaml-empty"),
    pytest.param("owners.yaml", "owners: []\n---\nowners: []\n",
                 ["{p}:3:1: an owners file holds one mapping with an 'owners' list"], id="yaml-two-docs"),
    pytest.param("owners.csv", "", ["{p}:1:1: the owners file is empty: write a header row "
                                    "(id,kind,active,members,successor) and one row per owner"],
                 id="csv-empty"),
    pytest.param("owners.csv", "id,kind,members\nalice,person,\n",
                 ["{p}:1:1: the CSV header must have id, kind, active (and optionally members, "
                  "successor); missing: active"], id="csv-missing-column"),
    pytest.param("owners.csv", "id,kind,active,sucessor,id\n",
                 ["{p}:1:16: unknown column 'sucessor'; did you mean 'successor'? (allowed: id, kind, "
                  "active, members, successor)",
                  "{p}:1:25: column 'id' appears twice in the header"], id="csv-bad-header"),
    pytest.param("owners.csv", "id,kind,active,members\n\nalice,person,maybe\n"
                               "bob,team,true\n,person,true\nc,person,true,,extra\n"
                               "d,person,true,x\n",
                 ["{p}:3:14: 'active' must be true or false, not 'maybe'",
                  "{p}:4:5: 'kind' must be one of 'person' or 'group', not 'team'",
                  "{p}:5:1: 'id' is too short: write at least 1 characters",
                  "{p}:6:16: this row has 5 cells but the header names 4 columns",
                  "{p}:7:15: person 'd' cannot have members; make it a group"], id="csv-bad-rows"),
    pytest.param("owners.csv", "id,kind,active\nalice,person,true\n\"multi\nline\",person,true\n"
                               "alice,person,false\n",
                 ["{p}:5:1: owner 'alice' is listed twice (first at line 2)"], id="csv-duplicate-id"),
    pytest.param("owners.csv", "id,kind,active\n\"two\nlines\",\"a\"\"b\",true\n",
                 ["{p}:3:8: 'kind' must be one of 'person' or 'group', not 'a\"b'"],
                 id="csv-quoted-cells-across-lines"),
]


@pytest.mark.parametrize(("name", "text", "expected"), BROKEN_FILES)
def test_broken_owners_file(tmp_path: Path, name: str, text: str, expected: list[str]) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputErrors) as caught:
        FileDirectory.load(path)
    assert caught.value.diagnostics().splitlines() == [e.format(p=path) for e in expected]
    assert all(isinstance(d.position, Position) and d.position.path == str(path)
               for d in caught.value.items)
    assert exit_code(caught.value) == 1


def test_unreadable_owners_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(InputErrors) as caught:
        FileDirectory.load(missing)
    assert caught.value.diagnostics() == (
        f"{missing}:1:1: cannot read the owners file: [Errno 2] No such file or directory: "
        f"'{missing}'; fix owners.path in the config")
    binary = tmp_path / "owners.csv"
    binary.write_bytes(b"id,kind,active\n\xff\xfe,person,true\n")
    with pytest.raises(InputErrors) as caught:
        FileDirectory.load(binary)
    assert caught.value.diagnostics() == (
        f"{binary}:1:1: cannot read the owners file: 'utf-8' codec can't decode byte 0xff in position "
        "15: invalid start byte; fix owners.path in the config")


# --- a real SCIM 2.0 server ---------------------------------------------------------------

class Seeded:
    """The SCIM server and the ids of what was seeded into it."""

    def __init__(self, server: ScimServer) -> None:
        self.server = server
        self.ids: dict[str, str] = {}

    def user(self, name: str, active: bool | None = True, manager: str | None = None) -> str:
        self.ids[name] = self.server.user(name, active, self.ids[manager] if manager else None)
        return self.ids[name]

    def group(self, name: str, members: list[str]) -> str:
        return self.server.group(name, [self.ids.get(m, m) for m in members])


BULK = [f"bulk-{i:02d}" for i in range(25)]


@pytest.fixture(scope="module")
def scim() -> Iterator[Seeded]:
    server = ScimServer()
    seeded = Seeded(server)
    try:
        seeded.user("alice")
        seeded.user("bob", active=False)
        seeded.user("carol")
        seeded.user("noflag", active=None)  # no "active" attribute at all
        seeded.user("quitter", active=False, manager="alice")
        seeded.user("heir")
        seeded.user("gone-boss", active=False, manager="heir")
        seeded.user("leaver", active=False, manager="gone-boss")
        seeded.user("cyc-b", active=False)
        seeded.user("cyc-a", active=False, manager="cyc-b")
        server.set_manager(seeded.ids["cyc-b"], seeded.ids["cyc-a"])
        seeded.ids["deleted"] = "0" * 32
        seeded.user("orphan", active=False, manager="deleted")
        seeded.user('o"brien\\x')
        seeded.user("team-shadow")  # a user whose name is also a group's
        seeded.group("team-payments", ["alice", "bob"])
        seeded.group("team-dormant", ["bob"])
        seeded.group("team-empty", [])
        seeded.group("team-ghosts", ["deleted"])
        seeded.group("team-split", ["bob"])
        seeded.group("team-split", ["carol"])  # displayName is not unique in SCIM
        seeded.group('ops "core" \\ infra', ["carol"])
        seeded.group("team-shadow", ["bob"])
        seeded.group("team-case", ["bob"])
        seeded.group("TEAM-CASE", ["carol"])
        for i, name in enumerate(BULK):
            seeded.user(name, active=i == len(BULK) - 1)
        seeded.group("team-bulk", BULK)
        yield seeded
    finally:
        server.stop()


def directory(scim: Seeded, **kwargs: Any) -> ScimDirectory:
    return ScimDirectory(scim.server.url, scim.server.token, 5, **kwargs)


def test_the_test_server_enforces_the_bearer_token(scim: Seeded) -> None:
    """Without this, the token tests below would prove nothing."""
    request = urllib.request.Request(f"{scim.server.url}/Users")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)  # nosec B310 - loopback test server
    assert caught.value.code == 401
    assert caught.value.headers["WWW-Authenticate"].startswith("Bearer")


def test_scim_groups_by_display_name_people_by_user_name(scim: Seeded) -> None:
    ids = scim.ids
    d = directory(scim)
    assert (d.name, d.page_size, PAGE) == ("scim", 100, 100)
    assert d.owners(["team-payments", "alice", "bob", "noflag", "quitter", "nobody"]) == {
        "team-payments": Owner("team-payments", "group", True, (ids["alice"], ids["bob"])),
        "alice": Owner("alice", "person", True),
        "bob": Owner("bob", "person", False),
        "noflag": Owner("noflag", "person", True),
        "quitter": Owner("quitter", "person", False, (), "alice"),
        "nobody": None,
    }
    # One search of groups, one of users, one for the managers of the users found.
    assert d.requests == 3
    team = Owner("team-payments", "group", True, (ids["alice"], ids["bob"]))
    assert d.members(team) == {ids["alice"]: Owner("alice", "person", True),
                               ids["bob"]: Owner("bob", "person", False)}
    assert d.requests == 3  # both were seen above: members are cached by id
    # A group wins over a user of the same name.
    assert d.owners(["team-shadow"]) == {
        "team-shadow": Owner("team-shadow", "group", True, (ids["bob"],))}


def test_scim_names_match_as_the_service_matches_them(scim: Seeded) -> None:
    """userName and displayName are case-insensitive in SCIM: the service's match counts,
    and the record carries the directory's spelling."""
    d = directory(scim)
    assert d.owners(["ALICE", "Team-Payments"]) == {
        "ALICE": Owner("alice", "person", True),
        "Team-Payments": Owner("team-payments", "group", True, (scim.ids["alice"], scim.ids["bob"])),
    }
    assert owner_status(d, ["ALICE", "Team-Payments"]) == {
        "ALICE": here("ALICE"), "Team-Payments": here("Team-Payments")}
    # An exact spelling wins over other cases; without one, every case-insensitive match
    # counts (sorted by displayName).
    bob, carol = scim.ids["bob"], scim.ids["carol"]
    assert d.owners(["team-case", "TEAM-CASE", "Team-Case"]) == {
        "team-case": Owner("team-case", "group", True, (bob,)),
        "TEAM-CASE": Owner("TEAM-CASE", "group", True, (carol,)),
        "Team-Case": Owner("TEAM-CASE", "group", True, (carol, bob)),
    }
    assert owner_status(d, ["team-case", "Team-Case"]) == {
        "team-case": gone("team-case", "group team-case has no active member"),
        "Team-Case": here("Team-Case"),
    }


def test_scim_owner_status(scim: Seeded) -> None:
    d = directory(scim)
    ids = ["team-payments", "team-dormant", "team-empty", "team-ghosts", "team-split", "alice",
           "bob", "noflag", "quitter", "leaver", "cyc-a", "orphan", "nobody"]
    assert owner_status(d, ids) == {
        "team-payments": here("team-payments"),
        "team-dormant": gone("team-dormant", "group team-dormant has no active member"),
        "team-empty": gone("team-empty", "group team-empty has no active member"),
        "team-ghosts": gone("team-ghosts", "group team-ghosts has no active member"),
        # Two groups share the name; carol, in the second, is active.
        "team-split": here("team-split"),
        "alice": here("alice"),
        "bob": gone("bob", "person bob is inactive"),
        "noflag": here("noflag"),
        "quitter": gone("quitter", "person quitter is inactive", "alice"),
        # leaver -> gone-boss (inactive, skipped) -> heir.
        "leaver": gone("leaver", "person leaver is inactive", "heir"),
        "cyc-a": gone("cyc-a", "person cyc-a is inactive"),
        "orphan": gone("orphan", "person orphan is inactive"),  # manager id not in the directory
        "nobody": gone("nobody", "nobody is not in the owner directory"),
    }


def test_scim_filters_quote_names(scim: Seeded) -> None:
    d = directory(scim)
    injection = 'nobody" or userName pr or userName eq "x'
    assert d.owners(['o"brien\\x', 'ops "core" \\ infra', injection, 'o"brien\\', "o\"brien\\\\x"]) == {
        'o"brien\\x': Owner('o"brien\\x', "person", True),
        'ops "core" \\ infra': Owner('ops "core" \\ infra', "group", True, (scim.ids["carol"],)),
        injection: None,
        'o"brien\\': None,
        "o\"brien\\\\x": None,
    }


def test_scim_paging_and_chunked_filters(scim: Seeded) -> None:
    expected = {name: Owner(name, "person", name == BULK[-1]) for name in BULK}
    d = directory(scim, page_size=3)
    assert d.owners(BULK) == expected
    # Groups: one request per chunk of 20 names (none match). Users: 20 names in pages
    # of 3 (7 requests), then 5 (2 requests).
    assert d.requests == 2 + 7 + 2
    whole = directory(scim)
    assert whole.owners(BULK) == expected
    assert whole.requests == 4

    fresh = directory(scim, page_size=3)
    bulk = fresh.owners(["team-bulk"])["team-bulk"]
    assert bulk is not None and len(bulk.members) == 25
    members = fresh.members(bulk)
    assert members == {scim.ids[name]: expected[name] for name in BULK}
    assert fresh.requests == 1 + 7 + 2
    # Only the last user is active, so the group is here only if every page was read.
    assert owner_status(directory(scim, page_size=3), ["team-bulk"]) == {"team-bulk": here("team-bulk")}
    with pytest.raises(ValueError, match="page_size must be at least 1, not 0"):
        directory(scim, page_size=0)


def test_scim_paging_without_total_results(scim: Seeded) -> None:
    """A provider that leaves out totalResults is read until a short page, never just once."""
    def drop_total(body: dict[str, Any]) -> None:
        body.pop("totalResults", None)
    url = scim.server.serve(rewrite_json(scim.server.app, drop_total))
    d = ScimDirectory(url, scim.server.token, 5, page_size=3)
    names = BULK[:6]
    assert d.owners(names) == {name: Owner(name, "person", False) for name in names}
    # Groups: one empty page. Users: 3 + 3, then an empty page ends it.
    assert d.requests == 1 + 3


def test_scim_provider_that_ignores_start_index(scim: Seeded) -> None:
    url = scim.server.serve(rewrite_query(scim.server.app, lambda query: query.pop("startIndex", None)))
    d = ScimDirectory(url, scim.server.token, 5, page_size=3)
    with pytest.raises(DirectoryUnavailable) as caught:
        d.owners(BULK[:4])
    assert str(caught.value) == (f"SCIM directory {url} answered GET /Users with the same resources "
                                 "again at startIndex=4: it does not page as RFC 7644 says")


def test_scim_wrong_token(scim: Seeded) -> None:
    d = ScimDirectory(scim.server.url, "not-the-token", 5)
    with pytest.raises(DirectoryUnavailable) as caught:
        owner_status(d, ["alice"])
    assert str(caught.value) == (
        f"SCIM directory {scim.server.url} answered HTTP 401 (Unauthorized) to GET /Groups: "
        "Authorization failure. The authorization header is invalid or missing")
    assert "not-the-token" not in caught.value.diagnostics()


def test_directory_unavailable_is_a_system_error_with_advice() -> None:
    error = DirectoryUnavailable("SCIM directory http://x is unreachable: boom")
    assert exit_code(error) == 1
    assert isinstance(error, WorkloadIdsError) and not isinstance(error, UserError)
    assert error.diagnostics() == (
        "SCIM directory http://x is unreachable: boom\n"
        "  what to do: check owners.url, the token in the variable named by owners.tokenEnv, and "
        "that the directory is up; nothing was changed, because an unreachable directory never "
        "counts as an owner being gone")


def unavailable(url: str, timeout: float = 5) -> str:
    """owner_status against ``url`` must raise DirectoryUnavailable: its message."""
    d = ScimDirectory(url, "token", timeout)
    with pytest.raises(DirectoryUnavailable) as caught:
        owner_status(d, ["alice", "team-payments"])
    return str(caught.value)


def test_scim_unreachable_server() -> None:
    url = f"http://127.0.0.1:{closed_port()}/v2"
    assert unavailable(url) == f"SCIM directory {url} is unreachable: [Errno 111] Connection refused"


def test_scim_server_that_never_answers() -> None:
    server = RawTcpServer(None)
    try:
        url = f"http://127.0.0.1:{server.port}/v2"
        assert unavailable(url, timeout=0.3) == f"SCIM directory {url} is unreachable: timed out"
    finally:
        server.stop()


def test_scim_server_that_does_not_speak_http() -> None:
    server = RawTcpServer(b"HELLO\r\n\r\n")
    try:
        url = f"http://127.0.0.1:{server.port}/v2"
        assert unavailable(url) == (f"SCIM directory {url} did not answer GET /Groups with valid HTTP: "
                                    "BadStatusLine: HELLO")
    finally:
        server.stop()


def test_scim_server_error_500(scim: Seeded) -> None:
    """The real server with its storage down answers 500 with a SCIM error."""
    d = directory(scim)
    scim.server.storage.broken = True
    try:
        with pytest.raises(DirectoryUnavailable) as caught:
            owner_status(d, ["alice"])
    finally:
        scim.server.storage.broken = False
    assert str(caught.value) == (f"SCIM directory {scim.server.url} answered HTTP 500 (Internal Server "
                                 "Error) to GET /Groups: Internal server error")
    assert owner_status(d, ["alice"]) == {"alice": here("alice")}


@pytest.mark.parametrize(("status", "body", "content_type", "message"), [
    ("502 Bad Gateway", b"<html>upstream down</html>", "text/html",
     "answered HTTP 502 (Bad Gateway) to GET /Groups"),
    ("200 OK", b"<html>Sign in</html>", "text/html",
     "did not answer GET /Groups with JSON (Content-Type: text/html); is owners.url the SCIM base URL?"),
    ("200 OK", b"[]", "application/scim+json",
     "answered GET /Groups with JSON that is not a SCIM response object"),
    ("200 OK", b'{"totalResults": "many", "Resources": []}', "application/scim+json",
     "answered GET /Groups with something that is not a SCIM list response"),
    ("200 OK", b'{"totalResults": 1, "Resources": ["alice"]}', "application/scim+json",
     "answered GET /Groups with something that is not a SCIM list response"),
])
def test_scim_server_with_a_bad_answer(scim: Seeded, status: str, body: bytes, content_type: str,
                                       message: str) -> None:
    url = scim.server.serve(canned(status, body, content_type))
    assert unavailable(url) == f"SCIM directory {url} {message}"


def test_scim_redirects_are_not_followed(scim: Seeded) -> None:
    """urllib would send the Authorization header along to another host."""
    seen: list[Any] = []
    elsewhere = scim.server.serve(canned("200 OK", b'{"totalResults": 0}', "application/json", seen=seen))
    url = scim.server.serve(canned("302 Found", b"", headers=[("Location", f"{elsewhere}/Groups")]))
    assert unavailable(url) == (
        f"SCIM directory {url} answered HTTP 302 (Found) to GET /Groups: redirects are not followed, "
        "so the bearer token only goes to owners.url; set owners.url to the SCIM base URL itself "
        f"(redirected to {elsewhere}/Groups)")
    assert seen == []


def test_scim_over_tls_with_a_ca_bundle(scim: Seeded, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "certs").mkdir()
    tls, ca_path = self_signed_tls(str(tmp_path / "certs"))
    url = scim.server.serve(scim.server.app, tls=tls)
    assert url.startswith("https://127.0.0.1:")
    message = unavailable(url)  # not trusted without the bundle
    assert message.startswith(f"SCIM directory {url} is unreachable: [SSL: CERTIFICATE_VERIFY_FAILED]")
    # caBundle is relative to the config file, not to the working directory.
    config = write(tmp_path / "workload-ids.yaml", f"""\
        owners:
          source: scim
          url: {url}
          tokenEnv: {TOKEN_ENV}
          caBundle: certs/ca.pem
        """)
    monkeypatch.setenv(TOKEN_ENV, scim.server.token)
    d = open_directory(load_config(config))
    assert isinstance(d, ScimDirectory)
    assert owner_status(d, ["alice"]) == {"alice": here("alice")}
    assert Path(ca_path) == tmp_path / "certs" / "ca.pem"


def test_open_directory_scim_from_config(scim: Seeded, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(tmp_path / "workload-ids.yaml", f"""\
        owners:
          source: scim
          url: {scim.server.url}/
          allowInsecureLoopback: true
          tokenEnv: {TOKEN_ENV}
          timeout: 3s
        """)
    # A token read from a file usually ends with a newline.
    monkeypatch.setenv(TOKEN_ENV, scim.server.token + "\n")
    d = open_directory(load_config(config))
    assert isinstance(d, ScimDirectory)
    assert (d.base, d.timeout, d.page_size) == (scim.server.url, 3.0, 100)
    assert owner_status(d, ["quitter", "team-payments"]) == {
        "quitter": gone("quitter", "person quitter is inactive", "alice"),
        "team-payments": here("team-payments"),
    }


def test_open_directory_file_from_config(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    write(tmp_path / "dir" / "owners.yaml", BRIEF_YAML)
    config = write(tmp_path / "workload-ids.yaml", "owners:\n  source: file\n  path: dir/owners.yaml\n")
    d = open_directory(load_config(config))  # the working directory is elsewhere (conftest)
    assert isinstance(d, FileDirectory)
    assert d.path == str(tmp_path / "dir" / "owners.yaml")
    assert d.owners(["alice"]) == {"alice": Owner("alice", "person", False)}
    assert open_directory(load_config(write(tmp_path / "none.yaml", "templates: []\n"))) is None


def test_open_directory_with_a_missing_ca_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(tmp_path / "workload-ids.yaml", f"""\
        owners: {{source: scim, url: "https://127.0.0.1:1/v2", tokenEnv: {TOKEN_ENV}, caBundle: ca.pem}}
        """)
    monkeypatch.setenv(TOKEN_ENV, "token")
    with pytest.raises(UserError) as caught:
        open_directory(load_config(config))
    assert str(caught.value) == (
        f"cannot use the CA bundle {tmp_path / 'ca.pem'}: [Errno 2] No such file or directory; fix "
        "owners.caBundle (a PEM file, relative to the config file)")


@pytest.mark.parametrize(("value", "message"), [
    (None, f"owners.tokenEnv names {TOKEN_ENV}, but that variable is not set; export the SCIM bearer "
           "token in it"),
    (" \n", f"owners.tokenEnv names {TOKEN_ENV}, but that variable is empty; export the SCIM bearer "
            "token in it"),
    ("abc\ndef", f"the variable {TOKEN_ENV} holds a line break or another control character; export "
                 "the SCIM bearer token alone, on one line"),
])
def test_scim_token_variable_problems(monkeypatch: pytest.MonkeyPatch, value: str | None,
                                      message: str) -> None:
    if value is None:
        monkeypatch.delenv(TOKEN_ENV, raising=False)
    else:
        monkeypatch.setenv(TOKEN_ENV, value)
    config = OwnersConfig(source="scim", url="https://scim.example.com/v2", tokenEnv=TOKEN_ENV)
    with pytest.raises(UserError) as caught:
        ScimDirectory.from_config(config)
    assert str(caught.value) == message
    assert exit_code(caught.value) == 1


@pytest.mark.parametrize(("url", "timeout", "message"), [
    ("http://127.0.0.1:99999/v2", "10s",
     "owners.url http://127.0.0.1:99999/v2 is not a valid URL: Port out of range 0-65535"),
    ("http:///v2", "10s", "owners.url http:///v2 is not a valid URL: write the SCIM base URL, e.g. "
                          "https://idp.example.com/scim/v2"),
    ("http://idp/scim v2", "10s", "owners.url http://idp/scim v2 is not a valid URL: write the SCIM "
                                  "base URL, e.g. https://idp.example.com/scim/v2"),
    ("https://scim.example.com/v2", "0s", "owners.timeout is 0s: give the SCIM directory at least 1s"),
])
def test_scim_config_problems(monkeypatch: pytest.MonkeyPatch, url: str, timeout: str, message: str) -> None:
    monkeypatch.setenv(TOKEN_ENV, "token")
    config = OwnersConfig(source="scim", url=url, tokenEnv=TOKEN_ENV, timeout=timeout)
    with pytest.raises(UserError) as caught:
        ScimDirectory.from_config(config)
    assert str(caught.value) == message


@pytest.mark.parametrize("token", ["", "abc\r\ndef", "tab\there"])
def test_scim_directory_refuses_a_token_that_cannot_be_a_header(token: str) -> None:
    with pytest.raises(UserError) as caught:
        ScimDirectory("https://scim.example.com/v2", token, 5)
    assert str(caught.value) == ("the SCIM bearer token is empty or holds a line break or another "
                                 "control character; export the token alone, on one line")
