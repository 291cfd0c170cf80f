"""Test plugins for Baton's e2e tests."""
