"""The MLflow ``odin`` flavour."""
