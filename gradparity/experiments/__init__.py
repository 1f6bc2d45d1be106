"""Experiments: built-in and TOML suites, the runner, tables and reports."""
