"""Test-only helpers (not part of the package)."""
