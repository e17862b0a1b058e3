"""The config file: defaults, relative paths, and one line per problem naming the file and key."""
import re
from datetime import timedelta
from pathlib import Path
from textwrap import dedent

import pytest
import yaml

from basewatch.config import (
    Config,
    RegistrySettings,
    TaskSettings,
    load_config,
    parse_duration,
)
from basewatch.errors import BasewatchError, ConfigError
from basewatch.oci.platforms import Platform

REPO = Path(__file__).resolve().parents[2]
TASK = {"name": "app", "context": "apps/app", "image": "127.0.0.1:5000/app:{{.Run.ID}}"}


def write(tmp_path: Path, content: dict | list | str, name: str = "basewatch.yml") -> Path:
    """A config file in tmp_path: a mapping is dumped as YAML, a string written as is."""
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


def task(**changes) -> dict:
    return {**TASK, **changes}


def problems(path: Path) -> list[str]:
    """The lines of the ConfigError that loading `path` raises, each checked to start with it."""
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert isinstance(caught.value, BasewatchError)
    lines = str(caught.value).splitlines()
    assert lines, "an empty error message"
    for line in lines:
        assert line.startswith(f"{path}: "), line
    return lines


def problem(path: Path) -> str:
    """The one line of the ConfigError that loading `path` raises."""
    lines = problems(path)
    assert len(lines) == 1, lines
    return lines[0]


# ------------------------------------------------------------------ files that load


def test_example_config_loads_with_every_key():
    path = REPO / "config" / "basewatch.example.yml"
    config = load_config(path)
    folder = path.parent
    raw = yaml.safe_load(path.read_text())
    keys = {field.alias or name for name, field in Config.model_fields.items()}
    assert set(raw) == keys, "the example shows every top-level key"
    assert set(raw["tasks"][0]) == set(TaskSettings.model_fields)
    assert config.allowed_context_hosts == ["git.example.com"]
    assert config.allow_file_contexts is False
    assert config.local_contexts_root == Path("/srv/contexts")
    assert config.state_dir == folder / ".basewatch"
    assert (config.listen_host, config.listen_port) == ("127.0.0.1", 8080)
    assert config.max_concurrent_runs == 2
    assert config.poll_interval == 60.0
    assert config.settle_window == 0.0
    assert config.git_poll_interval == 60.0
    assert config.api_token_env == "BASEWATCH_TOKEN"
    assert config.notifications.token_env == "BASEWATCH_NOTIFY_TOKEN"
    assert config.retention == 30 * 86400.0
    assert config.log_archive.repository == "127.0.0.1:5000/basewatch/run-logs"
    [registry] = config.registries
    assert registry == RegistrySettings(host="127.0.0.1:5000", endpoint="http://127.0.0.1:5000",
                                        poll_interval=30.0, max_requests_per_second=20,
                                        username="ci", password_env="REGISTRY_PASSWORD")
    [hello] = config.tasks
    assert hello.name == "hello"
    assert hello.context == str(folder / "apps" / "hello")
    assert hello.image == ["127.0.0.1:5000/apps/hello:{{.Run.ID}}",
                           "127.0.0.1:5000/apps/hello:latest"]
    assert hello.build_args == {"VERSION": "1"}
    assert (hello.target, hello.platform, hello.push, hello.timeout) == (
        None, ["linux/amd64"], True, 3600.0)
    assert (hello.base_image_trigger.enabled, hello.base_image_trigger.type) == (True, "runtime")


def test_demo_config_loads_and_its_contexts_hold_dockerfiles():
    path = REPO / "config" / "demo.yml"
    config = load_config(path)
    assert config.state_dir == REPO / ".basewatch"
    assert config.poll_interval == 30.0
    assert (config.api_token_env, config.notifications.token_env) == (
        "BASEWATCH_TOKEN", "BASEWATCH_NOTIFY_TOKEN")
    assert [t.name for t in config.tasks] == ["hello", "web"]
    for settings in config.tasks:
        assert Path(settings.context).is_absolute()
        assert (Path(settings.context) / settings.file).is_file(), settings.context
    assert config.registry("127.0.0.1:5000").endpoint == "http://127.0.0.1:5000"


