"""`database: {url_env: VAR}`: the store's PostgreSQL, named by an environment variable and
checked at the edge; without it, SQLite in state_dir as before."""
from __future__ import annotations

import pytest

from basewatch.config import Config, database_url, missing_environment
from basewatch.config_check import check_config
from basewatch.errors import ConfigError

SECRET = "s3cr3t-pass"


def config(**database) -> Config:
    return Config.model_validate({"database": database} if database else {})


def test_without_database_the_store_is_sqlite():
    assert database_url(config(), {}) is None


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+asyncpg"])
def test_a_postgres_url_is_taken_for_asyncpg(scheme):
    url = f"{scheme}://basewatch:{SECRET}@db.internal:5433/basewatch"
    assert database_url(config(url_env="DB_URL"), {"DB_URL": url}) == (
        f"postgresql+asyncpg://basewatch:{SECRET}@db.internal:5433/basewatch")


@pytest.mark.parametrize("value", [
    f"mysql://u:{SECRET}@h/db", f"postgresql://u:{SECRET}@h", f"postgresql://u:{SECRET}@h:port/db",
    f"postgresql:///db?password={SECRET}", f"sqlite:///{SECRET}.db"])
def test_anything_else_is_refused_without_showing_the_value(value):
    with pytest.raises(ConfigError) as error:
        database_url(config(url_env="DB_URL"), {"DB_URL": value})
    assert str(error.value).startswith("database.url_env: DB_URL is not a PostgreSQL URL")
    assert SECRET not in str(error.value)


def test_an_unset_variable_is_named_with_the_others():
    settings = config(url_env="DB_URL")
    with pytest.raises(ConfigError, match="database.url_env: the environment variable DB_URL"):
        database_url(settings, {})
    assert missing_environment(settings, {}) == [
        "database.url_env: the environment variable DB_URL is not set"]


@pytest.mark.parametrize("database", [{"url": "postgresql://h/db"}, {"url_env": "not a name"},
                                      {}])
def test_the_key_takes_only_a_variable_name(database):
    with pytest.raises(ValueError):
        Config.model_validate({"database": database})


async def test_check_config_says_what_serve_would_of_the_database_url(tmp_path):
    path = tmp_path / "basewatch.yml"
    path.write_text("database: {url_env: DB_URL}\n")
    unset = await check_config(path, environ={})
    assert unset.problems == [f"{path}: database.url_env: the environment variable DB_URL is "
                              "not set"]
    wrong = await check_config(path, environ={"DB_URL": f"mysql://u:{SECRET}@h/db"})
    assert wrong.problems == [f"{path}: database.url_env: DB_URL is not a PostgreSQL URL "
                              "(postgresql://USER:PASSWORD@HOST:5432/DATABASE)"]
    good = await check_config(path, environ={"DB_URL": f"postgresql://u:{SECRET}@h/db"})
    assert good.problems == []
