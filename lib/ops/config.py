"""Edge: reads config.toml (+ COINBOT__ environment overrides) into one frozen, validated Config, and
secrets from .env into a redacting Secrets.

The one config loader. Each section is a frozen dataclass whose field defaults are the single source of
tunables; sections of pure modules (signals, portfolio, risk, ...) are defined next to the code that
uses them and composed here. Unknown keys, wrong types and out-of-range values raise ConfigError
naming the dotted key. Secrets are never part of Config.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import stat
import tomllib
import types
import typing
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from dotenv import dotenv_values
from loguru import logger

from lib.core.errors import ConfigError
from lib.core.secrets import SECRET_ENV_NAMES, Secrets, unknown_secret_names
from lib.core.symbols import split_symbol
from lib.data.data_section import DataSection
from lib.execution.carry_legs import CarrySection
from lib.execution.exchange_section import ExchangeSection
from lib.execution.managed_book import BookParams
from lib.execution.orders import OrderParams
from lib.execution.paper import PaperParams
from lib.execution.risk import RiskLimits
from lib.execution.simulated_params import SimulatedParams
from lib.ops.doctor import DoctorParams
from lib.ops.health import HealthParams
from lib.research.backtest_params import BacktestParams
from lib.research.ensemble_params import EnsembleParams
from lib.research.portfolio_params import PerpParams, SpotParams
from lib.research.signal_params import SignalParams
from lib.research.sleeves.params import CombinerParams, SizingParams, TrendParams, TurnoverParams
from lib.research.strategy_params import BOOK_STRATEGIES, StrategySection
from lib.research.study.params import StudyParams
from lib.research.universe_params import UniverseParams
from lib.research.walkforward_params import WalkForwardParams

ENV_PREFIX = "COINBOT__"
"""``COINBOT__SECTION__KEY=value`` overrides ``[section] key`` (values parsed as TOML, bare strings allowed)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PathsSection:
    """Directories, relative to the config file's directory unless absolute."""

    data_dir: str = "data"
    state_dir: str = "state"
    log_file: str = ""  # optional rotating log file (besides stderr); empty = stderr only

    def __post_init__(self) -> None:
        if not self.data_dir or not self.state_dir:
            raise ConfigError("paths.data_dir and paths.state_dir must not be empty")


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertsSection:
    """Telegram delivery. Token and chat id are secrets (.env), not config."""

    telegram_base_url: str = "https://api.telegram.org"
    timeout_ms: int = 10_000

    def __post_init__(self) -> None:
        if not self.telegram_base_url.startswith(("http://", "https://")):
            raise ConfigError(f"alerts.telegram_base_url must start with http(s)://, got {self.telegram_base_url!r}")
        if not 100 <= self.timeout_ms <= 60_000:
            raise ConfigError(f"alerts.timeout_ms must be in [100, 60000], got {self.timeout_ms}")


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggingSection:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    rotation_mb: int = 10
    retention_files: int = 5

    def __post_init__(self) -> None:
        if not 1 <= self.rotation_mb <= 1000:
            raise ConfigError(f"logging.rotation_mb must be in [1, 1000], got {self.rotation_mb}")
        if not 1 <= self.retention_files <= 100:
            raise ConfigError(f"logging.retention_files must be in [1, 100], got {self.retention_files}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ResearchSection:
    """Where research grids run (lib.ops.fanout): ``scheduler`` = a Dask scheduler address ("" = a local
    cluster of ``workers`` processes, 0 = one per core, 1 = serially in-process); research commands only."""

    scheduler: str = ""
    workers: int = 0
    worker_memory_limit: str = "auto"  # per local worker, Dask syntax ("2GB"); auto = RAM / workers

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ConfigError(f"research.workers must be >= 0 (0 = every core), got {self.workers}")
        if not self.worker_memory_limit.strip():
            raise ConfigError("research.worker_memory_limit must be \"auto\" or a size such as \"2GB\"")


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    exchange: ExchangeSection = field(default_factory=ExchangeSection)
    data: DataSection = field(default_factory=DataSection)
    paths: PathsSection = field(default_factory=PathsSection)
    alerts: AlertsSection = field(default_factory=AlertsSection)
    logging: LoggingSection = field(default_factory=LoggingSection)
    simulated: SimulatedParams = field(default_factory=SimulatedParams)
    strategy: StrategySection = field(default_factory=StrategySection)
    signals: SignalParams = field(default_factory=SignalParams)
    ensemble: EnsembleParams = field(default_factory=EnsembleParams)
    universe: UniverseParams = field(default_factory=UniverseParams)
    spot: SpotParams = field(default_factory=SpotParams)
    perp: PerpParams = field(default_factory=PerpParams)
    orders: OrderParams = field(default_factory=OrderParams)
    book: BookParams = field(default_factory=BookParams)
    risk: RiskLimits = field(default_factory=RiskLimits)
    paper: PaperParams = field(default_factory=PaperParams)
    backtest: BacktestParams = field(default_factory=BacktestParams)
    study: StudyParams = field(default_factory=StudyParams)  # backtest's research defaults (backtest --help)
    walkforward: WalkForwardParams = field(default_factory=WalkForwardParams)
    research: ResearchSection = field(default_factory=ResearchSection)  # research fan-out (lib.ops.fanout)
    trend: TrendParams = field(default_factory=TrendParams)  # sleeve book (trend_core, combined)
    sizing: SizingParams = field(default_factory=SizingParams)
    combiner: CombinerParams = field(default_factory=CombinerParams)
    turnover: TurnoverParams = field(default_factory=TurnoverParams)
    health: HealthParams = field(default_factory=HealthParams)
    doctor: DoctorParams = field(default_factory=DoctorParams)
    carry: CarrySection = field(default_factory=CarrySection)  # funding_carry: spot + USD-M accounts
    base_dir: Path = Path(".")  # the config file's directory (set by the loader, not a TOML key)

    def __post_init__(self) -> None:
        if self.strategy.timeframe not in self.data.timeframes:
            raise ConfigError(f"strategy.timeframe {self.strategy.timeframe!r} must be one of data.timeframes")
        wants_swap = self.strategy.name == "perp_market_neutral"
        if wants_swap != (self.exchange.market_type == "swap"):
            raise ConfigError(
                f"strategy.name {self.strategy.name!r} needs exchange.market_type = "
                f"{'swap' if wants_swap else 'spot'}"
            )
        _require_within_risk_caps(self)
        ignored = [s for s in self.data.symbols if split_symbol(s)[0] in self.book.ignored_assets]
        if ignored:
            raise ConfigError(f"book.ignored_assets names {', '.join(ignored)} of data.symbols: the bot would trade "
                              "what it must ignore; remove them from one of the two")

    @property
    def data_dir(self) -> Path:
        return self.base_dir / self.paths.data_dir

    @property
    def state_dir(self) -> Path:
        return self.base_dir / self.paths.state_dir


_NOT_FROM_TOML = frozenset({"base_dir"})


def _require_within_risk_caps(config: Config) -> None:
    """The strategy's caps of the traded market may not be looser than the risk caps: targets over a risk cap
    are clipped at every run (lib.execution.risk_targets), so such a config could never trade as written."""
    pairs = [("perp.max_asset_weight_frac", config.perp.max_asset_weight_frac, "risk.max_asset_weight_frac",
              config.risk.max_asset_weight_frac),
             ("perp.max_gross_leverage", config.perp.max_gross_leverage, "risk.max_gross_leverage",
              config.risk.max_gross_leverage)] if config.exchange.market_type == "swap" else [
        ("sizing.max_asset_weight_frac", config.sizing.max_asset_weight_frac, "risk.max_asset_weight_frac",
         config.risk.max_asset_weight_frac) if config.strategy.name in BOOK_STRATEGIES  # the sleeve books' cap
        else ("spot.max_asset_weight_frac", config.spot.max_asset_weight_frac, "risk.max_asset_weight_frac",
              config.risk.max_asset_weight_frac)]
    for strategy_key, strategy_cap, risk_key, risk_cap in pairs:
        if strategy_cap > risk_cap:
            raise ConfigError(f"{strategy_key} = {strategy_cap} is looser than {risk_key} = {risk_cap}: "
                              f"lower {strategy_key} or raise {risk_key}")


def load_config(path: Path | str, *, environ: typing.Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (TOML), apply ``COINBOT__SECTION__KEY`` overrides from ``environ``, validate. ConfigError:
    missing/unreadable file, bad TOML, unknown key, wrong type or out-of-range value."""
    config_path = Path(path)
    try:
        raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {config_path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config file {config_path}: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config file {config_path} is not valid TOML: {error}") from None
    _apply_env_overrides(raw, os.environ if environ is None else environ)
    config = _build(Config, raw, prefix="")
    return dataclasses.replace(config, base_dir=config_path.resolve().parent)


def load_alerts_section_best_effort(
    path: Path | str, *, environ: typing.Mapping[str, str] | None = None
) -> AlertsSection:
    """The [alerts] section even when the rest of the config is invalid, so a config error can still alert."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        _apply_env_overrides(raw, os.environ if environ is None else environ)
        return typing.cast(AlertsSection, _build(AlertsSection, raw.get("alerts", {}), prefix="alerts."))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ConfigError):
        return AlertsSection()


def _apply_env_overrides(raw: dict[str, Any], environ: typing.Mapping[str, str]) -> None:
    for name, text in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"environment override {name} must look like {ENV_PREFIX}SECTION__KEY")
        section, key = parts
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text  # a bare string such as paper or http://127.0.0.1:8080
        if isinstance(value, datetime.date | datetime.time):  # 2024-01-01 is a TOML date: keep it a string
            value = text
        target = raw.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"environment override {name}: [{section}] is not a section")
        target[key] = value


