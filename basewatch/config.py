"""The configuration file, validated at the edge so the core only ever sees valid objects."""
from __future__ import annotations

import difflib
import math
import os
import re
import typing
import urllib.parse
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Literal, Mapping
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from basewatch import tasks
from basewatch.config_listen import DEFAULT_LISTEN, split_listen
from basewatch.context_spec import (
    ContextError,
    checked_branch,
    checked_dockerfile_name,
    parse_context,
    url_has_credentials,
)
from basewatch.cron import CronSchedule, ScheduleError
from basewatch.errors import ConfigError, ImageReferenceError
from basewatch.oci.platforms import Platform
from basewatch.oci.reference import ImageReference, is_registry_host
from basewatch.scm.hosts import GitHostSettings, checked_base_url, checked_git_host
from basewatch.textfiles import read_text_file

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?$")
CREDENTIALS_IN_URL = ("credentials in a context URL would be stored, shown by the API and "
                      "written into the checkout: remove them, and give them for the host in "
                      "the config's git_credentials (password_env)")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")  # fullmatch: a variable's name
_TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")  # fullmatch: no trailing newline


def _checked_name(value: str, what: str) -> str:
    """A task's or a timer's name: one rule for both."""
    if not _TASK_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a {what} name: use up to 100 letters, digits, "
                         "'.', '_' and '-', starting with a letter or digit")
    return value
# Longer than any timeout, interval or retention anyone means (100 years), short enough that
# the event loop's timers and SQLite's timestamps take it.
MAX_DURATION_SECONDS = 36500 * 86400
MAX_TIMERS_PER_TASK = 100


def parse_duration(value: object) -> float:
    """Seconds from `90`, `30s`, `5m`, `1h30m`, `30d`, `1d12h`."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m or 1h")
    if isinstance(value, (int, float)):
        seconds = value  # an int stays exact: float() of a huge one overflows
    elif isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str) and (match := _DURATION.match(value.strip())) and value.strip():
        if any(len(g or "") > 12 for g in match.groups()):  # int() of 4,300 digits refuses
            raise ValueError(f"a duration must be at most {MAX_DURATION_SECONDS // 86400}d")
        days, hours, minutes, secs = (int(g or 0) for g in match.groups())
        seconds = days * 86400 + hours * 3600 + minutes * 60 + secs  # exact: no float overflow
    else:
        raise ValueError(f"{value!r} is not a duration such as 30s, 5m or 1h")
    if isinstance(seconds, float) and not math.isfinite(seconds):
        raise ValueError("a duration must be a finite number of seconds")
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"a duration must be at most {MAX_DURATION_SECONDS // 86400}d")
    seconds = float(seconds)
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


def parse_optional_duration(value: object) -> float:
    """Like parse_duration, but zero (`0`, `0s`) is allowed: the feature is off."""
    if value in (0, "0", "0s") and not isinstance(value, bool):
        return 0.0
    return parse_duration(value)


Duration = Annotated[float, BeforeValidator(parse_duration)]
OptionalDuration = Annotated[float, BeforeValidator(parse_optional_duration)]


def _build_arg_value(value: object) -> object:
    # YAML reads VERSION: 1 as an int; build args are always strings to Docker. Floats and
    # booleans are refused: YAML has already changed them (20.10 -> 20.1, yes -> True).
    if isinstance(value, (bool, float)):
        raise ValueError(f"YAML reads this as the {type(value).__name__} {value!r}; quote it")
    return "" if value is None else str(value) if isinstance(value, int) else value


BuildArgValue = Annotated[str, BeforeValidator(_build_arg_value)]


def _dockerfile_name(value: str) -> str:
    try:
        return checked_dockerfile_name(value)
    except ContextError as exc:
        raise ValueError(str(exc)) from None


# The Dockerfile, relative to the context: what it resolves to is checked once the context is
# on disk (basewatch.builder.contexts.checkout.dockerfile_in).
DockerfileName = Annotated[str, AfterValidator(_dockerfile_name)]


def _as_list(value: object) -> object:
    return [value] if isinstance(value, str) else value


def parse_platforms(value: object) -> list[Platform]:
    """`linux/amd64`, `linux/amd64,linux/arm64` or a list of them: each parsed, none twice,
    none Windows; raise ValueError with the reason otherwise."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise ValueError("give a platform such as linux/amd64, or a list of them")
    platforms: list[Platform] = []
    for item in items:
        platform = Platform.parse(item)
        if platform.os == "windows":
            raise ValueError("windows images cannot be built on a Linux engine")
        if platform in platforms:
            raise ValueError(f"the platform {platform} is given twice")
        platforms.append(platform)
    if not platforms:
        raise ValueError("give at least one platform, e.g. linux/amd64")
    return platforms