@pytest.mark.parametrize("content", ["", "\n", "# nothing set yet\n", "---\n"],
                         ids=["empty", "blank-line", "comment-only", "document-marker"])
def test_empty_file_gives_defaults(tmp_path, content):
    config = load_config(write(tmp_path, content))
    assert config.state_dir == tmp_path / ".basewatch"
    assert config.listen == "127.0.0.1:8080"
    assert (config.listen_host, config.listen_port) == ("127.0.0.1", 8080)
    assert config.max_concurrent_runs == 2
    assert config.poll_interval == 60.0
    assert (config.registries, config.tasks) == ([], [])


def test_task_defaults(tmp_path):
    [settings] = load_config(write(tmp_path, {"tasks": [TASK]})).tasks
    assert settings == TaskSettings(name="app", context=tmp_path / "apps" / "app",
                                    image=["127.0.0.1:5000/app:{{.Run.ID}}"])
    assert settings.file == "Dockerfile"
    assert settings.build_args == {}
    assert (settings.target, settings.platform, settings.push) == (None, ["linux/amd64"], True)
    assert settings.timeout == 3600.0
    assert (settings.base_image_trigger.enabled, settings.base_image_trigger.type) == (
        True, "runtime")


def test_relative_paths_are_resolved_against_the_config_folder_not_the_cwd(tmp_path,
                                                                          monkeypatch):
    folder = tmp_path / "etc" / "basewatch"
    folder.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    absolute = tmp_path / "abs" / "context"
    path = write(folder, {"state_dir": "../state",
                          "tasks": [task(context="./apps/../apps/one"),
                                    task(name="two", context="../../shared/two"),
                                    task(name="three", context=str(absolute))]})
    # given relative to the cwd, as a user would type it
    config = load_config(Path("..") / path.relative_to(tmp_path))
    assert config.state_dir == tmp_path / "etc" / "state"
    assert [t.context for t in config.tasks] == [
        str(folder / "apps" / "one"), str(tmp_path / "shared" / "two"), str(absolute)]


def test_file_is_kept_relative_to_the_context(tmp_path):
    path = write(tmp_path, {"tasks": [task(file="docker/Dockerfile.prod")]})
    [settings] = load_config(path).tasks
    assert settings.file == "docker/Dockerfile.prod"
    assert settings.context == str(tmp_path / "apps" / "app")


@pytest.mark.parametrize("file, message", [
    ("/etc/Dockerfile", "must be a relative path inside the build context"),
    ("../Dockerfile", "may not contain '..'"),
    ("docker/../../x", "may not contain '..'"),
    ("a\x00b", "must be a relative path"),
])
def test_file_outside_the_context_is_refused_in_one_line(tmp_path, file, message):
    path = write(tmp_path, {"tasks": [task(file=file)]})
    line = problem(path)
    assert line.startswith(f"{path}: tasks[0].file: ") and message in line, line


def test_local_contexts_root_is_off_by_default_and_relative_to_the_file(tmp_path):
    assert load_config(write(tmp_path, {})).local_contexts_root is None
    path = write(tmp_path, {"local_contexts_root": "shared/../contexts"})
    assert load_config(path).local_contexts_root == tmp_path / "contexts"


def test_registry_lookup_by_host(tmp_path):
    config = load_config(write(tmp_path, {"registries": [{"host": "a.example"},
                                                         {"host": "b.example:5000"}]}))
    assert config.registry("b.example:5000").host == "b.example:5000"
    assert config.registry("c.example") is None


# ------------------------------------------------------------------ durations


@pytest.mark.parametrize("value, seconds", [
    (90, 90.0),
    (1.5, 1.5),
    ("30s", 30.0),
    ("5m", 300.0),
    ("1h", 3600.0),
    ("1h30m", 5400.0),
    ("1h0m5s", 3605.0),
    ("2m30s", 150.0),
    (" 5m ", 300.0),
    (timedelta(minutes=2), 120.0),
    ("30d", 2592000.0),
    ("1d12h", 129600.0),
    ("2d30m", 174600.0),
])
def test_parse_duration(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "5x", "m", "1w", "1h1d", "30 s", "5m1h", "1.5m", "-5s",
                                   "s30", None, [30], {"s": 30}])
