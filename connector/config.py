"""Settings: one object built once from the TOML file and CONNECTOR_* environment variables."""

from __future__ import annotations

import os
import re
import secrets
import tomllib
from datetime import timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class ConfigError(Exception):
    """The configuration file or environment is not usable; the message names the key."""


def parse_duration(value: Any) -> timedelta:
    """Turn "90s", "30m", "24h", "7d" (or "1h30m", or a number of seconds) into a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return timedelta(seconds=value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration such as '90s', '30m', '24h' or '7d', got {value!r}")
    text = value.strip().lower()
    parts = _DURATION_PART.findall(text)
    if not parts or _DURATION_PART.sub("", text).strip():
        raise ValueError(f"invalid duration {value!r}: use e.g. '90s', '30m', '24h' or '7d'")
    seconds = sum(float(n) * _UNIT_SECONDS[unit] for n, unit in parts)
    if seconds <= 0:
        raise ValueError(f"duration {value!r} must be longer than zero")
    return timedelta(seconds=seconds)


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class ReviewerConfig(BaseModel):
    """A person who may decide runs of a flow: an email address and/or a Telegram user id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    email: str | None = None
    name: str | None = None
    telegram_id: int | None = None

    @model_validator(mode="after")
    def _has_a_channel(self) -> ReviewerConfig:
        if not self.email and self.telegram_id is None:
            raise ValueError("a reviewer needs an email or a telegram_id")
        if self.email and "@" not in self.email:
            raise ValueError(f"invalid reviewer email {self.email!r}")
        return self

    @property
    def id(self) -> str:
        """Stable identity used in links, decisions and the audit trail."""
        return self.email.lower() if self.email else f"telegram:{self.telegram_id}"

    @property
    def display_name(self) -> str:
        return self.name or self.email or f"Telegram user {self.telegram_id}"


class FlowConfig(BaseModel):
    """A named review policy: who reviews, on which channels, and what happens on timeout."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str = ""
    reviewers: list[ReviewerConfig] = Field(default_factory=list)
    channels: list[Literal["email", "telegram"]] = Field(default_factory=lambda: ["email"])  # type: ignore[arg-type]
    timeout: Duration = timedelta(hours=24)
    on_timeout: Literal["approve", "reject"] = "reject"
    editable: list[str] = Field(default_factory=list)
    resume_url: str = ""
    resume_headers: dict[str, str] = Field(default_factory=dict)
    remind_after: Duration | None = None
    notify_outcome: bool = True

    @model_validator(mode="after")
    def _reminder_before_timeout(self) -> FlowConfig:
        if self.remind_after is not None and self.remind_after >= self.timeout:
            raise ValueError("remind_after must be shorter than timeout (the run ends first)")
        return self

    def reviewer(self, reviewer_id: str) -> ReviewerConfig | None:
        """The flow's reviewer with this id, if any."""
        wanted = reviewer_id.lower()
        return next((r for r in self.reviewers if r.id == wanted), None)


# The job runner leases a job for 120 s; one email attempt (waiting for a connection, then
# sending) takes at most twice `timeout`, so 55 s keeps an attempt inside its lease.
_MAX_SMTP_TIMEOUT = timedelta(seconds=55)


class SmtpSettings(BaseModel):
    """The `[smtp]` section: the mail server that carries approval emails."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    host: str = Field(min_length=1)
    port: int | None = Field(None, ge=1, le=65535)
    tls: bool = False
    starttls: bool = False
    username: str | None = None
    password: SecretStr | None = None
    from_: str = Field(alias="from", min_length=3)
    timeout: Duration = timedelta(seconds=30)
    verify: bool = True
    max_connections: int = Field(4, ge=1, le=64)

    @field_validator("from_")
    @classmethod
    def _from_is_an_address(cls, value: str) -> str:
        if any(c in value for c in "\r\n"):
            raise ValueError("from must be one line")
        _, address = parseaddr(value)
        if "@" not in address:
            raise ValueError(
                f"from must be an email address such as 'Approvals <a@b.com>', got {value!r}"
            )
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout_fits_a_lease(cls, value: timedelta) -> timedelta:
        if value > _MAX_SMTP_TIMEOUT:
            raise ValueError("timeout may be at most 55s (an attempt must fit the job lease)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SmtpSettings:
        if self.tls and self.starttls:
            raise ValueError("choose one of tls (implicit TLS, port 465) or starttls (port 587)")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self

    @property
    def sender(self) -> str:
        """The bare address of `from`, used as the envelope sender."""
        return parseaddr(self.from_)[1]

    @property
    def effective_port(self) -> int:
        """`port`, or the usual one for the chosen TLS mode."""
        if self.port is not None:
            return self.port
        return 465 if self.tls else 587 if self.starttls else 25


class Settings(BaseSettings):
    """Every setting of the connector. Built once by the CLI (or a test) and passed down."""

    model_config = SettingsConfigDict(
        env_prefix="CONNECTOR_", extra="forbid", env_nested_delimiter="__"
    )

    public_url: str = "http://127.0.0.1:8080"
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    data_dir: Path = Path("var")
    database_url: str = ""
    api_keys: list[str] = Field(default_factory=list)
    secret_keys: list[str] = Field(default_factory=list)
    webhook_secret: str | None = None
    resume_allow: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(1024 * 1024, gt=0)
    delivery_timeout: Duration = timedelta(seconds=15)
    delivery_retry_for: Duration = timedelta(hours=24)
    retry_base_delay: Duration = timedelta(seconds=1)
    max_link_age: Duration = timedelta(days=90)
    dev_mailbox: bool = True
    smtp: SmtpSettings | None = None
    log_level: str = "INFO"
    flows: dict[str, FlowConfig] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's values arrive as init kwargs; CONNECTOR_* variables must win over them.
        return (env_settings, init_settings)

    @field_validator("public_url")
    @classmethod
    def _public_url_is_http(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("public_url must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret_shape(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        if not value.startswith("whsec_"):
            raise ValueError("webhook_secret must look like 'whsec_<base64>' (Standard Webhooks)")
        return value

    @field_validator("flows")
    @classmethod
    def _flow_names(cls, value: dict[str, FlowConfig]) -> dict[str, FlowConfig]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
                raise ValueError(f"flow name {name!r} may only use letters, digits, '_', '.', '-'")
        return value

    @property
    def dev_mailbox_active(self) -> bool:
        """Whether /dev/mailbox is served: only without an SMTP server, and only if wanted."""
        return self.smtp is None and self.dev_mailbox

    @property
    def database_path(self) -> str:
        """Where the SQLite database lives (database_url wins over data_dir)."""
        if self.database_url:
            if not self.database_url.startswith("sqlite:///"):
                raise ConfigError("database_url must be sqlite:///<path>")
            return self.database_url.removeprefix("sqlite:///")
        return str(self.data_dir / "connector.db")


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"  {where}: {message}")
    return "invalid configuration:\n" + "\n".join(lines)


def load_settings(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Read the TOML file (if any), apply CONNECTOR_* variables, then explicit overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {path}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc


def signing_keys(settings: Settings) -> list[str]:
    """The link-signing keys, newest last; generate and keep one in data_dir when none is set."""
    if settings.secret_keys:
        return list(settings.secret_keys)
    key_file = settings.data_dir / "secret_key"
    if key_file.exists():
        return [key_file.read_text(encoding="utf-8").strip()]
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    # Written with O_EXCL so two processes starting together cannot pick different keys.
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return [key_file.read_text(encoding="utf-8").strip()]
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key)
        handle.flush()
        os.fsync(handle.fileno())
    return [key]
