"""The objects feature of the example server: groups, collections, links, their permissions
and listing.
"""