def test_parse_duration_refuses_what_is_not_a_duration(value):
    with pytest.raises(ValueError, match="is not a duration such as 30s, 5m or 1h"):
        parse_duration(value)


@pytest.mark.parametrize("value", [0, -5, 0.0, "0s", "0h0m0s", timedelta(0),
                                   timedelta(seconds=-1)])
def test_parse_duration_refuses_zero_and_negative(value):
    with pytest.raises(ValueError, match="a duration must be positive"):
        parse_duration(value)


@pytest.mark.parametrize("value", [True, False])
def test_parse_duration_refuses_booleans(value):
    # `poll_interval: yes` is a YAML bool, and bool is an int to Python: 1 second is not meant.
    with pytest.raises(ValueError, match="expected a duration such as 30s, 5m or 1h"):
        parse_duration(value)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_parse_duration_refuses_nan_and_infinity(value):
    with pytest.raises(ValueError):
        parse_duration(value)


def test_durations_in_every_place_they_are_read(tmp_path):
    config = load_config(write(tmp_path, {
        "poll_interval": "5m",
        "registries": [{"host": "r.example", "poll_interval": 45}],
        "tasks": [task(timeout="1h30m")]}))
    assert config.poll_interval == 300.0
    assert config.registries[0].poll_interval == 45.0
    assert config.tasks[0].timeout == 5400.0


@pytest.mark.parametrize("content, line", [
    ("poll_interval: soon\n", "poll_interval: 'soon' is not a duration such as 30s, 5m or 1h"),
    ("poll_interval: 0\n", "poll_interval: a duration must be positive"),
    ("poll_interval: -30\n", "poll_interval: a duration must be positive"),
    ("poll_interval: yes\n", "poll_interval: expected a duration such as 30s, 5m or 1h"),
    ("registries: [{host: r.example, poll_interval: 0s}]\n",
     "registries[0].poll_interval: a duration must be positive"),
    ("tasks: [{name: a, context: ., image: x, timeout: 1w}]\n",
     "tasks[0].timeout: '1w' is not a duration such as 30s, 5m or 1h"),
    ("retention: 0d\n", "retention: a duration must be positive"),
])
def test_bad_durations_name_their_key(tmp_path, content, line):
    path = write(tmp_path, content)
    assert problem(path) == f"{path}: {line}"


def test_retention_defaults_to_30_days_and_log_archive_to_off(tmp_path):
    config = load_config(write(tmp_path, {}))
    assert (config.retention, config.log_archive) == (30 * 86400.0, None)


@pytest.mark.parametrize("repository", ["127.0.0.1:5000/basewatch/run-logs",
                                        "registry.example/logs", "run-logs"])
def test_log_archive_repository_is_accepted(tmp_path, repository):
    config = load_config(write(tmp_path, {"log_archive": {"repository": repository}}))
    assert config.log_archive.repository == repository


@pytest.mark.parametrize("repository, message", [
    ("127.0.0.1:5000/logs:v1", "is not a repository without tag or digest"),
    ("127.0.0.1:5000/logs@sha256:" + "a" * 64, "is not a repository without tag or digest"),
    ("127.0.0.1:5000", "is not a repository without tag or digest"),
    ("127.0.0.1:5000/Logs", "repository name must be lowercase"),
    ("", "image reference is empty"),
])
def test_log_archive_repository_is_refused_with_the_reason(tmp_path, repository, message):
    path = write(tmp_path, {"log_archive": {"repository": repository}})
    line = problem(path)
    assert line.startswith(f"{path}: log_archive.repository: ") and message in line, line


# ------------------------------------------------------------------ tasks


@pytest.mark.parametrize("image, expected", [
    ("reg/app:1", ["reg/app:1"]),
    (["reg/app:1"], ["reg/app:1"]),
    (["reg/app:{{.Run.ID}}", "reg/app:latest"], ["reg/app:{{.Run.ID}}", "reg/app:latest"]),
])
def test_image_is_one_tag_or_a_list(tmp_path, image, expected):
    [settings] = load_config(write(tmp_path, {"tasks": [task(image=image)]})).tasks
    assert settings.image == expected


