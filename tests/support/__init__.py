"""Helpers shared by the tests: keys and sign-in, compute API and nodes, console drivers."""
