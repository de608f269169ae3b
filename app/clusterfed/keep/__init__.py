"""Keep: block locators, their permission signatures, and manifests; blocks across clusters.

``locators``, ``signing``, ``manifests`` and ``signer`` are pure rules, so a locator is
parsed and signed one way only. ``remote_blocks`` (with ``block_response``) reads and
writes blocks another cluster holds, and ``copying`` sends a collection's blocks along
when it is saved on another cluster: the federation's I/O.
"""
