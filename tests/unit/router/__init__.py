"""Unit tests of the router (no network)."""