def _build(cls: type, raw: Any, *, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in _NOT_FROM_TOML}
    unknown = sorted(set(raw) - set(fields))
    renamed = getattr(cls, "RENAMED_KEYS", {})  # a key a section dropped: say what to write instead
    if moved := [key for key in unknown if key in renamed]:
        raise ConfigError(f"config key {prefix}{moved[0]} is no longer read: write {prefix}{renamed[moved[0]]}")
    if unknown:
        raise ConfigError(f"unknown config key {prefix}{unknown[0]} (known: {', '.join(sorted(fields))})")
    values = {name: _coerce(hints[name], raw[name], key=f"{prefix}{name}") for name in raw}
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(f"invalid value in [{prefix.rstrip('.')}]: {error}") from None


def _coerce(hint: Any, value: Any, *, key: str) -> Any:
    origin = typing.get_origin(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value, prefix=f"{key}.")
    if origin in (types.UnionType, typing.Union):
        options = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _coerce(options[0], value, key=key)
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {type(value).__name__}")
        item_hint = typing.get_args(hint)[0]
        return tuple(_coerce(item_hint, item, key=f"{key}[{index}]") for index, item in enumerate(value))
    return _coerce_scalar(hint, value, key=key)


def _coerce_scalar(hint: Any, value: Any, *, key: str) -> Any:
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        return float(value)
    if hint is Decimal:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise ConfigError(f"{key} must be a number, got {value!r}") from None
        if not number.is_finite():
            raise ConfigError(f"{key} must be finite, got {value!r}")
        return number
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported config type {hint!r}")


