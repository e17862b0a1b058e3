"""An ScmApi that may reach the stand-ins on 127.0.0.1 (listed, as git_hosts lists a server of
one's own) and backs off in milliseconds."""
from __future__ import annotations

import pytest

from basewatch.netpolicy import HostPolicy
from basewatch.scm.api import ScmApi


@pytest.fixture
async def api():
    async with ScmApi(HostPolicy(("127.0.0.1",), setting="git_hosts"), backoff=0.01) as client:
        yield client
