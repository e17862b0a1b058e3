"""Build contexts for quick builds: a local folder, a git repository or a remote tarball.

The CLI packs a local folder (honouring `.dockerignore`); the daemon materialises every kind
into the run's own folder. Everything that reaches the daemon is untrusted.
"""
from basewatch.builder.contexts.archive import extract_context, pack_local_context
from basewatch.builder.contexts.fetch import fetch_git_context, fetch_tarball_context
from basewatch.builder.contexts.spec import (ACCEPTED, ContextError, ContextSpec, context_dir,
                                             display_url, parse_context)

__all__ = ["ACCEPTED", "ContextError", "ContextSpec", "context_dir", "display_url",
           "extract_context", "fetch_git_context", "fetch_tarball_context",
           "pack_local_context", "parse_context"]