def load_secrets(env_file: Path, *, environ: typing.Mapping[str, str] | None = None, strict: bool = True) -> Secrets:
    """Secrets from ``env_file`` (if present), overridden by the process environment.

    Warns when the file is readable by group/others. Never logs a value. ConfigError (naming the file, never
    quoting it) when it exists but cannot be read or is not UTF-8, or (``strict``) holds an unknown COINBOT name."""
    file_values: dict[str, str | None] = {}
    if env_file.is_file():
        try:
            mode = env_file.stat().st_mode
            file_values = dotenv_values(env_file, encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:  # not the error's text: a decode error quotes bytes
            reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
            raise ConfigError(f"cannot read {env_file} ({reason}): make it UTF-8 text this user reads") from None
        if strict and (unknown := unknown_secret_names(file_values)):
            raise ConfigError(f"{env_file}: unknown name {unknown[0]} (known: {', '.join(SECRET_ENV_NAMES.values())})")
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            logger.warning("{} is readable by other users; run: chmod 600 {}", env_file.name, env_file.name)
    source = os.environ if environ is None else environ
    values = {
        attribute: (source.get(env_name) or file_values.get(env_name) or "").strip()
        for attribute, env_name in SECRET_ENV_NAMES.items()
    }
    return Secrets(**values)


def load_secrets_best_effort(env_file: Path) -> tuple[Secrets, str]:
    """``load_secrets``, or no secrets and the error's text when .env cannot be read (a config error path)."""
    try:
        return load_secrets(env_file), ""
    except ConfigError as error:
        try:  # an unknown name: the secrets that are there still alert it
            return load_secrets(env_file, strict=False), str(error)
        except ConfigError:
            return Secrets(), str(error)
