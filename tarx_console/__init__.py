"""The TARX terminal console and the `tarx` command line."""
