"""Build contexts for quick builds: a local folder, a git repository or a remote tarball.

The CLI packs a local folder (honouring `.dockerignore`); the daemon materialises every kind
into the run's own folder. Everything that reaches the daemon is untrusted.

What a context string names is `basewatch.context_spec`. Import the module you need
(`archive`, `dockerignore`, `fetch`, `checkout`): the CLI loads only the first two, and starts
faster for it.
"""
