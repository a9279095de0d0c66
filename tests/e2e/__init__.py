"""End-to-end tests with real clients other than the SDK: the letta-code CLI."""
