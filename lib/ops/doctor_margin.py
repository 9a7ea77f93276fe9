"""Edge: doctor's perp-margin rows: each perp short of positions.json at its last rebalance marks (cross margin,
lib.core.short_margin): margin ratio, liquidation price and 24 h liquidation probability, with the volatility
forecast the rebalance guard uses (EWMA 0.94 of the stored daily closes, lib.execution.tail_risk_checks).
``findings`` reads those files; the rows themselves (``check_perp_margin``) are pure.

FAIL: at or past liquidation (margin ratio >= 1). WARN: above ``risk.max_liquidation_prob_24h`` (the next
rebalance cuts it first) or not assessable (the next rebalance refuses to add risk). No shorts: no row.
The funding-carry book and the combined book with the funding_carry sleeve (two accounts): the shorts' margin
balance is the futures wallet (``wallets``), their volatility comes from the USD-M venue's candles, one more row
shows both wallets' balances, one per USD-M candle series' freshness and one per short's hedge (lib.ops.doctor_hedge;
its lot tolerance takes the spot and perp markets' amount steps: the simulated exchange's markets, else one quick
ccxt load_markets per venue, no retries).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping
from dataclasses import replace
from decimal import Decimal

from lib.core.errors import CoinbotError, StateError
from lib.core.findings import Finding
from lib.core.paths import ProjectPaths
from lib.core.secrets import Secrets
from lib.core.short_margin import ShortMargin, assess_shorts
from lib.core.state import Positions, Targets
from lib.core.storage import read_json, read_jsonl
from lib.core.symbols import is_perpetual, quote_of, to_spot
from lib.core.timeframes import format_ms
from lib.core.venue import MarketRules
from lib.execution.carry_combo import split_targets
from lib.execution.carry_legs import futures_section
from lib.execution.ccxt_client import call, create_client
from lib.execution.ccxt_markets import to_market_rules
from lib.execution.exchange_section import ExchangeSection
from lib.execution.journal import parse_journal
from lib.execution.rebalance_engine import rebalance_id_of
from lib.execution.risk import RiskLimits
from lib.execution.tail_risk_checks import forecast_volatility
from lib.execution.venue_session import connect_market_data
from lib.ops.carry_report import candle_paths, is_carry_book, is_combined_carry, newest_perp_candles
from lib.ops.config import Config
from lib.ops.doctor import FileFacts
from lib.ops.doctor_hedge import check_hedges
from lib.ops.health import check_series

CHECK = "perp margin"
WALLETS_CHECK = "carry wallets"
PERP_DATA_CHECK = "carry perp data"


def read_positions(facts: FileFacts) -> Positions | None:
    """positions.json as doctor read it; None when absent or invalid (check_positions reports that)."""
    if not facts.exists or facts.read_error:
        return None
    try:
        return Positions.from_dict(facts.document)
    except StateError:
        return None


def held_perp_shorts(facts: FileFacts) -> list[str]:
    positions = read_positions(facts)
    return sorted(s for s, a in positions.amounts_base.items() if ":" in s and a < 0) if positions else []


def _row(short: ShortMargin, positions: Positions, limits: RiskLimits) -> Finding:
    detail = (f"{short.symbol} short {short.quantity:g} @ {short.price:g} (marks of {format_ms(positions.updated_ms)}):"
              f" margin ratio {short.margin_ratio:.4f}, liquidation price {short.liquidation_price:g} "
              f"({short.liquidation_price / short.price - 1:+.1%}), P(24 h) {short.liquidation_prob_24h:.3%}")
    if short.margin_ratio >= 1 or short.liquidation_price <= short.price:
        return Finding(CHECK, "fail", detail + ": at or past liquidation",
                       "add collateral to the futures wallet now, or close the short by hand")
    if short.breaches:
        return Finding(CHECK, "warn", f"{detail} > {limits.max_liquidation_prob_24h:.3%}",
                       f"the next rebalance cuts it to {short.safe_quantity:g} first; or add "
                       f"{short.collateral_needed_quote:.2f} collateral to the futures wallet")
    return Finding(CHECK, "ok", detail)


def margin_balance(positions: Positions) -> float:
    """The shorts' cross-margin balance: the futures wallet of a two-wallet (carry) book, else the account's cash."""
    return positions.wallets.get("futures", positions.cash_quote) if positions.wallets else positions.cash_quote


def check_wallets(facts: FileFacts, quote: str) -> list[Finding]:
    """The carry book's two wallets at the last rebalance (positions.json ``wallets``)."""
    positions = read_positions(facts)
    if positions is None:
        return []
    if set(positions.wallets) != {"spot", "futures"}:
        return [Finding(WALLETS_CHECK, "warn", "positions.json has no spot/futures wallets for the carry book",
                        "run rebalance (the carry path writes both wallets)")]
    return [Finding(WALLETS_CHECK, "ok", f"spot {positions.wallets['spot']:.2f} {quote} free, futures "
                                         f"{positions.wallets['futures']:.2f} {quote} margin balance (at "
                                         f"{format_ms(positions.updated_ms)})")]


