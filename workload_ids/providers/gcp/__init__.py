"""The GCP backend: service accounts, custom roles, conditional and resource bindings."""
