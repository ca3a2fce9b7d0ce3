"""Importable losses and gradients for the command-line tests (``tests/test_cli.py``)."""
