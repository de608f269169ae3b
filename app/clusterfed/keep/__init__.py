"""Keep: block locators, their permission signatures, and manifests (pure functions).

Nothing here does I/O: the example server's block store and the federation's remote
block reader both build on these rules, so a locator is parsed and signed one way only.
"""
