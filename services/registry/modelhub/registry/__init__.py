"""Registry service: the control plane and single source of truth."""
