"""Runnable examples of the durable SDK; run them from the repository root, e.g.
`python -m examples.data_processing --help` (see examples/README.md)."""
