"""The self-test: known backprop bugs injected into a copy of the reference, and the run
that shows every check can fail."""
