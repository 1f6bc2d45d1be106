"""Search for disagreements: property-based generation of specs and data that stress the
numerics, shrunk to a minimal case and written as a reproducible ``[[case]]`` suite.

`recipe` turns a handful of drawn choices into a `Spec` with every array explicit (NumPy
only); `strategies` draws those choices with hypothesis; `search` runs the property (the
verdict) and collects the shrunk counterexamples; `faulty` holds backends with injected
faults, on which the search proves itself. hypothesis is imported only by `strategies` and
`search`, so the rest loads without the ``fuzz`` extra.
"""
