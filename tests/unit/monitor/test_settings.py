"""Monitor settings come from MODELHUB_MONITOR_* with documented defaults."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from modelhub.monitor.settings import MonitorSettings


def test_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = MonitorSettings()
    assert defaults.port == 50054
    assert defaults.database_url == "sqlite+aiosqlite:///var/monitor.db"
    assert defaults.registry.address == "" and defaults.registry.timeout_s == 5.0
    monkeypatch.setenv("MODELHUB_MONITOR_PORT", "6000")
    monkeypatch.setenv("MODELHUB_MONITOR_MAX_SERIES", "12")
    monkeypatch.setenv("MODELHUB_MONITOR_REGISTRY_ADDRESS", "registry:50051")
    monkeypatch.setenv("MODELHUB_AUTH_TOKENS", "t:admin")
    settings = MonitorSettings()
    assert (settings.port, settings.max_series) == (6000, 12)
    assert settings.registry.address == "registry:50051"
    assert settings.auth.tokens == "t:admin"


def test_registry_client_is_nested_and_keeps_its_flat_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODELHUB_MONITOR_REGISTRY_TOKEN", "r34d")
    monkeypatch.setenv("MODELHUB_MONITOR_REGISTRY__TIMEOUT_S", "2")
    settings = MonitorSettings(registry_address="registry:50051")
    assert settings.registry.address == "registry:50051"
    assert (settings.registry.token, settings.registry.timeout_s) == ("r34d", 2.0)
    assert MonitorSettings(registry_timeout_s=1.5).registry.timeout_s == 1.5


def test_every_field_is_documented() -> None:
    # `auth` and `log` are nested settings, documented field by field in their classes.
    undocumented = [
        name
        for name, field in MonitorSettings.model_fields.items()
        if not field.description and name not in ("auth", "log")
    ]
    assert undocumented == []


def test_bounds_are_enforced() -> None:
    with pytest.raises(ValidationError, match="join_window_s"):
        MonitorSettings(join_window_s=7200)
    with pytest.raises(ValidationError, match="max_series"):
        MonitorSettings(max_series=0)
