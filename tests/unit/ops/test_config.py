from __future__ import annotations

import os
from pathlib import Path

import pytest

from lib.core.errors import ConfigError
from lib.execution.risk_live_key import check_mode_allowed
from lib.ops.config import Config, Secrets, load_config, load_secrets

REPO_ROOT = Path(__file__).resolve().parents[3]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_defaults_from_empty_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config.exchange.id == "simulated" and config.exchange.mode == "paper"
    assert 20 <= len(config.data.symbols) <= 30
    assert config.data.timeframes == ("1d", "1h")
    assert config.base_dir == tmp_path.resolve()
    assert config.state_dir == tmp_path.resolve() / "state"


def test_shipped_config_is_valid() -> None:
    config = load_config(REPO_ROOT / "config.toml", environ={})
    assert isinstance(config, Config)


def test_values_are_typed(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """
[exchange]
id = "binance"
rest_base_url = "http://127.0.0.1:9999"
[data]
symbols = ["BTC/USDT", "ETH/USDT"]
timeframes = ["4h"]
max_jump_frac = 1
[strategy]
timeframe = "4h"
"""), environ={})
    assert config.data.symbols == ("BTC/USDT", "ETH/USDT")
    assert config.data.max_jump_frac == 1.0 and isinstance(config.data.max_jump_frac, float)
    assert config.exchange.rest_base_url == "http://127.0.0.1:9999"


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[exchange]\nnope = 1", "exchange.nope"),
        ("[nosuchsection]\na = 1", "nosuchsection"),
        ("[exchange]\nmode = \"yolo\"", "exchange.mode"),
        ("[exchange]\nid = \"binance\"\nmode = \"casino\"", "exchange.mode"),
        ("[exchange]\ntimeout_ms = \"fast\"", "exchange.timeout_ms"),
        ("[exchange]\ntimeout_ms = 5", "exchange.timeout_ms"),
        ("[exchange]\nrest_base_url = \"ftp://x\"", "exchange.rest_base_url"),
        ("[exchange]\nmode = \"live\"", "exchange.mode"),
        ("[exchange]\nlive_confirmed = \"yes\"", "exchange.live_confirmed"),
        ("[data]\nsymbols = \"BTC/USDT\"", "data.symbols"),
        ("[data]\nsymbols = [\"BTCUSDT\"]", "data.symbols"),
        ("[data]\nsymbols = []", "data.symbols"),
        ("[data]\nsymbols = [1]", "data.symbols[0]"),
        ("[data]\ntimeframes = [\"7x\"]", "data.timeframes"),
        ("[data]\nbackfill_start = \"yesterday\"", "data.backfill_start"),
        ("[data]\nmax_jump_frac = -1", "data.max_jump_frac"),
        ("[data]\nmax_jump_frac = nan", "data.max_jump_frac"),
        ("[data]\nfetch_limit = true", "data.fetch_limit"),
        ("[alerts]\ntelegram_base_url = \"api.telegram.org\"", "alerts.telegram_base_url"),
        ("[logging]\nlevel = \"LOUD\"", "logging.level"),
        ("exchange = 3", "exchange"),
        ("this is not toml", "not valid TOML"),
        ("[strategy]\ntimeframe = \"4h\"", "strategy.timeframe"),
        ("[strategy]\nname = \"perp_market_neutral\"", "strategy.name"),
        ("[risk]\nmax_asset_weight_frac = 2.0", "risk.max_asset_weight_frac"),
        ("[spot]\nmax_asset_weight_frac = 0", "spot.max_asset_weight_frac"),
        ("[orders]\nunknown = 1", "orders.unknown"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, toml: str, key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, toml), environ={})
    assert key in str(raised.value)
    assert raised.value.exit_code == 2


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_environment_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, "[exchange]\nid = \"binance\"\n")
    config = load_config(path, environ={
        "COINBOT__EXCHANGE__REST_BASE_URL": "http://127.0.0.1:1234",
        "COINBOT__DATA__FETCH_LIMIT": "200",
        "COINBOT__DATA__TIMEFRAMES": '["1h"]',
        "COINBOT__STRATEGY__TIMEFRAME": "1h",
        "UNRELATED": "x",
    })
    assert config.exchange.rest_base_url == "http://127.0.0.1:1234"
    assert config.data.fetch_limit == 200 and config.data.timeframes == ("1h",)
    with pytest.raises(ConfigError, match="data.fetch_limit"):
        load_config(path, environ={"COINBOT__DATA__FETCH_LIMIT": "lots"})
    with pytest.raises(ConfigError, match="SECTION__KEY"):
        load_config(path, environ={"COINBOT__FETCH_LIMIT": "1"})