@pytest.mark.parametrize("image, message", [
    ([], "tasks[0].image: List should have at least 1 item"),
    (5, "tasks[0].image: Input should be a valid list"),
    ({"tag": "x"}, "tasks[0].image: Input should be a valid list"),
])
def test_image_must_name_at_least_one_tag(tmp_path, image, message):
    path = write(tmp_path, {"tasks": [task(image=image)]})
    assert problem(path).startswith(f"{path}: {message}")


def test_build_args_are_strings_as_docker_wants_them(tmp_path):
    path = write(tmp_path, dedent("""\
        tasks:
          - name: app
            context: .
            image: x
            build_args:
              VERSION: 1
              BASE: "node:20"
              EMPTY:
              QUOTED: "007"
    """))
    [settings] = load_config(path).tasks
    assert settings.build_args == {"VERSION": "1", "BASE": "node:20", "EMPTY": "", "QUOTED": "007"}


@pytest.mark.parametrize("value", ["20.10", "true"], ids=["float", "bool"])
def test_build_args_that_yaml_would_reinterpret_are_refused(tmp_path, value):
    path = write(tmp_path, "tasks: [{name: a, context: ., image: x, build_args: {V: %s}}]" % value)
    assert problem(path).startswith(f"{path}: tasks[0].build_args.V: ")


@pytest.mark.parametrize("given, normalised", [
    ("linux/amd64", "linux/amd64"),
    ("linux/x86_64", "linux/amd64"),
    ("LINUX/AMD64", "linux/amd64"),
    ("linux/arm64", "linux/arm64"),
    ("linux/arm64/v8", "linux/arm64"),
    ("linux/aarch64", "linux/arm64"),
    ("linux/arm", "linux/arm/v7"),
    ("linux/arm/v6", "linux/arm/v6"),
    ("linux/s390x", "linux/s390x"),
])
def test_platform_is_normalised_as_docker_does(tmp_path, given, normalised):
    [settings] = load_config(write(tmp_path, {"tasks": [task(platform=given)]})).tasks
    assert settings.platform == [normalised]


@pytest.mark.parametrize("given", [
    ["linux/amd64", "linux/arm64"],
    "linux/amd64,linux/arm64",
    "linux/amd64, linux/aarch64",
    ["linux/x86_64", "LINUX/ARM64/v8"],
])
def test_a_task_builds_several_platforms_from_a_list_or_a_comma_list(tmp_path, given):
    [settings] = load_config(write(tmp_path, {"tasks": [task(platform=given)]})).tasks
    assert settings.platform == ["linux/amd64", "linux/arm64"]
    assert settings.to_task().platforms == [Platform("linux", "amd64"), Platform("linux", "arm64")]


@pytest.mark.parametrize("given, message", [
    ("linux/amd64 linux/arm64", "platform 'linux/amd64 linux/arm64' is not of the form "
                                "os/arch[/variant]"),
    ("linux/amd64,linux", "platform 'linux' is not of the form os/arch[/variant]"),
    ("linux/amd64,", "platform '' is not of the form os/arch[/variant]"),
    (["linux/amd64", "linux/x86_64"], "the platform linux/amd64 is given twice"),
    (["linux/arm64", "windows/amd64"], "windows images cannot be built on a Linux engine"),
    ([], "give at least one platform, e.g. linux/amd64"),
    ([7], "give a platform such as linux/amd64, or a list of them"),
])
def test_a_malformed_platform_list_is_one_clear_line(tmp_path, given, message):
    path = write(tmp_path, {"tasks": [task(platform=given)]})
    assert problem(path) == f"{path}: tasks[0].platform: {message}"


@pytest.mark.parametrize("platform", ["windows/amd64", "Windows/AMD64", "windows/arm64"])
def test_windows_platform_is_refused_with_the_reason(tmp_path, platform):
    path = write(tmp_path, {"tasks": [task(platform=platform)]})
    assert problem(path) == (f"{path}: tasks[0].platform: "
                             "windows images cannot be built on a Linux engine")


