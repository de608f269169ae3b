"""Federated routing (SPEC 3.6): FederatedRouter, forwarding, merged lists and their
cursor, +K@ manifest hints.
"""
