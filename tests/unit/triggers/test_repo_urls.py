"""Every URL of one repository (clone, SSH, web; as providers send them and as tasks name
them) reduces to one key; other repositories' do not."""
from __future__ import annotations

import pytest

from basewatch.triggers.repo_urls import repository_key, repository_keys


@pytest.mark.parametrize("url", [
    "https://github.com/Codertocat/Hello-World.git",
    "https://github.com/Codertocat/Hello-World",
    "https://github.com/codertocat/hello-world/",
    "HTTPS://GitHub.com:443/Codertocat/Hello-World.git/",
    "https://user:token@github.com/Codertocat/Hello-World.git",
    "http://github.com:80/Codertocat/Hello-World",
    "git@github.com:Codertocat/Hello-World.git",
    "github.com:Codertocat/Hello-World",
    "ssh://git@github.com/Codertocat/Hello-World.git",
    "ssh://git@github.com:22/Codertocat/Hello-World.git",
    "ssh://git@github.com:2222/Codertocat/Hello-World.git",  # an ssh port names no web host
    "git://github.com/Codertocat/Hello-World.git",
    "git://github.com:9418/Codertocat/Hello-World.git",
    "https://github.com/Codertocat/Hello-World.git#main:web",
])
def test_every_url_of_one_repository_is_one_key(url):
    assert repository_key(url) == "github.com/codertocat/hello-world"


@pytest.mark.parametrize("url, key", [
    ("http://localhost:3000/gitea/webhooks.git", "localhost:3000/gitea/webhooks"),
    ("ssh://gitea@localhost:2222/gitea/webhooks.git", "localhost/gitea/webhooks"),
    ("http://127.0.0.1:8080/app.git", "127.0.0.1:8080/app"),
    ("https://dev.azure.com/fabrikam-fiber-inc/DefaultCollection/_git/Fabrikam-Fiber-Git",
     "dev.azure.com/fabrikam-fiber-inc/defaultcollection/_git/fabrikam-fiber-git"),
    ("https://fabrikam@dev.azure.com/fabrikam/Project/_git/Repo",
     "dev.azure.com/fabrikam/project/_git/repo"),
    ("git@ssh.dev.azure.com:v3/fabrikam/Project/Repo",
     "dev.azure.com/fabrikam/project/_git/repo"),
    ("file:///srv/git/App.git", "file:///srv/git/App"),
    ("file:///srv/git/App/", "file:///srv/git/App"),
])
def test_keys_keep_what_tells_repositories_apart(url, key):
    assert repository_key(url) == key


@pytest.mark.parametrize("url", ["", "   ", "/srv/app", "./app", "https://", "ftp://h/x.git",
                                 "https://github.com/", "https://host:notaport/x.git",
                                 "file://"])
def test_what_names_no_repository_has_no_key(url):
    assert repository_key(url) is None


def test_other_repositories_differ():
    assert len(repository_keys(["https://github.com/org/app", "https://github.com/org/app2",
                                "https://gitlab.com/org/app", "http://127.0.0.1:8080/app",
                                "http://127.0.0.1:8081/app"])) == 5
