"""Router settings come from MODELHUB_ROUTER_* with documented defaults."""

from __future__ import annotations

import pytest

from modelhub.router.settings import RouterSettings, split_addresses


def test_defaults() -> None:
    settings = RouterSettings()
    assert settings.port == 50053
    assert settings.backend_addresses == ["127.0.0.1:50052"]
    assert settings.monitor_address == ""  # no events unless configured
    assert settings.default_alias == "champion"


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELHUB_ROUTER_BACKENDS", "a:1, b:2 c:3")
    monkeypatch.setenv("MODELHUB_ROUTER_SHADOW_QUEUE_SIZE", "7")
    monkeypatch.setenv("MODELHUB_ROUTER_MONITOR_ADDRESS", "m:50054")
    settings = RouterSettings()
    assert settings.backend_addresses == ["a:1", "b:2", "c:3"]
    assert settings.shadow_queue_size == 7
    assert settings.monitor_address == "m:50054"


def test_split_addresses() -> None:
    assert split_addresses(" , ") == []
    assert split_addresses("a:1,,b:2") == ["a:1", "b:2"]
