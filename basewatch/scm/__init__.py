"""Git hosting providers' REST APIs: registering a repository's webhook and posting a run's
state to a commit, on GitHub, GitLab and Gitea/Forgejo. Edges around the triggers: nothing
here creates runs, and nothing here knows of tasks."""
