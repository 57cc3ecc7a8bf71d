"""HTTP routes, one module per API dialect."""
