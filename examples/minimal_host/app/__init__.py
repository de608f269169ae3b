"""A minimal host API server with clusterfed mounted (its package is `app`, like most)."""