@pytest.mark.parametrize("platform", ["linux", "amd64", "linux/", "linux/arm/v7/extra"])
def test_malformed_platform_is_refused(tmp_path, platform):
    path = write(tmp_path, {"tasks": [task(platform=platform)]})
    assert problem(path) == (f"{path}: tasks[0].platform: "
                             f"platform {platform!r} is not of the form os/arch[/variant]")


@pytest.mark.parametrize("name", ["app", "App2", "my-app.v2_final", "0day", "a" * 100])
def test_task_names_that_are_accepted(tmp_path, name):
    assert load_config(write(tmp_path, {"tasks": [task(name=name)]})).tasks[0].name == name


@pytest.mark.parametrize("name", ["", "my app", "-app", ".app", "app/x", "a" * 101, "app\n",
                                  "app\r\n", "\napp"])
def test_task_names_that_are_refused(tmp_path, name):
    path = write(tmp_path, {"tasks": [task(name=name)]})
    assert problem(path).startswith(f"{path}: tasks[0].name: ")


def test_trigger_type_is_runtime_or_all(tmp_path):
    path = write(tmp_path, {"tasks": [task(base_image_trigger={"type": "build"})]})
    assert problem(path) == (f"{path}: tasks[0].base_image_trigger.type: "
                             "Input should be 'runtime' or 'all'")


# ------------------------------------------------------------------ structure


@pytest.mark.parametrize("content, key_path, hint", [
    ({"pol_interval": "5s"}, "pol_interval", "; did you mean `poll_interval`?"),
    ({"registries": [{"host": "r.example", "user": "ci"}]}, "registries[0].user",
     "; did you mean `username`?"),
    ({"tasks": [TASK, task(name="two", base_image_trigger={"typ": "all"})]},
     "tasks[1].base_image_trigger.typ", "; did you mean `type`?"),
    ({"registry_host": "r.example"}, "registry_host", "; did you mean `registry`?"),
    ({"xyzzy": 1}, "xyzzy", ""),
])
def test_unknown_keys_are_refused_with_their_path_and_the_key_meant(tmp_path, content,
                                                                     key_path, hint):
    path = write(tmp_path, content)
    assert problem(path) == f"{path}: {key_path}: unknown key{hint}"


def test_misspelt_required_key_gives_one_line_per_problem(tmp_path):
    misspelt = {"name": "two", "contxt": "apps/two", "image": "x"}
    path = write(tmp_path, {"tasks": [TASK, misspelt]})
    assert sorted(problems(path)) == [f"{path}: tasks[1].context: Field required",
                                      f"{path}: tasks[1].contxt: unknown key; did you mean "
                                      "`context`?"]


def test_missing_required_keys_are_each_named(tmp_path):
    path = write(tmp_path, {"registries": [{"endpoint": "http://r.example"}],
                            "tasks": [{"platform": "linux/amd64"}]})
    assert sorted(problems(path)) == [f"{path}: registries[0].host: Field required",
                                      f"{path}: tasks[0].context: Field required",
                                      # a Dockerfile task's (a task file names its own)
                                      f"{path}: tasks[0].image: List should have at least 1 "
                                      "item: the tags a Dockerfile task pushes",
                                      f"{path}: tasks[0].name: Field required"]


def test_every_problem_in_a_file_is_reported_at_once(tmp_path):
    path = write(tmp_path, {"listen": "nowhere", "max_concurrent_runs": 0, "poll_interval": "x",
                            "tasks": [task(platform="windows/amd64", extra=1)]})
    lines = problems(path)
    assert [line.split(": ")[1] for line in lines] == [
        "listen", "max_concurrent_runs", "poll_interval", "tasks[0].platform", "tasks[0].extra"]


