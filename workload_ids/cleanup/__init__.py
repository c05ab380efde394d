"""Leavers and orphans: judge every identity we manage, then quarantine, transfer,
release, delete after a grace period, and restore from the audit log's bundles."""
