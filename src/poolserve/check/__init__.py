"""Layer 5, proving a deployment works: the endpoint client, output verification, reference outputs, probes."""
