"""Calls to other clusters: the pooled client and its status table, the circuit breaker,
remote permission checks (docs/protocol.md).
"""
