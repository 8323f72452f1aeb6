"""Config is checked once, at start-up; every rejection names the setting and the rule
(STYLE §5, §6)."""

from __future__ import annotations

import pytest

from raftflow.raft import MUTATIONS, Config, ConfigError


def test_defaults_are_valid_and_derive_quorum_and_lease():
    config = Config(id=1, voters=(1, 2, 3))
    assert config.quorum == 2
    assert config.effective_lease_ticks == config.election_ticks - 1
    assert Config(id=1, voters=(1, 2, 3, 4)).quorum == 3
    assert Config(id=1, voters=(1,)).quorum == 1


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"voters": ()}, "voters is empty"),
        ({"voters": (1, 2, 2)}, r"voters=\(1, 2, 2\) lists a node twice"),
        ({"voters": (0, 1)}, "node ids must be positive integers"),
        ({"id": 4}, r"id=4 is not in voters=\(1, 2, 3\)"),
        ({"election_ticks": 0}, "election_ticks=0 must be at least 1"),
        ({"heartbeat_ticks": 0}, "heartbeat_ticks=0 must be at least 1"),
        ({"max_msg_entries": 0}, "max_msg_entries=0 must be at least 1"),
        ({"max_msg_bytes": 0}, "max_msg_bytes=0 must be at least 1"),
        ({"max_inflight_msgs": 0}, "max_inflight_msgs=0 must be at least 1"),
        ({"max_uncommitted_entries": 0}, "max_uncommitted_entries=0 must be at least 1"),
        ({"max_pending_reads": -1}, "max_pending_reads=-1 must be at least 1"),
        ({"heartbeat_ticks": 10}, "heartbeat_ticks=10 must be below election_ticks=10"),
        # Thesis §6.4.1: a lease as long as the election timeout leaves no margin for drift.
        ({"lease_ticks": 10}, "lease_ticks=10 must be below election_ticks=10"),
        ({"lease_ticks": -1}, "lease_ticks=-1 must be at least 0"),
        ({"mutations": frozenset({"commit-everything"})}, r"unknown mutations \['commit-everything'\]"),
    ],
)
def test_config_rejects_bad_settings_naming_the_setting(settings, message):
    with pytest.raises(ConfigError, match=message):
        Config(**{"id": 1, "voters": (1, 2, 3), **settings})


def test_every_known_mutation_is_accepted():
    assert Config(id=1, voters=(1,), mutations=MUTATIONS).mutations == MUTATIONS


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)
