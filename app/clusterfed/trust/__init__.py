"""Trust: accepting foreign tokens (SPEC 3.2, 4, 5): the middleware, the validator and its
caches, the mirroring rules and the store protocol.
"""
