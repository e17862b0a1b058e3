"""Where the engine pulls a run's base from: through the endpoint, unless it cannot reach it."""
from basewatch.config import RegistrySettings
from basewatch.oci.image_sources import ImageSources


def test_the_engine_pulls_through_the_endpoint_by_default():
    sources = ImageSources([RegistrySettings(host="docker.io", endpoint="http://mirror:5000")])
    assert sources.pull_source("docker.io/library/alpine:3.20") == "mirror:5000/library/alpine:3.20"


def test_an_endpoint_only_basewatch_reaches_leaves_the_reference_as_it_is():
    sources = ImageSources([RegistrySettings(host="127.0.0.1:5000", endpoint="http://registry:5000",
                                             engine_pulls_through_endpoint=False)])
    digest = "sha256:" + "a" * 64
    assert (sources.pull_source(f"127.0.0.1:5000/base@{digest}")
            == f"127.0.0.1:5000/base@{digest}")


def test_a_registry_without_settings_is_pulled_as_named():
    assert ImageSources().pull_source("127.0.0.1:5000/base:1") == "127.0.0.1:5000/base:1"
