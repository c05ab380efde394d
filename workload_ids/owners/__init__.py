"""Owner directories: who owns what, and whether they are still here. Found by name."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import Config
    from .interface import OwnerDirectory


def open_directory(config: Config) -> OwnerDirectory | None:
    """The directory the config names, or None when owner checks are off. Paths in the
    config (``owners.path``, ``owners.caBundle``) are relative to the config file."""
    owners = config.data.owners
    if owners is None:
        return None
    if owners.source == "file":
        from .file import FileDirectory
        assert owners.path is not None
        return FileDirectory.load(config.base / owners.path)
    from .scim import ScimDirectory
    return ScimDirectory.from_config(owners, config.base)
