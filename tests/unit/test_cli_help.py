"""Every option of the commands that talk to the daemon says what it takes, with an example,
and required ones say they are required, as az's help does."""
from __future__ import annotations

import argparse

from basewatch.cli import _commands, build_parser

# Their own helpers' parts of the CLI: the daemon itself and the config check.
NOT_HERE = {"basewatch serve", "basewatch check-config"}


def test_every_option_has_help_with_an_example():
    missing = []
    for command in _commands(build_parser()):
        if command.prog in NOT_HERE:
            continue
        for action in command._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction,
                                   argparse._StoreTrueAction)):
                continue
            if "e.g." not in (action.help or ""):
                missing.append(f"{command.prog} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


def test_required_options_say_so():
    for command in _commands(build_parser()):
        for action in command._actions:
            if action.required and action.option_strings:
                assert action.help.startswith("(required)"), (command.prog, action.dest)
