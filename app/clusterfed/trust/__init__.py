"""Trust: accepting foreign tokens (docs/protocol.md): the middleware, the validator and its
caches, the mirroring rules and the store protocol.
"""
