"""gradparity: framework-parity validation of neural-network gradients."""
