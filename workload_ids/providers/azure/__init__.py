"""The Azure backend: managed identities, custom role definitions, role assignments, federated credentials."""
