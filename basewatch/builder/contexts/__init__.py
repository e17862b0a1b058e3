"""Build contexts for quick builds: a local folder, a git repository or a remote tarball.

The CLI packs a local folder (honouring `.dockerignore`); the daemon materialises every kind
into the run's own folder. Everything that reaches the daemon is untrusted.

Import the module you need (`spec`, `archive`, `dockerignore`, `fetch`): the CLI loads only the
first three, and starts faster for it.
"""
