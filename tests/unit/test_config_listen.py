"""The listen address read from a config file's text alone, for the port `basewatch serve`
answers on before the config is fully read: the same address the full reading gives, or none
when the text does not say it plainly."""
from __future__ import annotations

import pytest

from basewatch.config import load_settings
from basewatch.config_listen import DEFAULT_LISTEN, listen_in_text, split_listen


@pytest.mark.parametrize("text", [
    "listen: 0.0.0.0:9000\n",
    "state_dir: s\nlisten: '127.0.0.1:9001'  # the API\ntasks: []\n",
    'listen: "[::1]:9002"\n',
    "listen : 127.0.0.1:9003\n",
    "registries:\n  - host: reg:5000\n",  # no listen: the default
    "",
])
def test_a_plainly_written_address_is_the_one_the_config_gives(tmp_path, text):
    path = tmp_path / "basewatch.yml"
    path.write_text(text)
    assert listen_in_text(text) == load_settings(path).listen


@pytest.mark.parametrize("text", [
    "{listen: 127.0.0.1:9000}\n",  # a flow mapping
    '"listen": 127.0.0.1:9000\n',  # a quoted key
    "listen:\n  127.0.0.1:9000\n",  # on the next line
    "listen: 127.0.0.1:9000\nlisten: 127.0.0.1:9001\n",  # given twice
    "listen: 9000\n",  # not host:port
    "listen: &a 127.0.0.1:9000\n",  # an anchor
])
def test_an_address_not_written_plainly_is_left_to_the_full_reading(text):
    assert listen_in_text(text) is None


def test_a_listen_nested_elsewhere_is_not_the_daemons():
    text = "registries:\n  - host: reg:5000\n    listen: 127.0.0.1:1\n"
    assert listen_in_text(text) is None  # the word is there: the full reading decides


def test_host_and_port():
    assert split_listen(DEFAULT_LISTEN) == ("127.0.0.1", 8080)
    assert split_listen("[::]:80") == ("::", 80)
    assert split_listen("host:65536") is None and split_listen(":80") is None