def _platform_texts(value: object) -> list[str]:
    return [str(p) for p in parse_platforms(value)]


def _as_text(value: object) -> object:
    return os.fspath(value) if isinstance(value, os.PathLike) else value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegistrySettings(_Strict):
    """How to reach one registry, keyed by the host written in image references."""

    host: str
    endpoint: str | None = None
    # False when the endpoint is a name only basewatch resolves (basewatch in a container,
    # the engine on the host): the engine then pulls bases by the reference's own host.
    engine_pulls_through_endpoint: bool = True
    poll_interval: Duration | None = None
    max_requests_per_second: float | None = Field(None, gt=0)
    username: str | None = None
    password: str | None = None
    password_env: str | None = None

    @field_validator("endpoint")
    @classmethod
    def _endpoint_is_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+/?$", value):
            raise ValueError(f"{value!r} is not an http(s)://host[:port] URL")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _one_password_source(self) -> "RegistrySettings":
        if self.password is not None and self.password_env is not None:
            raise ValueError("give password or password_env, not both")
        return self


class GitCredentialSettings(_Strict):
    """What the daemon answers an http(s) git server's password prompt with, by host."""

    host: str
    username: str
    password: str | None = Field(None, repr=False)
    password_env: str | None = None

    @field_validator("host")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        return checked_git_host(value)

    @field_validator("username", "password")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and ("\n" in value or "\x00" in value):
            raise ValueError("must be on one line")  # git's credential protocol is line based
        return value

    @model_validator(mode="after")
    def _one_password_source(self) -> "GitCredentialSettings":
        if (self.password is None) == (self.password_env is None):
            raise ValueError("give password or password_env (one of them)")
        return self


class BaseImageTrigger(_Strict):
    enabled: bool = True
    type: Literal["runtime", "all"] = "runtime"


class TimerSettings(_Strict):
    """A cron schedule that runs the task: five fields, UTC, Sunday as 0 (as ACR reads it)."""

    name: str
    schedule: str
    enabled: bool = True

    @field_validator("name")
    @classmethod
    def _timer_name(cls, value: str) -> str:
        return _checked_name(value, "timer")

    @field_validator("schedule")
    @classmethod
    def _five_field_cron(cls, value: str) -> str:
        try:
            schedule = CronSchedule.parse(value)
            # Valid syntax that names no real day (30 February) would never fire: refused
            # here rather than kept as a timer that silently does nothing.
            schedule.next_after(datetime.now(timezone.utc))
        except ScheduleError as exc:
            raise ValueError(str(exc)) from None
        except ValueError:
            raise ValueError(f"schedule {value!r} names no date that exists, so it would "
                             "never fire") from None
        return schedule.expression


def _unique_timer_names(timers: list[TimerSettings]) -> list[TimerSettings]:
    seen: set[str] = set()
    for timer in timers:
        if timer.name in seen:
            raise ValueError(f"the timer name {timer.name!r} is given twice: each timer of a "
                             "task needs its own name")
        seen.add(timer.name)
    return timers
def _branch(value: str) -> str:
    try:
        return checked_branch(value)
    except ContextError as exc:
        raise ValueError(str(exc)) from None


Branch = Annotated[str, AfterValidator(_branch)]


