"""The example cluster API server that hosts the federation middleware."""
