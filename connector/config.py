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

from .rules import compile_rule

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

# Zapier keeps a paused Zap's callback URL (z.generateCallbackUrl) for 30 days, no longer.
ZAPIER_CALLBACK_LIFETIME = timedelta(days=30)


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


def http_base_url(value: str, key: str) -> str:
    """An http(s) base URL without its trailing slash; ValueError naming `key` otherwise."""
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError(f"{key} must start with http:// or https://")
    return value.rstrip("/")


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
    auto_approve: str | None = None
    require_review: str | None = None
    auto_approve_mode: Literal["enforce", "shadow"] = "enforce"
    required_approvals: int = Field(1, ge=1)
    self_approval: bool = False
    escalate_after: Duration | None = None
    escalate_to: list[ReviewerConfig] = Field(default_factory=list)
    telegram_chat: int | None = None
    zapier: bool = False
    remind_after: Duration | None = None
    notify_outcome: bool = True

    @field_validator("auto_approve", "require_review")
    @classmethod
    def _rule_compiles(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        compile_rule(value)  # raises RuleSyntaxError (a ValueError) with the position
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FlowConfig:
        if self.required_approvals > 1 and self.editable:
            raise ValueError("edits need a single approver: drop editable or required_approvals")
        if self.required_approvals > len(self.reviewers) and self.reviewers:
            raise ValueError(
                f"required_approvals = {self.required_approvals} but only"
                f" {len(self.reviewers)} reviewer(s)"
            )
        if bool(self.escalate_after) != bool(self.escalate_to):
            raise ValueError("escalate_after and escalate_to go together")
        if self.escalate_after and self.escalate_after >= self.timeout:
            raise ValueError("escalate_after must be shorter than timeout")
        if self.remind_after is not None and self.remind_after >= self.timeout:
            raise ValueError("remind_after must be shorter than timeout (the run ends first)")
        if self.zapier and self.timeout > ZAPIER_CALLBACK_LIFETIME:
            raise ValueError(
                "timeout must be 30d or less when zapier = true:"
                " Zapier's callback URLs stop working after 30 days"
            )
        return self

    @model_validator(mode="after")
    def _telegram_reachable(self) -> FlowConfig:
        on_telegram = [r for r in self.reviewers if r.telegram_id is not None]
        if self.telegram_chat is not None and "telegram" not in self.channels:
            raise ValueError("telegram_chat is set but 'telegram' is not in channels")
        if "telegram" in self.channels and not on_telegram:
            # In a group only listed reviewers may decide, so either way someone needs an id.
            raise ValueError("channel 'telegram' needs at least one reviewer with a telegram_id")
        return self

    def reviewer(self, reviewer_id: str) -> ReviewerConfig | None:
        """The flow's reviewer (or escalation reviewer) with this id, if any."""
        wanted = reviewer_id.lower()
        return next((r for r in [*self.reviewers, *self.escalate_to] if r.id == wanted), None)

    def is_primary_reviewer(self, reviewer_id: str) -> bool:
        """True for the flow's own reviewers (not escalation reviewers)."""
        wanted = reviewer_id.lower()
        return any(r.id == wanted for r in self.reviewers)

    def is_escalation_reviewer(self, reviewer_id: str) -> bool:
        """True for reviewers who may decide once the run was escalated."""
        wanted = reviewer_id.lower()
        return any(r.id == wanted for r in self.escalate_to)

    def telegram_reviewer(self, telegram_id: int) -> ReviewerConfig | None:
        """The flow's reviewer (or escalation reviewer) with this Telegram user id, if any."""
        people = [*self.reviewers, *self.escalate_to]
        return next((r for r in people if r.telegram_id == telegram_id), None)


class TelegramSettings(BaseModel):
    """The `[telegram]` section: the bot, where its API lives, and how updates arrive."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    token: SecretStr
    api_url: str = "https://api.telegram.org"
    mode: Literal["webhook", "polling"] = "webhook"
    webhook_secret: SecretStr | None = None
    poll_timeout: Duration = timedelta(seconds=30)
    chat_rate: float = Field(1.0, gt=0)
    global_rate: float = Field(30.0, gt=0)

    @field_validator("token")
    @classmethod
    def _token_shape(cls, value: SecretStr) -> SecretStr:
        if not re.fullmatch(r"\d+:[A-Za-z0-9_-]+", value.get_secret_value()):
            raise ValueError("token must look like '123456:ABC-DEF…' (as BotFather gives it)")
        return value

    @field_validator("api_url")
    @classmethod
    def _api_url_is_http(cls, value: str) -> str:
        return http_base_url(value, "api_url")

    @field_validator("webhook_secret")
    @classmethod
    def _secret_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value() == "":
            return None
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", value.get_secret_value()):
            raise ValueError("webhook_secret must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return value

    @field_validator("poll_timeout")
    @classmethod
    def _poll_timeout_range(cls, value: timedelta) -> timedelta:
        if not 1 <= value.total_seconds() <= 50:
            raise ValueError("poll_timeout must be between 1s and 50s")
        return value

    @model_validator(mode="after")
    def _webhook_needs_secret(self) -> TelegramSettings:
        if self.mode == "webhook" and self.webhook_secret is None:
            raise ValueError('webhook_secret is required in webhook mode (or set mode = "polling")')
        return self

    @property
    def bot_id(self) -> str:
        """The bot's numeric id: the token's public part, safe to store and log."""
        return self.token.get_secret_value().split(":", 1)[0]


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
    database_pool_size: int = Field(10, ge=1, le=500)
    job_lease: Duration = timedelta(minutes=2)
    api_keys: list[str] = Field(default_factory=list)
    operator_keys: list[str] = Field(default_factory=list)
    api_key_header: str | None = None
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
    telegram: TelegramSettings | None = None
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
        return http_base_url(value, "public_url")

    @field_validator("database_url")
    @classmethod
    def _database_url_shape(cls, value: str) -> str:
        if value == "":
            return value
        if value.startswith("sqlite:///") and len(value) > len("sqlite:///"):
            return value
        if re.match(r"^postgres(ql)?://[^/\s]*/?", value):
            return value
        raise ValueError(
            "database_url must be sqlite:///<path> or postgresql://user@host[:port]/database"
        )

    @field_validator("api_key_header")
    @classmethod
    def _api_key_header_name(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}", value):
            raise ValueError(f"api_key_header {value!r} is not a valid HTTP header name")
        return value

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

    @model_validator(mode="after")
    def _telegram_configured(self) -> Settings:
        if self.telegram is None:
            for name, flow in self.flows.items():
                if "telegram" in flow.channels:
                    raise ValueError(
                        f"flow {name!r} uses channel 'telegram' but [telegram] is unset"
                    )
        return self

    @model_validator(mode="after")
    def _lease_outlasts_delivery(self) -> Settings:
        if self.job_lease <= self.delivery_timeout:
            # Otherwise another worker could take a delivery over while it is still running.
            raise ValueError("job_lease must be longer than delivery_timeout")
        return self

    @property
    def database(self) -> str:
        """The database in use: database_url, or the SQLite file in data_dir."""
        return self.database_url or f"sqlite:///{self.data_dir / 'connector.db'}"

    @property
    def shared_database(self) -> bool:
        """True for PostgreSQL, which several connector instances may share."""
        return self.database.startswith(("postgresql://", "postgres://"))

    @property
    def dev_mailbox_active(self) -> bool:
        """Whether /dev/mailbox is served: only without an SMTP server, and only if wanted."""
        return self.smtp is None and self.dev_mailbox


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
