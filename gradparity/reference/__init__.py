"""The NumPy reference: activations, heads and backprop in the seed document's conventions."""
