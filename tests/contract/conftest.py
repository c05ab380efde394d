"""The contract suites run against every provider: ``cloud`` (AWS on moto, GCP and Azure
on our emulators) and ``folder`` (two workloads' manifests and a config reaching that
cloud) are defined in support/contract.py, beside the helpers the suites share."""

from support.attachments import att
from support.contract import cloud, folder

__all__ = ["att", "cloud", "folder"]
