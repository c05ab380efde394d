"""Static checks of a key-mode workload's secret name and rotation settings (part of
``validate``: no cloud, no workflow)."""

from __future__ import annotations

import re
from datetime import timedelta

from ..compile import PLACEHOLDER
from ..config import Config
from ..durations import format_duration
from ..errors import Diagnostic, Position
from ..model import CompiledWorkload

_SECRET_NAME = re.compile(r"[A-Za-z0-9/_+=.@-]{1,512}")


def key_mode_checks(workload: CompiledWorkload, config: Config) -> list[Diagnostic]:
    """Static checks of a key-mode workload's rotation and secret settings."""
    if not workload.key_mode:
        return []
    lw = workload.source
    out: list[Diagnostic] = []
    pattern = config.credentials.secretName
    known = {"environment", "name", "owner", "provider", "target"}
    unknown = sorted({m.group(1) for m in PLACEHOLDER.finditer(pattern)} - known)

    def where() -> Position:
        return config.position("credentials.secretName") or lw.position("spec", "credentials")
    if unknown:
        out.append(Diagnostic(where(), f"secret name pattern {pattern!r} does not resolve: unknown "
                                     f"placeholder(s) {', '.join('{' + u + '}' for u in unknown)}; "
                                     f"use {', '.join('{' + k + '}' for k in sorted(known))}"))
    else:
        name = workload.secret_name
        if not _SECRET_NAME.fullmatch(name):
            out.append(Diagnostic(where(), f"secret name {name!r} (from {pattern!r}) is not a valid "
                                         "secret name: letters, digits and /_+=.@- only"))
    policy = workload.rotation_policy
    assert policy is not None  # compiled for every key-mode workload

    def rotation_at() -> Position:  # for a message only: it parses the manifest again
        return lw.position("spec", "credentials", "rotation") if \
            "rotation" in lw.declared else lw.position("spec", "credentials", "mode")
    if policy.overlap >= policy.max_age:
        out.append(Diagnostic(rotation_at(), f"overlap ({format_duration(policy.overlap)}) must be "
                                           f"shorter than maxAge ({format_duration(policy.max_age)})"))
    elif policy.overlap + policy.grace >= policy.max_age:
        out.append(Diagnostic(rotation_at(), f"overlap + grace ({format_duration(policy.overlap)} + "
                                           f"{format_duration(policy.grace)}) must be shorter than "
                                           f"maxAge ({format_duration(policy.max_age)}), or the old "
                                           "key would still exist when the next rotation is due"))
    if policy.max_age < timedelta(hours=1):
        out.append(Diagnostic(rotation_at(), "maxAge must be at least 1h"))
    return out


__all__ = ["key_mode_checks"]
