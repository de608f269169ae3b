"""The ``clusterfed`` command line."""
