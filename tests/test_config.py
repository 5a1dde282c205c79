"""Configuration: the file, the environment, clear errors, and documentation of every key."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import BaseModel

from connector.config import ConfigError, Settings, load_settings, parse_duration, signing_keys

ROOT = Path(__file__).resolve().parent.parent


def test_example_config_is_valid():
    """The shipped example config loads and has the demo flow."""
    settings = load_settings(ROOT / "connector.example.toml")
    assert "demo" in settings.flows
    assert settings.flows["demo"].timeout == timedelta(hours=24)


def test_environment_overrides_file(tmp_path, monkeypatch):
    """CONNECTOR_* variables win over the file."""
    path = tmp_path / "c.toml"
    path.write_text('public_url = "http://a.example"\napi_keys = ["k"]\n')
    monkeypatch.setenv("CONNECTOR_PUBLIC_URL", "https://b.example/")
    monkeypatch.setenv("CONNECTOR_API_KEYS", '["x", "y"]')
    settings = load_settings(path)
    assert settings.public_url == "https://b.example"
    assert settings.api_keys == ["x", "y"]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("surprise = 1\n", "surprise: unknown key"),
        ('[flows.a]\ntimeout = "soon"\n', "flows.a.timeout"),
        ('[flows.a]\non_timeout = "maybe"\n', "flows.a.on_timeout"),
        ('[flows.a]\nreviewers = [{ name = "x" }]\n', "flows.a.reviewers.0"),
        ('[flows.a]\ncolour = "red"\n', "flows.a.colour: unknown key"),
        ('public_url = "ftp://x"\n', "public_url"),
        ('database_url = "mysql://db/hitl"\n', "database_url"),
        ('database_url = "sqlite:///"\n', "database_url"),
        ('job_lease = "10s"\n', "job_lease must be longer than delivery_timeout"),
        ("this is not toml", "not valid TOML"),
    ],
)
def test_bad_config_names_the_key(tmp_path, text, needle):
    """A bad value or unknown key fails with a message naming it."""
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert needle in str(caught.value)


def test_durations():
    """Durations accept s/m/h/d and combinations; nonsense is refused."""
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("30m") == timedelta(minutes=30)
    assert parse_duration("7d") == timedelta(days=7)
    assert parse_duration("1h30m") == timedelta(minutes=90)
    for bad in ("", "5", "5x", "0s", "-1h", True):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_secret_key_is_generated_once(tmp_path):
    """With no secret_keys, one key is generated, kept private, and reused."""
    settings = load_settings(None, data_dir=str(tmp_path / "var"))
    first = signing_keys(settings)
    second = signing_keys(settings)
    assert first == second and len(first[0]) >= 40
    assert (tmp_path / "var" / "secret_key").stat().st_mode & 0o777 == 0o600


def test_check_config_command(tmp_path):
    """check-config prints the flows, and exits 1 with the reason on a bad file."""
    good = subprocess.run(
        [sys.executable, "-m", "connector", "check-config", str(ROOT / "connector.example.toml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert good.returncode == 0 and "demo" in good.stdout
    bad_file = tmp_path / "bad.toml"
    bad_file.write_text('[flows.x]\ntimeout = "forever"\n')
    bad = subprocess.run(
        [sys.executable, "-m", "connector", "check-config", "--config", str(bad_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 1 and "flows.x.timeout" in bad.stderr


def _keys(model: type[BaseModel]) -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        keys.add(field.alias or name)
        for arg in (field.annotation, *getattr(field.annotation, "__args__", ())):
            inner = getattr(arg, "__args__", (arg,))
            for candidate in (arg, *inner):
                if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                    keys |= _keys(candidate)
    return keys


def test_every_setting_is_documented():
    """Each configuration key appears, in backticks, somewhere in docs/."""
    docs = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "docs").glob("*.md"))
    documented = set(re.findall(r"`([a-z_][a-z0-9_]*)", docs))
    missing = sorted(_keys(Settings) - documented)
    assert not missing, f"undocumented settings: {missing}"
