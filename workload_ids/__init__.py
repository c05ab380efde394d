"""workload_ids: least-privilege cloud identities for services, from typed manifests.

The Python API mirrors the CLI (see :mod:`workload_ids.api`)::

    from workload_ids import api
    config = api.load_config("workload-ids.yaml")
    checked = api.validate(["manifests/"], config)
    plan = api.plan(checked, config)
    result = api.apply(plan, config)

``import workload_ids`` itself stays cheap: it imports nothing else.
"""

__version__ = "0.1.0"
