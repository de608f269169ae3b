"""The example server's block store and block server (Keep), as Arvados's keepstore.

``volumes.py`` is the one small interface a volume offers, ``directory.py`` the Directory
driver, ``store.py`` the block store over the configured volumes (md5 checked on write and
on read), ``errors.py`` every status the block server answers, ``blocks.py`` the routes at
the server's root, ``services.py`` how clients find them.
"""