def check_perp_margin(facts: FileFacts, daily_volatility: Mapping[str, float], *, limits: RiskLimits) -> list[Finding]:
    """One row per perp short (see the module docstring)."""
    positions = read_positions(facts)
    if positions is None or not held_perp_shorts(facts):
        return []
    perps = {s: a for s, a in positions.amounts_base.items() if ":" in s and a != 0}
    try:
        shorts = assess_shorts(perps, positions.marks, margin_balance(positions), daily_volatility,
                               max_probability=limits.max_liquidation_prob_24h,
                               fallback_rate=limits.fallback_maintenance_rate)
    except CoinbotError as error:
        return [Finding(CHECK, "warn", f"cannot assess the shorts: {error}",
                        "run fetch_prices (rebalance refuses to add risk while the shorts' risk is unknown)")]
    return [_row(short, positions, limits) for short in shorts]


def check_perp_data(newest: Mapping[tuple[str, str], int | None], *, now_ms: int,
                    max_staleness_bars: int) -> list[Finding]:
    """The carry book's USD-M candles (``(perp, timeframe) -> newest closed open``): one row per series."""
    rows = []
    for series in check_series(newest, now_ms=now_ms, max_staleness_bars=max_staleness_bars):
        where = f"{series.symbol} {series.timeframe} (USD-M)"
        if series.last_open_ms is None:
            rows.append(Finding(PERP_DATA_CHECK, "warn", f"{where}: no stored candles",
                                "run fetch_prices (funding_carry fetches the USD-M venue too)"))
        elif series.is_stale:
            rows.append(Finding(PERP_DATA_CHECK, "warn", f"{where}: newest {format_ms(series.last_open_ms)}, "
                                                         f"{series.lag_bars} bar(s) behind", "run fetch_prices"))
        else:
            rows.append(Finding(PERP_DATA_CHECK, "ok", f"{where}: newest {format_ms(series.last_open_ms)}"))
    return rows


