"""The `booth` command line: one entry point to every component."""
