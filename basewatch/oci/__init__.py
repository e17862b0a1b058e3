"""The OCI floor: image references, platforms, the registry client and what it needs.

Imports nothing from basewatch but `errors`, `textfiles`, `netpolicy` and its own modules, so
every layer above (config, graph, watcher, builder) can use it.
"""
