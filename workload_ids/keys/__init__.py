"""Key mode: issue, rotate, retire and delete the keys of workloads that cannot federate.

    checks.py     static checks of a key-mode manifest's secret and rotation settings
    journal.py    the marks a rotation keeps in the secret store's metadata
    lifecycle.py  one workload's keys, advanced by whatever is due (the rules below)
    fleet.py      ``rotate`` and ``recover`` over many workloads, and over every target

This package file imports nothing, so a static check (``validate``) that needs
:mod:`.checks` does not load the workflow.

A workflow over two interfaces, the provider's credential operations and a secret store,
so GCP (10 keys per service account) and Azure (service principal secrets) reuse it.

The rules, in the order a run applies them:

1. **Recover.** A journal entry is written in the secret store's metadata *before* a key
   is created. If one is found, the previous run died mid-rotation: a key on the identity
   that is not in the store and was created after the entry existed only in the cloud,
   so it is deleted; a key that reached the store is verified. Then the entry is cleared.
2. **Refuse foreign keys.** A key on one of our identities that the store does not hold
   was not issued by us: the workload is refused with what to do, never touched.
3. **Issue** a key when none is current, or the current one is older than ``maxAge``
   (``--now``: at once): journal, create, store as the new current version, verify with
   consecutive successful sign-ins inside a time budget, clear the journal.
4. **Retire** the previous key once the overlap has passed, or once the new key is seen
   in use (``retireOnUse``), whichever comes first (``--now``: at once): mark, deactivate.
5. **Delete** a retired key after the grace period.

A run that is about to change anything holds the workload's lock (:mod:`.lease`) and
reads the state again under it, so two runs never change one workload's keys at once
and recovery never removes the key of a run still in progress. A run with nothing due
takes no lock and makes no extra call.

The only key ever deactivated is a previous key while a verified current key exists, so
a workload is never left without a working key; and no key exists only in the cloud once
a run (or ``recover``) has passed over it.
"""
