"""Benchmarks: each module has ``main()`` and prints ratios measured in one run."""
