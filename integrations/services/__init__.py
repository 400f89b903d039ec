"""Integrations' services, one module per stage (see integrations/README.md); import them by name."""
