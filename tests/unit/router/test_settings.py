"""Router settings come from MODELHUB_ROUTER_* with documented defaults."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from modelhub.router.settings import RouterSettings, split_addresses


def test_defaults() -> None:
    settings = RouterSettings()
    assert settings.port == 50053
    assert settings.backend_addresses == ["127.0.0.1:50052"]
    assert settings.monitor.address == ""  # RecordOutcome refuses unless configured
    assert settings.registry.address == "127.0.0.1:50051"
    assert settings.default_alias == "champion"
    assert settings.envoy_config_dir == "var/envoy-xds"
    assert settings.config_warm_s == 0.5
    assert settings.retries == 2
    assert settings.inference_timeout_s == 60.0
    assert settings.version_ready_timeout_s == 30.0


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELHUB_ROUTER_BACKENDS", "a:1, b:2 c:3")
    monkeypatch.setenv("MODELHUB_ROUTER_MONITOR_ADDRESS", "m:50054")
    monkeypatch.setenv("MODELHUB_ROUTER_ENVOY_CONFIG_DIR", "/var/run/modelhub/xds")
    monkeypatch.setenv("MODELHUB_ROUTER_CONFIG_WARM_S", "0")
    monkeypatch.setenv("MODELHUB_ROUTER_RETRIES", "0")
    monkeypatch.setenv("MODELHUB_ROUTER_DEFAULT_ALIAS", "")
    settings = RouterSettings()
    assert settings.backend_addresses == ["a:1", "b:2", "c:3"]
    assert settings.monitor.address == "m:50054"
    assert settings.envoy_config_dir == "/var/run/modelhub/xds"
    assert settings.config_warm_s == 0 and settings.retries == 0
    assert settings.default_alias == ""


def test_client_settings_are_nested_and_keep_their_flat_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The flat variables deploy/compose, deploy/k8s and the dev stack set still work …
    monkeypatch.setenv("MODELHUB_ROUTER_REGISTRY_ADDRESS", "registry:50051")
    monkeypatch.setenv("MODELHUB_ROUTER_REGISTRY_TOKEN", "r34d")
    monkeypatch.setenv("MODELHUB_ROUTER_MONITOR_TOKEN", "pub")
    monkeypatch.setenv("MODELHUB_ROUTER_MONITOR_TIMEOUT_S", "2.5")
    settings = RouterSettings()
    assert (settings.registry.address, settings.registry.token) == ("registry:50051", "r34d")
    assert (settings.monitor.token, settings.monitor.timeout_s) == ("pub", 2.5)
    # … the nested ones win over them …
    monkeypatch.setenv("MODELHUB_ROUTER_REGISTRY__ADDRESS", "other:1")
    monkeypatch.setenv("MODELHUB_ROUTER_MONITOR__ADDRESS", "monitor:50054")
    settings = RouterSettings()
    assert settings.registry.address == "other:1" and settings.registry.token == "r34d"
    assert settings.monitor.address == "monitor:50054"
    # … and a keyword (either form) wins over both.
    assert RouterSettings(registry_address="kw:1").registry.address == "kw:1"
    assert RouterSettings(monitor={"address": "kw:2"}).monitor.address == "kw:2"
    monkeypatch.setenv("MODELHUB_ROUTER_MONITOR__TIMEOUT_S", "0")
    with pytest.raises(ValidationError, match="timeout_s"):
        RouterSettings()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MODELHUB_ROUTER_RETRIES", "11"),
        ("MODELHUB_ROUTER_RETRIES", "-1"),
        ("MODELHUB_ROUTER_CONFIG_WARM_S", "-0.1"),
        ("MODELHUB_ROUTER_INFERENCE_TIMEOUT_S", "0"),
        ("MODELHUB_ROUTER_VERSION_READY_TIMEOUT_S", "-1"),
    ],
)
def test_out_of_range_values_are_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError):
        RouterSettings()


def test_split_addresses() -> None:
    assert split_addresses(" , ") == []
    assert split_addresses("a:1,,b:2") == ["a:1", "b:2"]
    assert split_addresses("a:1\nb:2") == ["a:1", "b:2"]
