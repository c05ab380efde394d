"""``workload-ids discover``: every non-human identity in the configured targets, ours or
not, judged the same way on every cloud (findings with their OWASP NHI Top 10 category),
reported as a table, JSON, CSV or one self-contained HTML page.

The providers report facts (``workload_ids.discovered``); this package judges and renders.
"""