def _env_name(value: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not the name of an environment variable (letters, "
                         "digits and '_', not starting with a digit): give the variable's "
                         "name, never the secret itself")
    return value


EnvName = Annotated[str, AfterValidator(_env_name)]


class CommitTrigger(_Strict):
    """A commit pushed to one of `branches` runs the task (git contexts only)."""

    enabled: bool = True
    # None given: the context's own branch (its #ref), else the repository's default branch.
    branches: Annotated[list[Branch], BeforeValidator(_as_list)] = Field(default_factory=list)

    @field_validator("branches")
    @classmethod
    def _each_once(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class PullRequestTrigger(_Strict):
    """A pull request opened or updated against one of the commit trigger's branches runs
    the task on its head."""

    enabled: bool = False
    allow_forks: bool = False


class TaskSettings(_Strict):
    name: str
    context: Annotated[str, BeforeValidator(_as_text), Field(
        description="a folder on the daemon's host, or a git URL (https://host/org/repo.git"
                    "#ref:folder) or tarball URL, fetched afresh for every run")]
    file: DockerfileName = "Dockerfile"
    # A Dockerfile task's tags; a task file (`file: acr-task.yaml`) names its own in its steps.
    image: Annotated[list[str], BeforeValidator(_as_list)] = Field(default_factory=list,
                                                                   validate_default=True)
    build_args: dict[str, BuildArgValue] = Field(default_factory=dict)
    target: str | None = None
    # One platform or several (a list, or one string with commas), normalised as Docker does.
    platform: Annotated[list[str], BeforeValidator(_platform_texts)] = ["linux/amd64"]
    base_image_trigger: BaseImageTrigger = BaseImageTrigger()
    push: bool = True
    timeout: Duration = 3600.0
    # Bounded: every timer is read and checked each minute.
    timers: Annotated[list[TimerSettings], AfterValidator(_unique_timer_names)] = Field(
        default_factory=list, max_length=MAX_TIMERS_PER_TASK)
    commit_trigger: CommitTrigger = CommitTrigger()
    pull_request_trigger: PullRequestTrigger = PullRequestTrigger()
    # Names of environment variables holding the secrets, never the secrets themselves.
    webhook_secret_env: EnvName | None = None
    git_access_token_env: EnvName | None = None
    report_status: bool = False  # post each run's state to its commit (needs the token)

    @model_validator(mode="after")
    def _status_needs_a_token(self) -> "TaskSettings":
        if self.report_status and self.git_access_token_env is None:
            raise ValueError("report_status needs git_access_token_env: the commit status is "
                             "posted through the provider's API with that token")
        return self

    @field_validator("image")
    @classmethod
    def _images_for_dockerfiles(cls, value: list[str], info: ValidationInfo) -> list[str]:
        file = info.data.get("file")
        if file is not None and tasks.is_task_file(file):
            if value:
                raise ValueError(f"{file} is a task file, which names its images in its "
                                 "steps (build -t, push): remove image")
        elif not value:
            raise ValueError("List should have at least 1 item: the tags a Dockerfile task "
                             "pushes")
        return value

    @field_validator("name")
    @classmethod
    def _name_is_valid(cls, value: str) -> str:
        return _checked_name(value, "task")

    @field_validator("context")
    @classmethod
    def _context_is_known(cls, value: str) -> str:
        try:
            parse_context(value)
        except ContextError as exc:
            raise ValueError(str(exc)) from None
        return value

    @property
    def local_context(self) -> bool:
        return parse_context(self.context).kind == "local"

    def to_task(self) -> tasks.Task:
        """The domain's task: what the config file and the API's body both map into."""
        trigger = self.base_image_trigger
        return tasks.Task(name=self.name, context=self.context, images=list(self.image),
                          file=self.file, build_args=dict(self.build_args), target=self.target,
                          platforms=[Platform.parse(p) for p in self.platform],
                          base_image_trigger=tasks.BaseImageTrigger(trigger.enabled,
                                                                    trigger.type),
                          push=self.push, timeout=self.timeout,
                          timers=tuple(tasks.Timer(t.name, t.schedule, t.enabled)
                                       for t in self.timers),
                          commit_trigger=tasks.CommitTrigger(
                              self.commit_trigger.enabled, tuple(self.commit_trigger.branches)),
                          pull_request_trigger=tasks.PullRequestTrigger(
                              self.pull_request_trigger.enabled,
                              self.pull_request_trigger.allow_forks),
                          webhook_secret_env=self.webhook_secret_env,
                          git_access_token_env=self.git_access_token_env,
                          report_status=self.report_status)


def task_fields(task: tasks.Task) -> dict:
    """A task as the config file and the API write it (the inverse of TaskSettings.to_task)."""
    return {"name": task.name, "context": task.context, "file": task.file,
            "image": list(task.images), "build_args": dict(task.build_args),
            "target": task.target, "platform": [str(p) for p in task.platforms],
            "base_image_trigger": {"enabled": task.base_image_trigger.enabled,
                                   "type": task.base_image_trigger.type},
            "push": task.push, "timeout": task.timeout,
            "timers": [timer_fields(t) for t in task.timers],
            "commit_trigger": {"enabled": task.commit_trigger.enabled,
                               "branches": list(task.commit_trigger.branches)},
            "pull_request_trigger": {"enabled": task.pull_request_trigger.enabled,
                                     "allow_forks": task.pull_request_trigger.allow_forks},
            "webhook_secret_env": task.webhook_secret_env,
            "git_access_token_env": task.git_access_token_env,
            "report_status": task.report_status}


def timer_fields(timer: tasks.Timer) -> dict:
    return {"name": timer.name, "schedule": timer.schedule, "enabled": timer.enabled}


class NotificationSettings(_Strict):
    """Registry push notifications: the shared secret registries send, read from the env."""

    token_env: str


_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def checked_engine_host(value: str) -> str:
    """An engine's address as DOCKER_HOST writes it: tcp://host:port, ssh://[user@]host[:port]
    or unix:///path; raise ValueError with the form expected otherwise."""
    parts = urlsplit(value)
    if parts.scheme == "unix":
        if parts.netloc or not parts.path.startswith("/") or parts.query or parts.fragment:
            raise ValueError(f"{value!r} is not unix:///absolute/path/to/docker.sock")
        return value
    if parts.scheme not in ("tcp", "ssh"):
        raise ValueError(f"{value!r} is not tcp://host:port, ssh://user@host or "
                         "unix:///path/to/docker.sock")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{value!r}: the port is not a number from 1 to 65535") from None
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{value!r} is not {parts.scheme}://"
                         f"{'host:port' if parts.scheme == 'tcp' else 'user@host[:port]'}")
    if parts.password is not None:
        raise ValueError(f"{parts.scheme}:// engine address: no password in it; ssh uses "
                         "its keys (~/.ssh, the agent)")
    if parts.scheme == "tcp" and (port is None or parts.username is not None):
        raise ValueError(f"{value!r} is not tcp://host:port (Docker's TLS port is 2376)")
    return value.rstrip("/")


class EngineTLSSettings(_Strict):
    """A tcp:// engine's TLS: the CA its server certificate is checked against, and this
    daemon's client certificate and key (dockerd --tlsverify checks them)."""

    ca: Path  # relative to the config file's folder; the daemon checks they exist as it starts
    cert: Path
    key: Path

    def resolved(self, base: Path) -> "EngineTLSSettings":
        return EngineTLSSettings(ca=base / self.ca, cert=base / self.cert, key=base / self.key)


class EngineSettings(_Strict):
    """One Docker Engine of the build pool."""

    name: str
    host: Annotated[str, AfterValidator(checked_engine_host)]
    tls: EngineTLSSettings | None = None
    max_concurrent_runs: int = Field(2, ge=1, le=256)
    # What it builds (its own platform, and those it emulates); None: whatever a run asks.
    platforms: Annotated[list[str] | None, BeforeValidator(
        lambda v: None if v is None else _platform_texts(v))] = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _checked_name(value, "build engine")

    @model_validator(mode="after")
    def _tls_for_tcp(self) -> "EngineSettings":
        scheme = urlsplit(self.host).scheme
        if self.tls is not None and scheme != "tcp":
            raise ValueError(f"tls: only a tcp:// engine takes it ({scheme}:// is secured "
                             "by " + ("ssh" if scheme == "ssh" else "the socket's permissions")
                             + ")")
        if scheme == "tcp" and self.tls is None \
                and urlsplit(self.host).hostname not in _LOOPBACK_HOSTS:
            raise ValueError("tls: a tcp:// engine off this host needs tls: {ca, cert, key}; "
                             "without them whoever reaches its port is root on its host")
        return self


class LogArchiveSettings(_Strict):
    """Where archived runs' logs are pushed, as OCI artifacts tagged with the run id."""

    repository: str

    @field_validator("repository")
    @classmethod
    def _repository_without_tag(cls, value: str) -> str:
        try:
            ImageReference.parse(value)
        except ImageReferenceError as exc:
            raise ValueError(str(exc)) from None
        if "@" in value or ":" in value.strip().rpartition("/")[2]:
            raise ValueError(f"{value!r} is not a repository without tag or digest, such as "
                             "127.0.0.1:5000/basewatch/run-logs (the run id is the tag)")
        return value.strip()


class DatabaseSettings(_Strict):
    # The variable holding the URL (it carries the password), never the URL itself.
    url_env: EnvName


class ClusterSettings(_Strict):
    """This daemon among several on one PostgreSQL database (docs/scale-out.md)."""

    # How the daemon is shown (runs' `daemon`, /healthz); unique per daemon when set.
    # None: the host's name and the process id.
    name: str | None = None
    # How often it renews its lease, tries for the lead and looks for dead daemons.
    heartbeat_seconds: float = Field(2.0, gt=0, le=60)
    # A daemon silent this long is dead to the others (one whose process is gone is seen at
    # once: its connection's lock is released): its runs fail and are queued again once.
    lease_seconds: float = Field(15.0, gt=0, le=600)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else _checked_name(value, "daemon")

    @model_validator(mode="after")
    def _lease_outlasts_heartbeats(self) -> "ClusterSettings":
        if self.lease_seconds < 3 * self.heartbeat_seconds:
            raise ValueError("lease_seconds must be at least three heartbeat_seconds, so a "
                             "late heartbeat or two does not make a live daemon dead")
        return self


POSTGRES_SCHEMES = {"postgresql", "postgres", "postgresql+asyncpg"}


def database_url(config: "Config", environ: Mapping[str, str] = os.environ) -> str | None:
    """The store's database: a `postgresql+asyncpg://` URL from the variable `database.url_env`
    names; None for SQLite in state_dir. ConfigError, naming the key and never the value (it
    holds a password), for a variable unset or not a PostgreSQL URL."""
    if config.database is None:
        return None
    variable = config.database.url_env
    value = environ.get(variable, "").strip()
    if not value:
        raise ConfigError(f"database.url_env: the environment variable {variable} is not set")
    parts = urllib.parse.urlsplit(value)
    try:
        parts.port  # noqa: B018 (a port that is not a number raises here)
    except ValueError:
        parts = None
    if (parts is None or parts.scheme not in POSTGRES_SCHEMES or not parts.hostname
            or not parts.path.strip("/")):
        raise ConfigError(f"database.url_env: {variable} is not a PostgreSQL URL "
                          "(postgresql://USER:PASSWORD@HOST:5432/DATABASE)")
    return urllib.parse.urlunsplit(parts._replace(scheme="postgresql+asyncpg"))


class Config(_Strict):
    state_dir: Path = Path(".basewatch")
    # Where the store is: None, SQLite in state_dir; else PostgreSQL at the URL the named
    # variable holds (several daemons can share it).
    database: DatabaseSettings | None = None
    # With a PostgreSQL database: this daemon among the others sharing it.
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    listen: str = DEFAULT_LISTEN
    max_concurrent_runs: int = Field(2, ge=1, le=256)
    # Manual runs and quick builds beyond this many queued runs are refused (429).
    max_queued_runs: int = Field(1000, ge=1)
    poll_interval: Duration = 60.0
    settle_window: OptionalDuration = 0.0
    # How often git remotes are asked for the heads of the branches tasks build (0: never).
    git_poll_interval: OptionalDuration = 60.0
    retention: Duration = 30 * 86400.0  # runs and logs older than this are purged, unless archived
    purge_interval: Duration = 86400.0  # how often the retention purge runs
    log_archive: LogArchiveSettings | None = None
    notifications: NotificationSettings | None = None
    api_token_env: str | None = None  # the variable holding the API's bearer token
    max_context_bytes: int = Field(512 * 1024 * 1024, gt=0)  # an upload or tarball, unpacked
    max_log_bytes: int = Field(16 * 1024 * 1024, ge=4096)  # each run's log, then cut
    # The daemon's own log: JSON lines (json), the text line (text), or auto: text on a
    # terminal, JSON lines otherwise (a container, systemd, a pipe).
    log_format: Literal["auto", "json", "text"] = "auto"
    allow_file_contexts: bool = False  # file:// git contexts read the daemon's own disk
    # The one folder under which tasks created through the API may name a local context
    # (None: none may); the config file's own tasks may name any folder.
    local_contexts_root: Path | None = None
    # Hosts that context URLs sent through the API may name (None: any), against fetches of
    # the daemon's neighbours on behalf of whoever holds the API token.
    allowed_context_hosts: list[str] | None = None
    # The network build steps run on: default (the engine's default, never the host's), none,
    # host (every Dockerfile reaches the host's loopback services: a risk) or a network's name.
    build_network: str = "default"
    # Task files' `privileged: true` steps (a container with every capability and the host's
    # devices: root on the engine's host). Refused unless this is set.
    allow_privileged_steps: bool = False
    # Task files' `docker` steps (ACR's alias: a Docker CLI wired to the engine). Whoever holds
    # the engine is root on its host, so they are refused unless this is set.
    allow_engine_access: bool = False
    # Credentials for private http(s) git repositories, by host: never in a context URL,
    # where they would be stored, shown by the API and written into the checkout.
    git_credentials: list[GitCredentialSettings] = Field(default_factory=list)
    # The run's registry ({{.Run.Registry}}, $Registry; where a task file's push puts images
    # that name none). None: the first `registries:` entry's host.
    # (`registry` is the key; the name here leaves `registry(host)` its meaning.)
    registry_host: str | None = Field(None, alias="registry")
    # Images that task files' cmd steps name by a short name (`bash`, `curl`, `docker`...).
    aliases: dict[str, str] = Field(default_factory=dict)
    registries: list[RegistrySettings] = Field(default_factory=list)
    # Git servers of one's own, for the webhooks and commit statuses basewatch sets through
    # their APIs (github.com, gitlab.com and codeberg.org are known without).
    git_hosts: list[GitHostSettings] = Field(default_factory=list)
    # Where git servers and people reach this daemon (https://basewatch.example.com): the
    # webhooks it registers point there, and a commit status links to a run's log there.
    public_url: str | None = None
    # The build engines (None: the local one, DOCKER_HOST, with max_concurrent_runs runs).
    engines: list[EngineSettings] | None = Field(None, min_length=1)
    tasks: list[TaskSettings] = Field(default_factory=list)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        return None if value is None else checked_base_url(
            value, "https://basewatch.example.com")

    @field_validator("registry_host")
    @classmethod
    def _registry_is_a_host(cls, value: str | None) -> str | None:
        if value is not None and not is_registry_host(value):
            raise ValueError(f"{value!r} is not a registry host as image references write it "
                             "(host[:port])")
        return value

    @field_validator("aliases")
    @classmethod
    def _aliases_name_images(cls, value: dict[str, str]) -> dict[str, str]:
        for name, image in value.items():
            if not re.fullmatch(r"[A-Za-z0-9]+", name):
                raise ValueError(f"alias {name!r}: a name is letters and digits, as in task "
                                 "files")
            try:
                ImageReference.parse(image)
            except ImageReferenceError as exc:
                raise ValueError(f"alias {name!r}: {exc}") from None
        return value

    @field_validator("allowed_context_hosts")
    @classmethod
    def _hosts_are_names(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        hosts = [host.strip().lower().strip("[]") for host in value]
        for host in hosts:
            if not re.fullmatch(r"(\*\.)?[a-z0-9]([a-z0-9.-]*[a-z0-9])?|[0-9a-f:]*:[0-9a-f:]*",
                                host):
                raise ValueError(f"{host!r} is not a host name or address, or *.domain for "
                                 "any host under a domain")
        return hosts

    @field_validator("build_network")
    @classmethod
    def _network_is_a_name(cls, value: str) -> str:
        # Docker's own rule for network names; default, none and host are names of that form.
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", value):
            raise ValueError(f"{value!r} is not default, none, host or a Docker network's name")
        return value

    @field_validator("listen")
    @classmethod
    def _listen_is_host_port(cls, value: str) -> str:
        if split_listen(value) is None:
            raise ValueError(f"{value!r} is not host:port")
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> "Config":
        # The message starts with the key path: format_validation_error shows it as such.
        for key, what, names in (("tasks", "task name", [t.name for t in self.tasks]),
                                 ("registries", "registry host",
                                  [r.host for r in self.registries]),
                                 ("git_credentials", "host",
                                  [c.host for c in self.git_credentials]),
                                 ("git_hosts", "host", [h.host for h in self.git_hosts]),
                                 ("engines", "engine name",
                                  [e.name for e in self.engines or ()])):
            seen: set[str] = set()
            for index, name in enumerate(names):
                if name in seen:
                    field = "name" if key in ("tasks", "engines") else "host"
                    raise ValueError(f"{key}[{index}].{field}: duplicate {what}: {name}")
                seen.add(name)
        for index, task in enumerate(self.tasks):
            if url_has_credentials(task.context):
                raise ValueError(f"tasks[{index}].context: {CREDENTIALS_IN_URL}")
        return self

    @property
    def listen_host(self) -> str:
        return split_listen(self.listen)[0]

    @property
    def listen_port(self) -> int:
        return split_listen(self.listen)[1]

    @property
    def run_registry(self) -> str | None:
        """What {{.Run.Registry}} is: `registry`, or the first `registries:` entry's host."""
        return self.registry_host or (self.registries[0].host if self.registries else None)

    def registry(self, host: str) -> RegistrySettings | None:
        return next((r for r in self.registries if r.host == host), None)


def _named_variables(config: Config) -> list[tuple[str, str]]:
    """(where, variable) for every environment variable the config names, where being its
    key path (with the task's name, for a task's)."""
    named = [("api_token_env", config.api_token_env)]
    if config.database is not None:
        named.append(("database.url_env", config.database.url_env))
    if config.notifications is not None:
        named.append(("notifications.token_env", config.notifications.token_env))
    named += [(f"registries[{i}].password_env ({r.host})", r.password_env)
              for i, r in enumerate(config.registries)]
    named += [(f"git_credentials[{i}].password_env ({c.host})", c.password_env)
              for i, c in enumerate(config.git_credentials)]
    for i, task in enumerate(config.tasks):
        named += [(f"tasks[{i}].webhook_secret_env (task {task.name})", task.webhook_secret_env),
                  (f"tasks[{i}].git_access_token_env (task {task.name})",
                   task.git_access_token_env)]
    return [(where, variable) for where, variable in named if variable is not None]


def secret_values(config: Config, environ: Mapping[str, str] = os.environ) -> list[str]:
    """Every secret the config gives or names by variable (tokens, passwords, webhook
    secrets): what the daemon's log masks wherever it appears."""
    inline = [r.password for r in config.registries] + [c.password for c in config.git_credentials]
    named = [environ.get(variable) for _, variable in _named_variables(config)]
    return [value for value in inline + named if value]


def missing_environment(config: Config, environ: Mapping[str, str] = os.environ) -> list[str]:
    """One line per environment variable the config names that is not set (or empty):
    `key.path: the environment variable X is not set`. The daemon refuses to start on any,
    and check-config reports the same lines."""
    return [f"{where}: the environment variable {variable} is not set"
            for where, variable in _named_variables(config) if not environ.get(variable)]


def missing_files(config: Config) -> list[str]:
    """One line per file the config names that is not there (an engine's TLS files): the
    daemon refuses to start on any, and check-config reports the same lines."""
    return [f"engines[{index}].tls.{key}: {path}: no such file"
            for index, engine in enumerate(config.engines or ()) if engine.tls is not None
            for key, path in (("ca", engine.tls.ca), ("cert", engine.tls.cert),
                              ("key", engine.tls.key)) if not path.is_file()]


def _key_path(location: tuple) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def _model_in(annotation: object) -> type[BaseModel] | None:
    """The settings model an annotation holds (`list[TaskSettings]`, `X | None`...), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        if (found := _model_in(argument)) is not None:
            return found
    return None


def _did_you_mean(model: type[BaseModel] | None, location: tuple) -> str:
    """`; did you mean `poll_interval`?` for an unknown key close to one the model at
    `location` (the unknown key's path) takes; nothing when none is close."""
    for part in location[:-1]:
        if model is None:
            return ""
        if isinstance(part, int):
            continue
        field = next((f for name, f in model.model_fields.items()
                      if part in (name, f.alias)), None)
        model = _model_in(field.annotation) if field is not None else None
    if model is None or not location or not isinstance(location[-1], str):
        return ""
    keys = [field.alias or name for name, field in model.model_fields.items()]
    close = difflib.get_close_matches(location[-1], keys, n=1)
    return f"; did you mean `{close[0]}`?" if close else ""


def format_validation_error(source: str, error: ValidationError,
                            model: type[BaseModel] | None = None) -> str:
    """One line per problem: `FILE: key.path: what is wrong`; `model` (what was validated)
    lets an unknown key name the key it is close to."""
    lines = []
    for item in error.errors():
        location = tuple(p for p in item["loc"] if not str(p).startswith("function-"))
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key" + _did_you_mean(model, location)
        if location:
            lines.append(f"{source}: {_key_path(location)}: {message}")
        else:  # model-wide checks name their key path in the message
            lines.append(f"{source}: {message}")
    return "\n".join(lines)


# libyaml's parser when PyYAML was built with it: the pure-Python one takes seconds over a
# config of thousands of tasks, and the daemon reads its config before it can answer /healthz.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _UniqueKeyLoader(_SAFE_LOADER):
    """SafeLoader that refuses a key given twice, where PyYAML would keep the last silently."""

    def construct_mapping(self, node, deep=False):
        keys = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in keys:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice", key_node.start_mark)
            keys.add(key)
        return super().construct_mapping(node, deep=deep)


def _without_tasks(text: str) -> str | None:
    """The YAML document with its top-level `tasks` cut out, read as events (libyaml's
    parser: hundredths of a second over thousands of tasks, where building them takes
    seconds); None when it cannot be cut out cleanly (not one mapping at the top, an alias
    into the tasks...): the caller reads the whole file."""
    events = yaml.events
    kept: list = []
    depth = 0  # collections open around the current event
    at_key = False  # in the top-level mapping, the next node is a key
    skipping = -1  # collections open inside the `tasks` value being cut; -1: not cutting
    try:
        for event in yaml.parse(text, Loader=_SAFE_LOADER):
            opens = isinstance(event, (events.MappingStartEvent, events.SequenceStartEvent))
            closes = isinstance(event, (events.MappingEndEvent, events.SequenceEndEvent))
            if skipping >= 0:
                skipping += opens - closes
                if skipping == 0:  # the value ended (or was one scalar)
                    skipping, at_key = -1, True
                continue
            if depth == 0 and opens and not isinstance(event, events.MappingStartEvent):
                return None
            if depth == 1 and at_key and isinstance(event, events.ScalarEvent) \
                    and event.value == "tasks":
                skipping = 0
                continue
            if depth == 1 and not closes:
                at_key = not at_key  # a node at the top level: a key, then its value
            depth += opens - closes
            if opens and depth == 1:
                at_key = True
            kept.append(event)
        return yaml.emit(kept)
    except yaml.YAMLError:
        return None


def load_settings(path: Path | str) -> Config:
    """The config file's settings, its tasks left out and not even read: what the daemon
    needs to serve at once however many tasks the file has. `load_config` reads them after
    (the daemon, in the background); where they cannot be left out, the whole file is read
    here and its tasks dropped."""
    path = Path(path)
    text = read_text_file(path, "config file", ConfigError)
    settings = _without_tasks(text)
    try:
        config = _parse_config(path, settings if settings is not None else text)
    except ConfigError:
        if settings is None:
            raise
        config = _parse_config(path, text)  # its own words, and its own line numbers
    return config.model_copy(update={"tasks": []})


def load_config(path: Path | str) -> Config:
    """Read and validate a config file; relative paths in it are relative to the file."""
    path = Path(path)
    return _parse_config(path, read_text_file(path, "config file", ConfigError))


def _parse_config(path: Path, text: str) -> Config:
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings")
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(str(path), exc, Config)) from None
    return _resolve_paths(config, path.resolve().parent)


def _resolve_paths(config: Config, base: Path) -> Config:
    tasks = [t.model_copy(update={"context": str((base / t.context).resolve())})
             if t.local_context else t for t in config.tasks]
    root = config.local_contexts_root
    engines = config.engines and [
        e.model_copy(update={"tls": e.tls.resolved(base)}) if e.tls is not None else e
        for e in config.engines]
    return config.model_copy(update={"state_dir": (base / config.state_dir).resolve(),
                                     "local_contexts_root": root and (base / root).resolve(),
                                     "tasks": tasks, "engines": engines})