@pytest.mark.parametrize("content, key_path, message", [
    ({"tasks": {"name": "app"}}, "tasks", "Input should be a valid list"),
    ({"tasks": [None]}, "tasks[0]", "Input should be a valid dictionary"),
    ({"registries": ["r.example"]}, "registries[0]", "Input should be a valid dictionary"),
    ({"max_concurrent_runs": 0}, "max_concurrent_runs", "Input should be greater than or equal"),
    ({"max_concurrent_runs": 257}, "max_concurrent_runs", "Input should be less than or equal"),
    ({"tasks": [task(push="maybe")]}, "tasks[0].push", "Input should be a valid boolean"),
])
def test_wrong_types_name_their_key(tmp_path, content, key_path, message):
    path = write(tmp_path, content)
    assert problem(path).startswith(f"{path}: {key_path}: {message}")


def test_duplicate_task_names_are_refused(tmp_path):
    path = write(tmp_path, {"tasks": [TASK, task(context="other"), task(name="b")]})
    line = problem(path)
    assert line.startswith(f"{path}: ")
    assert line.endswith("duplicate task name: app")


def test_duplicate_registry_hosts_are_refused(tmp_path):
    path = write(tmp_path, {"registries": [{"host": "r.example"}, {"host": "q.example"},
                                           {"host": "r.example", "username": "ci"}]})
    line = problem(path)
    assert line.startswith(f"{path}: ")
    assert line.endswith("duplicate registry host: r.example")


def test_duplicate_task_name_names_the_repeating_key(tmp_path):
    path = write(tmp_path, {"tasks": [TASK, task(context="other")]})
    assert problem(path) == f"{path}: tasks[1].name: duplicate task name: app"


# ------------------------------------------------------------------ listen and registries


@pytest.mark.parametrize("listen, host, port", [
    ("127.0.0.1:8080", "127.0.0.1", 8080),
    ("0.0.0.0:9000", "0.0.0.0", 9000),
    ("localhost:0", "localhost", 0),
])
def test_listen_is_host_and_port(tmp_path, listen, host, port):
    config = load_config(write(tmp_path, {"listen": listen}))
    assert (config.listen_host, config.listen_port) == (host, port)


@pytest.mark.parametrize("listen", ["8080", ":8080", "localhost", "localhost:", "localhost:http",
                                    "localhost:65536", "localhost:-1"])
def test_bad_listen_is_refused(tmp_path, listen):
    path = write(tmp_path, {"listen": listen})
    assert problem(path) == f"{path}: listen: {listen!r} is not host:port"


def test_listen_given_as_a_bare_port_number_is_refused(tmp_path):
    path = write(tmp_path, "listen: 8080\n")
    assert problem(path) == f"{path}: listen: Input should be a valid string"


@pytest.mark.parametrize("endpoint, stored", [
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("https://mirror.example.com", "https://mirror.example.com"),
    ("https://mirror.example.com:8443/", "https://mirror.example.com:8443"),
])
def test_endpoint_is_an_http_url_of_a_host(tmp_path, endpoint, stored):
    config = load_config(write(tmp_path, {"registries": [{"host": "r", "endpoint": endpoint}]}))
    assert config.registries[0].endpoint == stored


@pytest.mark.parametrize("endpoint", ["127.0.0.1:5000", "ftp://r.example", "http://",
                                      "https://r.example/v2/", "http://r example"])
def test_endpoint_that_is_not_http_host_port_is_refused(tmp_path, endpoint):
    path = write(tmp_path, {"registries": [{"host": "r", "endpoint": endpoint}]})
    assert problem(path) == (f"{path}: registries[0].endpoint: "
                             f"{endpoint!r} is not an http(s)://host[:port] URL")


def test_password_and_password_env_together_are_refused(tmp_path):
    path = write(tmp_path, {"registries": [{"host": "r", "username": "ci", "password": "s3cret",
                                            "password_env": "REGISTRY_PASSWORD"}]})
    line = problem(path)
    assert line == f"{path}: registries[0]: give password or password_env, not both"
    assert "s3cret" not in line


# ------------------------------------------------------------------ reading the file


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yml"
    assert problem(path) == f"{path}: no such config file"


def test_a_folder_is_not_a_config_file(tmp_path):
    assert problem(tmp_path).startswith(f"{tmp_path}: cannot read: ")


