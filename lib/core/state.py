"""Pure: the records kept in state/ (targets, positions, journal events, run records), their schema
versions, and strict from_dict validation.

A state file that fails validation is a StateError: it is never silently reset, because a silently
reset position file is how a trading system buys everything twice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from lib.core.errors import StateError
from lib.core.symbols import split_symbol

TARGETS_SCHEMA_VERSION = 2  # 2: + ``book`` (sleeve book summary); version 1 files are still read
TARGETS_READABLE_VERSIONS = (1, 2)
POSITIONS_SCHEMA_VERSION = 1
JOURNAL_SCHEMA_VERSION = 1
RUN_RECORD_SCHEMA_VERSION = 1

STRATEGIES = ("spot_long_only", "perp_market_neutral", "trend_core", "xsection_momentum", "combined",
              "funding_carry")
"""The strategy names accepted in config and targets.json."""

JOURNAL_EVENTS = ("planned", "sent", "filled", "rejected", "failed", "skipped", "risk_rejected",
                  "transfer_sent", "transferred", "transfer_failed", "leg_mismatch")
"""Journal event kinds, one JSON line each in state/orders.jsonl (``transfer_*``: collateral moved between the
spot and futures wallets, lib.execution.wallet_transfer; ``leg_mismatch``: a carry pair left unhedged, and what
was done about it, lib.execution.carry_run)."""

RunEvent = Literal["start", "finish"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    """One line of state/runs.jsonl: a script's start or finish, for the health check."""

    script: str
    run_id: str
    event: RunEvent
    now_ms: int
    wall_ms: int
    host: str
    status: str
    exit_code: int | None
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": RUN_RECORD_SCHEMA_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunRecord:
        _require_version(raw, RUN_RECORD_SCHEMA_VERSION, "run record")
        try:
            return cls(
                script=_str(raw, "script"), run_id=_str(raw, "run_id"), event=raw["event"],
                now_ms=_int(raw, "now_ms"), wall_ms=_int(raw, "wall_ms"), host=_str(raw, "host"),
                status=_str(raw, "status"), exit_code=raw.get("exit_code"), error=str(raw.get("error", "")),
            )
        except KeyError as error:
            raise StateError(f"run record is missing {error}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Targets:
    """state/targets.json: what compute_signals wants held, and why.

    ``weights`` are signed fractions of equity (negative = short); ``breakdown`` maps each symbol to its
    per-signal contributions, score and sizing inputs, so a person can see why a weight is what it is.
    """

    as_of_ms: int  # open time of the last closed candle the targets were computed from
    created_ms: int
    strategy: str
    exchange: str
    market_type: str
    timeframe: str
    weights: dict[str, float]
    breakdown: dict[str, dict[str, Any]] = field(default_factory=dict)
    data_fingerprint: str = ""
    notes: tuple[str, ...] = ()
    book: dict[str, Any] = field(default_factory=dict)  # sleeve book summary (budgets, volatility, bets)
    hold: dict[str, str] = field(default_factory=dict)  # symbol -> why: keep the current position, trade nothing

    def to_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["notes"] = list(self.notes)
        return {"schema_version": TARGETS_SCHEMA_VERSION, **document}

    def signal_closes(self) -> dict[str, float]:
        """The close of each symbol's signal candle (from the breakdown), for the price sanity check."""
        closes: dict[str, float] = {}
        for symbol, entry in self.breakdown.items():
            close = entry.get("close") if isinstance(entry, dict) else None
            if _is_finite(close) and float(close) > 0:  # type: ignore[arg-type]  # _is_finite: a real number
                closes[symbol] = float(close)  # type: ignore[arg-type]
        return closes

    @classmethod
    def from_dict(cls, raw: Any) -> Targets:
        if not isinstance(raw, dict):
            raise StateError("targets.json must hold a JSON object")
        if raw.get("schema_version") not in TARGETS_READABLE_VERSIONS:
            _require_version(raw, TARGETS_SCHEMA_VERSION, "targets.json")  # raises, naming both versions
        strategy = _str(raw, "strategy")
        if strategy not in STRATEGIES:
            raise StateError(f"targets.json: unknown strategy {strategy!r}")
        weights = raw.get("weights")
        if not isinstance(weights, dict):
            raise StateError("targets.json: weights must be an object")
        for symbol, weight in weights.items():
            _check_symbol(symbol, "targets.json weights")
            if not _is_finite(weight):
                raise StateError(f"targets.json: weight of {symbol} is not a finite number: {weight!r}")
        breakdown = raw.get("breakdown", {})
        if not isinstance(breakdown, dict):
            raise StateError("targets.json: breakdown must be an object")
        hold = raw.get("hold", {})
        if not isinstance(hold, dict) or not all(isinstance(why, str) for why in hold.values()):
            raise StateError("targets.json: hold must map symbols to reasons")
        for symbol in hold:
            _check_symbol(symbol, "targets.json hold")
        return cls(
            as_of_ms=_int(raw, "as_of_ms"), created_ms=_int(raw, "created_ms"), strategy=strategy,
            exchange=_str(raw, "exchange"), market_type=_str(raw, "market_type"), timeframe=_str(raw, "timeframe"),
            weights={symbol: float(weight) for symbol, weight in weights.items()}, breakdown=breakdown,
            data_fingerprint=str(raw.get("data_fingerprint", "")), notes=tuple(raw.get("notes", ())),
            book=_book(raw),
            hold=dict(hold),
        )


def _book(raw: dict[str, Any]) -> dict[str, Any]:
    book = raw.get("book", {})
    if not isinstance(book, dict):
        raise StateError("targets.json: book must be an object")
    return book


def _require_version(raw: dict[str, Any], expected: int, what: str) -> None:
    version = raw.get("schema_version")
    if version != expected:
        raise StateError(f"{what}: schema_version {version!r} is not supported (expected {expected})")


def _is_finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _int(raw: dict[str, Any], key: str) -> int:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise StateError(f"{key} must be an integer, got {value!r}")
    return value


def _float(raw: dict[str, Any], key: str, *, minimum: float | None = None) -> float:
    value = raw.get(key)
    if not _is_finite(value):
        raise StateError(f"{key} must be a finite number, got {value!r}")
    number = float(value)  # type: ignore[arg-type]  # _is_finite checked it is an int/float
    if minimum is not None and number < minimum:
        raise StateError(f"{key} must be >= {minimum}, got {value!r}")
    return number


def _str(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise StateError(f"{key} must be a non-empty string, got {value!r}")
    return value


def _check_symbol(symbol: Any, where: str) -> None:
    try:
        split_symbol(symbol)
    except Exception:
        raise StateError(f"{where}: invalid symbol {symbol!r}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Positions:
    """state/positions.json, written only by rebalance: what the account holds after the last run.

    ``amounts_base`` are signed (negative = short perp). ``paper`` holds the paper broker's snapshot
    (lib.execution.paper.PaperSnapshot.to_dict()) in paper mode and is None otherwise (the exchange is the truth).
    High-water mark and start-of-day equity feed the drawdown and daily-loss checks.
    """

    mode: str
    venue: str
    updated_ms: int
    cash_quote: float
    amounts_base: dict[str, float]
    marks: dict[str, float]  # prices the book was valued at in the last run
    equity_quote: float
    high_water_mark_quote: float
    day_start_ms: int
    day_start_equity_quote: float
    inception_ms: int
    inception_equity_quote: float
    fees_paid_quote: float = 0.0
    last_rebalance_id: str = ""
    paper: dict[str, Any] | None = None
    ignored_base: dict[str, float] = field(default_factory=dict)  # account holdings outside the bot's book
    wallets: dict[str, float] = field(default_factory=dict)  # two-account books: quote balance per wallet
    account_cash_quote: float | None = None  # the account's real quote cash when ``cash_quote`` is the bot's ledger
    ledger: CashLedger | None = None  # the bot's own cash (book.capital_quote / capital_frac), else None
    unpriced: dict[str, FlaggedHolding] = field(default_factory=dict)  # held, no live price: a person must act

    def to_dict(self) -> dict[str, Any]:
        document = {"schema_version": POSITIONS_SCHEMA_VERSION, **asdict(self)}
        document["ledger"] = None if self.ledger is None else self.ledger.to_dict()
        return document

    @classmethod
    def from_dict(cls, raw: Any) -> Positions:
        if not isinstance(raw, dict):
            raise StateError("positions.json must hold a JSON object")
        _require_version(raw, POSITIONS_SCHEMA_VERSION, "positions.json")
        amounts, marks = raw.get("amounts_base"), raw.get("marks")
        if not isinstance(amounts, dict) or not isinstance(marks, dict):
            raise StateError("positions.json: amounts_base and marks must be objects")
        for where, mapping in (("amounts_base", amounts), ("marks", marks)):
            for symbol, value in mapping.items():
                _check_symbol(symbol, f"positions.json {where}")
                if not _is_finite(value):
                    raise StateError(f"positions.json: {where}[{symbol}] is not a finite number: {value!r}")
        for symbol, price in marks.items():
            if price <= 0:
                raise StateError(f"positions.json: marks[{symbol}] must be > 0, got {price!r}")
        paper = raw.get("paper")
        if paper is not None and not isinstance(paper, dict):
            raise StateError("positions.json: paper must be an object or null")
        ignored = raw.get("ignored_base", {})
        if not isinstance(ignored, dict) or not all(_is_finite(v) for v in ignored.values()):
            raise StateError("positions.json: ignored_base must be an object of finite numbers")
        return cls(
            mode=_str(raw, "mode"), venue=_str(raw, "venue"), updated_ms=_int(raw, "updated_ms"),
            cash_quote=_float(raw, "cash_quote"), amounts_base={k: float(v) for k, v in amounts.items()},
            marks={k: float(v) for k, v in marks.items()}, equity_quote=_float(raw, "equity_quote"),
            high_water_mark_quote=_float(raw, "high_water_mark_quote", minimum=0.0),
            day_start_ms=_int(raw, "day_start_ms"),
            day_start_equity_quote=_float(raw, "day_start_equity_quote", minimum=0.0),
            inception_ms=_int(raw, "inception_ms"),
            inception_equity_quote=_float(raw, "inception_equity_quote", minimum=0.0),
            fees_paid_quote=_float(raw, "fees_paid_quote", minimum=0.0),
            last_rebalance_id=str(raw.get("last_rebalance_id", "")), paper=paper,
            ignored_base={str(k): float(v) for k, v in ignored.items()}, wallets=_wallets(raw),
            account_cash_quote=None if raw.get("account_cash_quote") is None else _float(raw, "account_cash_quote"),
            ledger=None if raw.get("ledger") is None else CashLedger.from_dict(raw["ledger"]),
            unpriced=_flagged(raw.get("unpriced", {})),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CashLedger:
    """The bot's own quote cash in a shared account (lib.execution.bot_ledger): its allocated capital plus the
    notional of its sells, minus its buys and fees, plus the cash flows recorded for it.

    Fills with a journal time before ``booked_since_ms`` are in ``cash_quote``; of the later ones exactly those in
    ``booked`` (client id -> journal time) are, so a re-run after a crash books every fill once.
    """

    cash_quote: Decimal
    started_ms: int
    start_quote: Decimal  # the capital allocated on the first run
    flows_quote: Decimal  # cash flows recorded for the bot since (scripts/cashflow.py)
    booked_since_ms: int
    booked: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"cash_quote": str(self.cash_quote), "started_ms": self.started_ms, "start_quote": str(self.start_quote),
                "flows_quote": str(self.flows_quote), "booked_since_ms": self.booked_since_ms,
                "booked": dict(self.booked)}

    @classmethod
    def from_dict(cls, raw: Any) -> CashLedger:
        if not isinstance(raw, dict):
            raise StateError("positions.json: ledger must be an object")
        booked = raw.get("booked", {})
        if not isinstance(booked, dict) or not all(isinstance(t, int) and not isinstance(t, bool)
                                                   for t in booked.values()):
            raise StateError("positions.json: ledger.booked must map client ids to epoch ms")
        return cls(cash_quote=_decimal(raw, "cash_quote"), started_ms=_int(raw, "started_ms"),
                   start_quote=_decimal(raw, "start_quote"), flows_quote=_decimal(raw, "flows_quote"),
                   booked_since_ms=_int(raw, "booked_since_ms"), booked={str(k): v for k, v in booked.items()})


@dataclass(frozen=True, slots=True, kw_only=True)
class FlaggedHolding:
    """A held coin the exchange no longer prices (delisted): valued at ``last_close``, never traded by the bot."""

    amount_base: float
    last_close: float  # the stored close it was valued at
    since_ms: int  # first run that found it without a live price


def _flagged(raw: Any) -> dict[str, FlaggedHolding]:
    if not isinstance(raw, Mapping):
        raise StateError("positions.json: unpriced must be an object")
    flagged = {}
    for symbol, entry in raw.items():
        _check_symbol(symbol, "positions.json unpriced")
        if not isinstance(entry, dict):
            raise StateError(f"positions.json: unpriced[{symbol}] must be an object")
        flagged[symbol] = FlaggedHolding(amount_base=_float(entry, "amount_base"),
                                         last_close=_float(entry, "last_close", minimum=0.0),
                                         since_ms=_int(entry, "since_ms"))
    return flagged


def _decimal(raw: dict[str, Any], key: str) -> Decimal:
    try:
        value = Decimal(str(raw[key]))
    except (KeyError, InvalidOperation):
        raise StateError(f"{key} must be a decimal number, got {raw.get(key)!r}") from None
    if not value.is_finite():
        raise StateError(f"{key} must be finite, got {value!r}")
    return value


def _wallets(raw: dict[str, Any]) -> dict[str, float]:
    wallets = raw.get("wallets", {})
    if not isinstance(wallets, dict) or not all(_is_finite(v) for v in wallets.values()):
        raise StateError("positions.json: wallets must be an object of finite numbers")
    return {str(k): float(v) for k, v in wallets.items()}


HALT_SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class HaltRecord:
    """state/halt.json, written by rebalance on a drawdown breach BEFORE it flattens; removed only by a person.

    ``flattened`` turns true once the flatten orders all went through, so a run that died mid-flatten
    finishes the flatten on the next run (and sends nothing else) instead of leaving the book half open.
    """

    created_ms: int
    run_id: str
    reason: str
    detail: str
    equity_quote: float
    high_water_mark_quote: float
    flattened: bool = False
    flattened_ms: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": HALT_SCHEMA_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, raw: Any) -> HaltRecord:
        if not isinstance(raw, dict):
            raise StateError("halt.json must hold a JSON object")
        _require_version(raw, HALT_SCHEMA_VERSION, "halt.json")
        flattened, flattened_ms = raw.get("flattened", False), raw.get("flattened_ms")
        if not isinstance(flattened, bool):
            raise StateError(f"halt.json: flattened must be true/false, got {flattened!r}")
        if flattened_ms is not None and (isinstance(flattened_ms, bool) or not isinstance(flattened_ms, int)):
            raise StateError(f"halt.json: flattened_ms must be an integer or null, got {flattened_ms!r}")
        return cls(
            created_ms=_int(raw, "created_ms"), run_id=_str(raw, "run_id"), reason=_str(raw, "reason"),
            detail=str(raw.get("detail", "")), equity_quote=_float(raw, "equity_quote"),
            high_water_mark_quote=_float(raw, "high_water_mark_quote"), flattened=flattened,
            flattened_ms=flattened_ms,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskBaselines:
    """What the daily-loss and drawdown checks compare today's equity with, carried in positions.json."""

    high_water_mark_quote: float
    day_start_ms: int
    day_start_equity_quote: float
    inception_ms: int
    inception_equity_quote: float
    fees_paid_quote: float


