"""The users-and-tokens feature of the example server: who is calling, local users and
tokens, the validation endpoints (docs/protocol.md#validation-endpoints).
"""
