"""All configuration, from environment variables (and an optional `.env`), validated once.

Names follow the seeds (POLYGON_*, SCHWAB_*, RISK_*, FEATURE_*); new ones use the same
style. `.env.example` lists every variable with its default.
"""

from __future__ import annotations

import datetime as dt
import re
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from alphagen_core.domain.engine import StrategyConfig
from alphagen_core.domain.risk import RiskConfig

LIVE_CONFIRMATION_PHRASE = "I-ACCEPT-REAL-MONEY-RISK"
_WHOLE_NUMBER = re.compile(r"\s*[+-]?[0-9]+\s*")


class Mode(StrEnum):
    REPLAY = "replay"
    PAPER = "paper"
    LIVE = "live"


class SettingsError(ValueError):
    """A readable list of bad settings. Never echoes a value (it might be a secret)."""


PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # --- Polygon (Massive) ---
    polygon_api_key: SecretStr = SecretStr("")
    polygon_equity_ticker: str = "QQQ"
    polygon_options_underlying: str = "QQQ"
    polygon_rest_url: str = "https://api.massive.com"
    polygon_stock_ws_url: str = "wss://socket.massive.com/stocks"
    polygon_options_ws_url: str = "wss://socket.massive.com/options"
    polygon_s3_access_key: SecretStr = SecretStr("")
    polygon_s3_secret_key: SecretStr = SecretStr("")
    polygon_s3_endpoint: str = "https://files.massive.com"
    polygon_s3_bucket: str = "flatfiles"

    # --- Schwab ---
    schwab_api_key: SecretStr = SecretStr("")
    schwab_api_secret: SecretStr = SecretStr("")
    schwab_account_id: SecretStr = SecretStr("")
    schwab_base_url: str = "https://api.schwabapi.com"
    schwab_paper: bool = True
    schwab_live_confirmation: SecretStr = SecretStr("")
    schwab_callback_url: str = "https://127.0.0.1:8182"
    schwab_token_path: Path = Path("schwab_token.json")

    # --- risk and strategy ---
    risk_stop_loss_multiple: float = Field(2.0, gt=1.0)
    risk_take_profit_multiple: float = Field(0.5, gt=0.0, lt=1.0)
    risk_max_position_size: int = Field(25, gt=0, strict=False)
    risk_trading_capital: PositiveFloat = 5_000_000.0
    signal_cooldown_seconds: int = Field(30, ge=0)
    no_entry_minutes_before_close: int = Field(30, ge=0)
    flatten_minutes_before_close: int = Field(5, ge=1)
    option_strike_offset: int = Field(0, ge=0)
    fee_per_contract: NonNegativeFloat = 0.65
    fee_regulatory_per_contract: NonNegativeFloat = 0.0
    paper_half_spread: NonNegativeFloat = 0.02
    market_data_stale_seconds: int = Field(180, gt=0)
    order_limit_slippage: NonNegativeFloat = 0.05  # live orders: limit = bid - this / ask + this
    # --- risk controls ---
    risk_max_daily_loss: NonNegativeFloat = 100_000.0  # dollars, realized + unrealized; 0 = off
    risk_max_entries_per_day: int = Field(40, ge=0)  # 0 = off
    order_max_deviation: PositiveFloat = 0.25  # an entry's limit at most this fraction of the mid from it
    # A short found at the broker at start that the book does not know: manage it by the rules
    # (true) or halt the session and leave it to the operator (false, the default).
    alphagen_adopt_unknown_positions: bool = False

    # --- platform ---
    alphagen_mode: Mode = Mode.REPLAY
    alphagen_duckdb_path: Path = Path("data/alphagen.duckdb")
    alphagen_flatfiles_source: str = "data/flatfiles"  # a local folder in S3 key layout, or "s3"
    # The first session the flat files cover: replay partitions start here. Polygon's options
    # minute aggregates begin in 2014 (its stocks earlier), so the default admits every day of
    # both; a later date only shortens the partition list in the UI.
    alphagen_flatfiles_first_day: dt.date = dt.date(2014, 1, 2)
    alphagen_cache_dir: Path = Path("data/cache")
    alphagen_chart_dir: Path = Path("data/charts")
    alphagen_data_provider: Literal["polygon", "schwab"] = "polygon"
    # Live: stream the underlying's minute bars and the traded contracts' quotes from Polygon's
    # websockets (needs POLYGON_API_KEY), REST as the fallback; false: poll REST only.
    alphagen_market_stream: bool = True
    alphagen_broker: Literal["paper", "schwab"] = "paper"
    # The storage a new Dagster home gets: dagster.yaml (SQLite) or dagster.postgres.yaml.
    alphagen_dagster_storage: Literal["sqlite", "postgres"] = "sqlite"
    feature_enable_chart: bool = True
    # A simulated clock for every process (see alphagen_core/domain/clock.py); unset: wall clock.
    alphagen_sim_start: str = ""
    alphagen_sim_epoch: str = ""
    alphagen_sim_speed: str = ""

    # --- operations ---
    # GET /health and /metrics while `alphagen run` or `alphagen sim-session` runs; 0 = off.
    alphagen_health_host: str = "127.0.0.1"
    alphagen_health_port: int = Field(9108, ge=0, le=65535)
    # A minute run is late when the last minute processed is this many minutes behind the
    # last closed one (session time); /health then answers 503.
    alphagen_minute_late_minutes: int = Field(3, ge=1)
    # Slack-compatible JSON POST per alert (empty: alerts are only logged); it may carry a token.
    alphagen_alert_webhook_url: SecretStr = SecretStr("")
    alphagen_alert_timeout_s: PositiveFloat = 2.0  # per POST; sent from a background thread
    alphagen_alert_retries: int = Field(3, ge=0, le=10)  # further tries of a failed POST
    alphagen_token_alert_hours: PositiveFloat = 24.0  # alert when the Schwab refresh token has less left
    # Logs: auto = readable at a terminal, JSON lines otherwise; json; console.
    alphagen_log_format: Literal["auto", "json", "console"] = "auto"
    alphagen_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("risk_max_position_size", mode="before")
    @classmethod
    def _whole_contracts(cls, value: object) -> object:
        match value:
            case bool():  # pydantic would take True as 1 contract
                whole = False
            case float():
                whole = value.is_integer()
            case str():
                whole = _WHOLE_NUMBER.fullmatch(value) is not None
            case _:
                whole = True
        if not whole:
            raise ValueError("must be a whole number of contracts")
        return value

    @field_validator("alphagen_log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("alphagen_log_format", mode="before")
    @classmethod
    def _lower_format(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _flatten_before_no_entry(self) -> Settings:
        no_entry = self.no_entry_minutes_before_close
        if no_entry and self.flatten_minutes_before_close > no_entry:
            raise ValueError(
                "FLATTEN_MINUTES_BEFORE_CLOSE must not exceed NO_ENTRY_MINUTES_BEFORE_CLOSE"
            )
        return self

    def risk_config(self) -> RiskConfig:
        return RiskConfig(
            stop_loss_multiple=self.risk_stop_loss_multiple,
            take_profit_multiple=self.risk_take_profit_multiple,
            max_position_size=self.risk_max_position_size,
            trading_capital=self.risk_trading_capital,
            fee_per_contract=self.fee_per_contract,
            fee_regulatory_per_contract=self.fee_regulatory_per_contract,
            max_daily_loss=self.risk_max_daily_loss,
            max_entries_per_day=self.risk_max_entries_per_day,
            order_max_deviation=self.order_max_deviation,
        )

    def strategy_config(self) -> StrategyConfig:
        return StrategyConfig(
            risk=self.risk_config(),
            cooldown=dt.timedelta(seconds=self.signal_cooldown_seconds),
            no_entry_before_close=dt.timedelta(minutes=self.no_entry_minutes_before_close),
            flatten_before_close=dt.timedelta(minutes=self.flatten_minutes_before_close),
            strike_offset=self.option_strike_offset,
            stale_after=dt.timedelta(seconds=self.market_data_stale_seconds),
        )

    @property
    def live_enabled(self) -> bool:
        """SCHWAB_PAPER=false *and* the confirmation phrase: the Schwab client's own last check.
        Which route a process trades on is `alphagen_core.application.gate.route`'s decision."""
        return (
            not self.schwab_paper
            and self.schwab_live_confirmation.get_secret_value() == LIVE_CONFIRMATION_PHRASE
        )

    def secret_values(self) -> list[str]:
        """Every configured secret, for the log redactor."""
        return [
            v.get_secret_value()
            for v in (
                self.polygon_api_key,
                self.polygon_s3_access_key,
                self.polygon_s3_secret_key,
                self.schwab_api_key,
                self.schwab_api_secret,
                self.schwab_account_id,
                self.schwab_live_confirmation,
                self.alphagen_alert_webhook_url,
            )
            if v.get_secret_value()
        ]


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, turning validation errors into one clear message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_input=False, include_url=False):
            name = ".".join(str(p) for p in err["loc"]).upper() or "settings"
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"invalid setting {name}: {msg}" if name != "settings" else f"invalid settings: {msg}")
    # Raised outside the except block so that the ValidationError, whose text quotes the
    # offending input (perhaps a secret pasted into the wrong variable), is not even kept
    # as __context__ on the SettingsError. One line per bad variable, naming it.
    raise SettingsError("\n".join(problems))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
