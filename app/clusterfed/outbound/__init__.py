"""Calls to other clusters: the pooled client and its status table, the circuit breaker,
remote permission checks (SPEC 3.2, 3.3).
"""