def test_yaml_syntax_error_names_line_and_column(tmp_path):
    path = write(tmp_path, dedent("""\
        tasks:
          - name: app
            context: .
           image: x
    """))
    line = problem(path)
    assert line.startswith(f"{path}: not valid YAML (line 4, column 4): ")


def test_unclosed_bracket_is_a_yaml_error_with_its_position(tmp_path):
    path = write(tmp_path, "listen: [unclosed\n")
    line = problem(path)
    assert line.startswith(f"{path}: not valid YAML (line ")


@pytest.mark.parametrize("content", ["- listen: 127.0.0.1:8080\n", "just text\n", "42\n"],
                         ids=["list", "string", "number"])
def test_top_level_must_be_a_mapping(tmp_path, content):
    path = write(tmp_path, content)
    assert problem(path) == f"{path}: the top level must be a mapping of settings"


def test_file_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "basewatch.yml"
    path.write_bytes(b"listen: \xff\xfe\n")
    assert problem(path).startswith(f"{path}: ")


def test_a_key_given_twice_is_refused(tmp_path):
    path = write(tmp_path, "tasks: []\nlisten: 127.0.0.1:80\nlisten: 127.0.0.1:81\n")
    assert "listen" in problem(path)


def test_config_objects_are_immutable(tmp_path):
    config = load_config(write(tmp_path, {"tasks": [TASK]}))
    with pytest.raises(ValueError):
        config.listen = "0.0.0.0:1"  # type: ignore[misc]
    assert isinstance(config, Config)


def test_a_task_context_may_be_a_git_or_tarball_url_and_is_kept_as_given(tmp_path):
    git = "https://git.example.com/org/app.git#main:services/api"
    tarball = "https://example.com/app.tar.gz"
    path = write(tmp_path, {"tasks": [task(context=git), task(name="b", context=tarball)]})
    assert [t.context for t in load_config(path).tasks] == [git, tarball]
    assert not any(t.local_context for t in load_config(path).tasks)


def test_an_unknown_kind_of_context_url_is_refused(tmp_path):
    path = write(tmp_path, {"tasks": [task(context="ftp://example.com/app.tar.gz")]})
    [problem] = problems(path)
    assert problem.startswith(f"{path}: tasks[0].context: ") and "ftp://" in problem


def test_allowed_context_hosts_are_names_or_star_dot_domains(tmp_path):
    path = write(tmp_path, {"allowed_context_hosts": ["Git.Example.com", "*.corp.example",
                                                      "10.0.0.7", "[fd00::7]"]})
    assert load_config(path).allowed_context_hosts == ["git.example.com", "*.corp.example",
                                                       "10.0.0.7", "fd00::7"]
    path = write(tmp_path, {"allowed_context_hosts": ["https://git.example.com"]})
    [problem] = problems(path)
    assert problem.startswith(f"{path}: allowed_context_hosts: ") and "not a host name" in problem


def test_build_network_is_default_or_a_network_name(tmp_path):
    assert load_config(write(tmp_path, {})).build_network == "default"
    for network in ("none", "host", "basewatch-builds"):
        assert load_config(write(tmp_path, {"build_network": network})).build_network == network
    path = write(tmp_path, {"build_network": "--network=host"})
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (f"{path}: build_network: '--network=host' is not default, "
                                 "none, host or a Docker network's name")


# ------------------------------------------------------------------ git credentials


def test_git_credentials_by_host_with_one_password_source(tmp_path):
    path = write(tmp_path, {"git_credentials": [
        {"host": "Git.Example.com", "username": "bot", "password_env": "GIT_TOKEN"},
        {"host": "127.0.0.1:8443", "username": "bot", "password": "p"}]})
    first, second = load_config(path).git_credentials
    assert (first.host, first.password_env, second.host) == (
        "git.example.com", "GIT_TOKEN", "127.0.0.1:8443")
    assert "'p'" not in repr(second), "the password is not shown"


