"""Helpers the test suite and the benchmarks share: manifest builders and fixtures per
cloud, running the CLI in process, the fault matrix, fuzz inputs and local stand-ins (a
SCIM server, Azurite). Test modules import from here, never from each other.

Modules inside this package import each other relatively, so it works both as ``support``
(tests/ is on pytest's path through pyproject's ``pythonpath``) and as ``tests.support`` (the
benchmarks, with the repository root on the path)."""
