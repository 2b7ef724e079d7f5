"""Which Host headers a node builds file links from (issue 13, item 9)."""

from __future__ import annotations

import pytest

from realtimechat.edge.hosts import host_allowed
from realtimechat.settings import Settings


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1:8000", "localhost", "LOCALHOST:1", "[::1]:8000", "[::1]", "chat.example.com",
     "chat.example.com:8443", "10.0.0.5:9000"],
)  # fmt: skip
def test_the_nodes_own_and_configured_names_are_allowed(host: str) -> None:
    allowed = Settings(allowed_hosts=["chat.example.com", "10.0.0.5:9000"]).allowed_host_names()
    assert host_allowed(host, allowed)


@pytest.mark.parametrize(
    "host",
    ["evil.example", "evil.example:8000", "localhost.evil.example", "127.0.0.1.evil.example",
     "10.0.0.5:9001", "10.0.0.5", "chat.example.com:x", "", "::1:8000", "[::1]:"],
)  # fmt: skip
def test_anything_else_is_not(host: str) -> None:
    allowed = Settings(allowed_hosts=["chat.example.com", "10.0.0.5:9000"]).allowed_host_names()
    assert not host_allowed(host, allowed)


def test_the_listen_address_counts_unless_it_is_a_wildcard() -> None:
    assert "192.168.1.7" in Settings(host="192.168.1.7").allowed_host_names()
    assert "0.0.0.0" not in Settings(host="0.0.0.0").allowed_host_names()


def test_rtc_allowed_hosts_is_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTC_ALLOWED_HOSTS", "chat.example.com, 10.0.0.5:9000,")
    assert Settings().allowed_hosts == ["chat.example.com", "10.0.0.5:9000"]
