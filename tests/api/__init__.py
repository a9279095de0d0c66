"""End-to-end tests: a real `kelpie serve` process driven by the official `letta-client` SDK."""
