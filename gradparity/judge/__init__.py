"""Judging a backend against the reference: metrics, tolerances and policies, verdicts,
layer-own rows."""
