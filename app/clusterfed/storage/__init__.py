"""clusterfed's own tables, their store, the adapter to a host's users table, and the
migrations runner (docs/mounting.md).
"""