def findings(paths: ProjectPaths, config: Config, now_ms: int | None = None) -> list[Finding]:
    """check_perp_margin on state/positions.json with the EWMA volatility of the shorts' stored candles; for a
    carry book also both wallets, the USD-M candles' freshness and each short's hedge (``now_ms``: the clock when
    not given)."""
    data: list[Finding] = []
    carry = is_carry_book(config)
    if carry:
        now = int(time.time() * 1000) if now_ms is None else now_ms
        newest = newest_perp_candles(candle_paths(paths, config), config, now)
        data = check_perp_data(newest, now_ms=now, max_staleness_bars=config.health.data_max_staleness_bars)
    try:
        facts = FileFacts(exists=True, document=read_json(paths.positions)) if paths.positions.exists() else None
    except CoinbotError:
        return data  # check_positions reports an unreadable file
    if facts is None:
        return data
    wallets = check_wallets(facts, quote_of(config.data.symbols[0])) if carry else []
    shorts = held_perp_shorts(facts)
    if not shorts:
        return data + wallets
    volatility = forecast_volatility(candle_paths(paths, config), config.strategy.timeframe, shorts)
    positions = read_positions(facts)
    hedges: list[Finding] = []
    if carry and positions is not None:
        directional, risk_changed = _directional_targets(paths, config, positions)
        coins = {s for perp in shorts for s in (to_spot(perp), perp)}
        steps, unknown = amount_steps(config, coins, now_ms=int(time.time() * 1000) if now_ms is None else now_ms)
        hedges = check_hedges(positions, directional, max_unhedged_quote=float(config.carry.max_unhedged_quote),
                              quote=quote_of(config.data.symbols[0]), risk_changed=risk_changed,
                              amount_steps=steps, steps_unknown=unknown)
    return data + wallets + check_perp_margin(facts, volatility, limits=config.risk) + hedges


def _directional_targets(paths: ProjectPaths, config: Config, positions: Positions
                         ) -> tuple[dict[str, float] | None, bool]:
    """(spot symbol -> the directional target weight the last rebalance traded, whether its risk pass scaled or
    refused the targets): ({}, False) for funding_carry; (None, False) when targets.json is unreadable or is not the
    one the last rebalance traded (compute_signals ran since)."""
    if not is_combined_carry(config):
        return {}, False
    try:
        targets = Targets.from_dict(read_json(paths.targets))
        if rebalance_id_of(targets) != positions.last_rebalance_id:
            return None, False
        pairs, spot_only, _ = split_targets(targets.weights, held=positions.amounts_base, hold=targets.hold,
                                            limits=config.risk)
        lines, _ = read_jsonl(paths.journal)
        events = parse_journal(lines)
    except CoinbotError:
        return None, False
    changed = any(e.event == "risk_rejected" and e.rebalance_id == positions.last_rebalance_id for e in events)
    return {s: p.directional_weight for s, p in {**spot_only, **pairs}.items()}, changed


def amount_steps(config: Config, symbols: Collection[str], *, now_ms: int) -> tuple[dict[str, Decimal], str]:
    """(symbol -> its market's amount step in base units, why some are missing): spot symbols on ``exchange.id``,
    perps on the USD-M venue (``carry.futures_exchange_id``). Public market data only, one attempt per venue within
    ``doctor.exchange_timeout_ms`` (a doctor reports, it does not wait out an outage; the exchange row says more)."""
    steps: dict[str, Decimal] = {}
    problems: list[str] = []
    for section in (config.exchange, futures_section(config.exchange, config.carry)):
        wanted = sorted(s for s in symbols if is_perpetual(s) == (section.market_type == "swap"))
        if not wanted:
            continue
        try:
            rules = _market_rules(section, config, wanted, now_ms=now_ms)
        except CoinbotError as error:
            problems.append(f"{section.id} {section.market_type} markets not read ({error})")
            continue
        for symbol in wanted:
            rule = rules.get(symbol)
            if rule is None:
                problems.append(f"{symbol} not listed on {section.id}")
            else:
                steps[symbol] = rule.amount_step * rule.contract_size
    return steps, "; ".join(problems)


def _market_rules(section: ExchangeSection, config: Config, wanted: list[str], *,
                  now_ms: int) -> dict[str, MarketRules]:
    if section.id == "simulated":
        return connect_market_data(section, Secrets(), now_ms=now_ms, simulated=config.simulated).load_markets()
    quick = replace(section, timeout_ms=min(section.timeout_ms, config.doctor.exchange_timeout_ms))
    client = create_client(quick, Secrets())
    markets = call(client, f"load_markets {section.id}", client.load_markets, idempotent=False)
    return {symbol: to_market_rules(markets[symbol], precision_mode=int(client.precisionMode))
            for symbol in wanted if symbol in markets}
