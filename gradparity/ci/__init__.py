"""CI regression gate: baselines, the assertion for tests, and the pytest plugin."""
