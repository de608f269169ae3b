"""Federated routing: FederatedRouter, forwarding, merged lists and their cursor, +K@ manifest
hints (docs/protocol.md#federated-routing).
"""