def test_secrets_from_env_file_are_redacted(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("COINBOT_EXCHANGE_API_KEY=key-123\nCOINBOT_EXCHANGE_API_SECRET=sec-456\n")
    os.chmod(env_file, 0o600)
    secrets = load_secrets(env_file, environ={"COINBOT_TELEGRAM_BOT_TOKEN": "tok-789"})
    assert secrets.exchange_api_key == "key-123" and secrets.telegram_bot_token == "tok-789"
    for text in (repr(secrets), str(secrets), f"{secrets}", str([secrets])):
        assert "key-123" not in text and "sec-456" not in text and "tok-789" not in text
    assert set(secrets.values()) == {"key-123", "sec-456", "tok-789"}  # credentials only: no chat id
    assert secrets.has_exchange_keys and not secrets.has_telegram


def test_modes_that_need_keys_and_opt_in(tmp_path: Path) -> None:
    live = load_config(write(tmp_path, "[exchange]\nid = \"binance\"\nmode = \"live\"\n"), environ={}).exchange
    with pytest.raises(ConfigError, match="API_KEY"):
        check_mode_allowed(live, Secrets(), live_flag=True)
    keys = Secrets(exchange_api_key="k", exchange_api_secret="s")
    with pytest.raises(ConfigError, match="--live"):
        check_mode_allowed(live, keys, live_flag=False)
    check_mode_allowed(live, keys, live_flag=True)
    check_mode_allowed(load_config(write(tmp_path, ""), environ={}).exchange, Secrets(), live_flag=False)


@pytest.mark.parametrize(("toml", "keys"), [
    ("[strategy]\nname = \"spot_long_only\"\n[spot]\nmax_asset_weight_frac = 0.4\n[risk]\nmax_asset_weight_frac = 0.35",
     ("spot.max_asset_weight_frac", "risk.max_asset_weight_frac")),
    ("[strategy]\nname = \"trend_core\"\n[sizing]\nmax_asset_weight_frac = 0.5\n[risk]\nmax_asset_weight_frac = 0.35",
     ("sizing.max_asset_weight_frac", "risk.max_asset_weight_frac")),
    ("[exchange]\nmarket_type = \"swap\"\n[strategy]\nname = \"perp_market_neutral\"\n"
     "[perp]\nmax_asset_weight_frac = 0.3\n[risk]\nmax_asset_weight_frac = 0.2",
     ("perp.max_asset_weight_frac", "risk.max_asset_weight_frac")),
    ("[exchange]\nmarket_type = \"swap\"\n[strategy]\nname = \"perp_market_neutral\"\n"
     "[perp]\nmax_gross_leverage = 3.0\nmax_asset_weight_frac = 0.3",
     ("perp.max_gross_leverage", "risk.max_gross_leverage")),
])
def test_strategy_caps_looser_than_risk_caps_are_refused_naming_both(tmp_path: Path, toml: str,
                                                                     keys: tuple[str, str]) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, toml), environ={})
    assert all(key in str(raised.value) for key in keys)
    load_config(write(tmp_path, "[spot]\nmax_asset_weight_frac = 0.35\n[risk]\nmax_asset_weight_frac = 0.35"),
                environ={})  # equal caps are fine


def test_an_ignored_asset_in_the_universe_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="book.ignored_assets names BNB/USDT of data.symbols"):
        load_config(write(tmp_path, '[data]\nsymbols = ["BTC/USDT", "BNB/USDT"]\n[book]\nignored_assets = ["BNB"]'),
                    environ={})


def test_a_date_from_the_environment_is_the_string_the_readme_promises(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""), environ={"COINBOT__DATA__BACKFILL_START": "2024-01-01"})
    assert config.data.backfill_start == "2024-01-01"


def test_the_study_section_backtest_help_advertises_is_loaded(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "[study]\nmissing_funding = \"proxy\"\nrebalance_days_grid = [1]"),
                         environ={})
    assert config.study.missing_funding == "proxy" and config.study.rebalance_days_grid == (1,)
    with pytest.raises(ConfigError, match="study.missing_funding"):
        load_config(write(tmp_path, "[study]\nmissing_funding = \"maybe\""), environ={})


def test_an_env_file_that_cannot_be_decoded_is_a_config_error_without_its_content(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_bytes(b"COINBOT_EXCHANGE_API_SECRET=s\xe9cret-do-not-leak\n")
    with pytest.raises(ConfigError, match=r"\.env") as raised:
        load_secrets(env_file, environ={})
    assert "do-not-leak" not in str(raised.value)


@pytest.mark.parametrize("name", ["COINBOT_TELEGRAM_TOKEN", "COINBOT_EXCHANGE_APIKEY", "COINBOT__EXCHANGE__MODE"])
def test_a_misspelt_coinbot_name_in_the_env_file_is_a_config_error_naming_it(tmp_path: Path, name: str) -> None:
    env_file = tmp_path / ".env"  # silently ignored, a misspelt token would leave every alert in the log only
    env_file.write_text(f"COINBOT_TELEGRAM_CHAT_ID=42\n{name}=value-do-not-leak\nHTTPS_PROXY=http://proxy:3128\n")
    with pytest.raises(ConfigError, match=name) as raised:
        load_secrets(env_file, environ={})
    assert "do-not-leak" not in str(raised.value) and "COINBOT_TELEGRAM_BOT_TOKEN" in str(raised.value)


def test_a_jump_confirmation_longer_than_the_staleness_limit_is_refused_naming_both(tmp_path: Path) -> None:
    # a series cut before a pending jump lags up to jump_confirm_bars bars: beyond max_staleness_bars the
    # benchmark turns stale before the jump can be confirmed, and every run stops until a person decides
    with pytest.raises(ConfigError) as raised:
        load_config(write(tmp_path, "[data]\njump_confirm_bars = 3\nmax_staleness_bars = 2\n"), environ={})
    assert "data.jump_confirm_bars (3)" in str(raised.value) and "data.max_staleness_bars (2)" in str(raised.value)
    with pytest.raises(ConfigError, match=r"data.jump_confirm_bars \(2\).*data.max_staleness_bars \(1\)"):
        load_config(write(tmp_path, ""), environ={"COINBOT__DATA__MAX_STALENESS_BARS": "1"})
    equal = load_config(write(tmp_path, "[data]\njump_confirm_bars = 3\nmax_staleness_bars = 3\n"), environ={})
    assert equal.data.jump_confirm_bars == equal.data.max_staleness_bars == 3