@pytest.mark.parametrize("entry, key, message", [
    ({"host": "h", "username": "u"}, "git_credentials[0]", "give password or password_env"),
    ({"host": "h", "username": "u", "password": "p", "password_env": "E"},
     "git_credentials[0]", "give password or password_env"),
    ({"host": "https://h", "username": "u", "password": "p"}, "git_credentials[0].host",
     "is not a host or host:port"),
    ({"host": "h", "username": "u", "password": "a\nb"}, "git_credentials[0].password",
     "one line"),
])
def test_bad_git_credentials_are_refused_in_one_line(tmp_path, entry, key, message):
    path = write(tmp_path, {"git_credentials": [entry]})
    line = problem(path)
    assert line.startswith(f"{path}: {key}: ") and message in line, line


@pytest.mark.parametrize("context", ["https://bot:t0ken@git.example.com/o/app.git#main",
                                     "https://t0ken@git.example.com/o/app.git",
                                     "ssh://git:t0ken@git.example.com/o/app.git"])
def test_credentials_in_a_config_task_url_are_refused_without_showing_them(tmp_path, context):
    path = write(tmp_path, {"tasks": [task(context=context)]})
    line = problem(path)
    assert line.startswith(f"{path}: tasks[0].context: credentials in a context URL"), line
    assert "git_credentials" in line and "t0ken" not in line


def test_a_login_name_is_not_a_credential(tmp_path):
    path = write(tmp_path, {"tasks": [task(context="ssh://git@git.example.com/o/app.git")]})
    assert load_config(path).tasks[0].context == "ssh://git@git.example.com/o/app.git"


@pytest.mark.parametrize("value", ["9" * 40 + "d", "9" * 5000 + "d", "36501d", 10 ** 400,
                                   1e300, timedelta(days=36501)])
def test_parse_duration_refuses_what_no_timer_takes(value):
    # Once a 500: float() of a huge day count overflowed, and int() refuses 4,300 digits.
    with pytest.raises(ValueError, match="a duration must be at most 36500d"):
        parse_duration(value)


@pytest.mark.parametrize("value, seconds", [(0, 0.0), ("0s", 0.0), ("1m", 60.0), (5, 5.0)])
def test_git_poll_interval_zero_turns_polling_off(tmp_path, value, seconds):
    assert load_config(write(tmp_path, {"git_poll_interval": value})).git_poll_interval == seconds


def test_git_poll_interval_refuses_what_is_not_a_duration(tmp_path):
    with pytest.raises(ConfigError, match="git_poll_interval: .*not a duration"):
        load_config(write(tmp_path, {"git_poll_interval": "soon"}))


# ------------------------------------------------------------------ registry and aliases


def test_run_registry_is_registry_else_the_first_registries_host(tmp_path):
    both = load_config(write(tmp_path, {"registry": "r.example:5000",
                                        "registries": [{"host": "a.example"}]}))
    assert both.run_registry == "r.example:5000"
    assert both.registry("a.example").host == "a.example"  # the method keeps its meaning
    first = load_config(write(tmp_path, {"registries": [{"host": "a.example"},
                                                        {"host": "b.example"}]}))
    assert first.run_registry == "a.example"
    assert load_config(write(tmp_path, {})).run_registry is None


def test_registry_must_be_a_host(tmp_path):
    with pytest.raises(ConfigError, match=r"registry: .*'https://r.example' is not a "
                                          r"registry host"):
        load_config(write(tmp_path, {"registry": "https://r.example"}))


def test_aliases_map_names_to_image_references(tmp_path):
    config = load_config(write(tmp_path, {"aliases": {"bash": "127.0.0.1:5000/tools/bash:5",
                                                      "docker": "docker:24-cli"}}))
    assert config.aliases == {"bash": "127.0.0.1:5000/tools/bash:5", "docker": "docker:24-cli"}


@pytest.mark.parametrize("aliases, problem", [
    ({"my-tool": "busybox"}, "alias 'my-tool': a name is letters and digits"),
    ({"bash": "Not An Image"}, "alias 'bash': invalid image reference"),
])
def test_bad_aliases_are_refused(tmp_path, aliases, problem):
    with pytest.raises(ConfigError, match=re.escape(problem)):
        load_config(write(tmp_path, {"aliases": aliases}))
