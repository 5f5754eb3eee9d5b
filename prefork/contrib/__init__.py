"""Integrations with frameworks; each imports its framework, nothing else does."""
