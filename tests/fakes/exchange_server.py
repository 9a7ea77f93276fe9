"""Fake Binance REST server for tests: spot ``/api/v3``, USD-M ``/fapi`` and a little ``/sapi``, as ccxt
4.5.90's ``binance`` and ``binanceusdm`` call them, on a stdlib ThreadingHTTPServer at 127.0.0.1.

Data comes from lib/execution/simulated.py at the server's clock (``now_ms``; the forming candle is served), or
from injected candles (e.g. real parquet data). Accounts live in memory: spot balances, a futures USDT
wallet with one-way positions (funding is settled as the clock passes 00/08/16 UTC). Faults are queued
per path and consumed by matching requests. Signatures are not checked; private endpoints need the
``X-MBX-APIKEY`` header. Point a client at it by replacing scheme+host of every ``urls['api']`` string.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import threading
import time
import types
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from lib.core.errors import ConfigError
from lib.core.symbols import to_perpetual, to_spot
from lib.core.timeframes import MS_PER_DAY, MS_PER_HOUR, timeframe_ms
from lib.core.venue import MarketRules
from lib.execution.simulated import FUNDING_INTERVAL_MS, SimulatedMarket, SimulatedParams, aggregate_candles

INTERVALS = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w")
BAD_CANDLE_KINDS = ("negative_price", "high_below_low", "nan_string", "duplicate_row", "out_of_order",
                    "absurd_jump", "double_print", "half_print")  # one candle's prices x2.2 / ÷2.2 (bad prints)
LOST_RESPONSE_MODES = ("http_500", "http_502", "http_503", "disconnect", "timeout")
DEFAULT_API_RESTRICTIONS = {
    "ipRestrict": False, "enableReading": True, "enableWithdrawals": False, "enableInternalTransfer": False,
    "enableMargin": False, "enableFutures": True, "permitsUniversalTransfer": False,
    "enableVanillaOptions": False, "enableFixApiTrade": False, "enableFixReadOnly": False,
    "enableSpotAndMarginTrading": True, "enablePortfolioMarginTrading": False,
}
_ERROR_BODIES = {
    429: (-1003, "Too many requests; current limit of IP is 6000 requests per minute."),
    418: (-1003, "Way too much request weight used; IP banned until 1700000000000."),
    500: (-1000, "An unknown error occurred while processing the request."),
}
_INSUFFICIENT_TEXT = "Account has insufficient balance for requested action."
_GATEWAY_HTML = "<html><head><title>{0}</title></head><body><center><h1>{0}</h1></center></body></html>"


class ApiError(Exception):
    """A Binance-style error reply: HTTP status plus ``{"code": ..., "msg": ...}``."""

    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    params: dict[str, str]
    api_key: str | None


@dataclass(slots=True)
class RecordedOrder:
    """Every order request received, with what the fake did with it."""

    market: Literal["spot", "futures"]
    params: dict[str, str]
    client_order_id: str
    accepted: bool
    error_code: int | None = None
    order: dict[str, Any] | None = None


@dataclass(slots=True)
class _Fault:
    path: str
    kind: str
    method: str | None
    match: dict[str, str]
    remaining: int | None
    options: dict[str, Any] = field(default_factory=dict)

    def applies(self, request: RecordedRequest) -> bool:
        return (self.path == request.path and self.method in (None, request.method)
                and all(request.params.get(key) == value for key, value in self.match.items()))


@dataclass(slots=True)
class _Position:
    amount: Decimal = Decimal(0)
    entry_price: Decimal = Decimal(0)
    leverage: int = 20
    margin_type: str = "CROSSED"


def num(value: Any) -> str:
    """Binance-style number string; floats use the shortest exact decimal (no exponent)."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float | np.floating):
        return np.format_float_positional(float(value), trim="-")
    return str(value)


def exchange_id(symbol: str) -> str:
    return to_spot(symbol).replace("/", "")


def _as_rows(candles: Any) -> np.ndarray:
    """A candle frame (timestamp, open, high, low, close, volume) or an (n, 6) array -> sorted float rows."""
    if hasattr(candles, "columns"):
        candles = candles[["timestamp", "open", "high", "low", "close", "volume"]].to_numpy(dtype=float)
    rows = np.asarray(candles, dtype=float).reshape(-1, 6)
    return rows[np.argsort(rows[:, 0], kind="stable")]


def _as_pairs(funding: Any) -> np.ndarray:
    """A funding frame (timestamp, rate) or an (n, 2) array -> sorted float rows."""
    if hasattr(funding, "columns"):
        funding = funding[["timestamp", "rate"]].to_numpy(dtype=float)
    rows = np.asarray(funding, dtype=float).reshape(-1, 2)
    return rows[np.argsort(rows[:, 0], kind="stable")]


class FakeBinance:
    """The fake exchange. Thread-safe; use as ``with FakeBinance(now_ms=...) as fake: fake.base_url``.

    ``candles`` maps ``(symbol, timeframe)`` (or a bare spot symbol: its timeframe is inferred) to a frame or
    array served instead of simulated data; coarser intervals are aggregated from it. ``funding`` maps a
    symbol to a frame/array of ``(timestamp, rate)``. ``now_ms=None`` follows the wall clock.
    """

    ticker_time_lag_ms: int | None = 0
    """24hr tickers say their prices are this old (closeTime = now - lag); None: no closeTime at all."""
    spot_fee_asset: Literal["quote", "received", "BNB"] = "quote"
    """"received": a spot buy's commission is charged in the coin bought (Binance without BNB), a sell's in quote;
    "BNB": every spot commission is paid from the BNB balance at BNB_FEE_DISCOUNT (in the quote when too little)."""
    dual_side_position: bool = False
    """The USD-M account's position mode: True is hedge mode (separate long and short positions)."""
    ticker_clock: Literal["exchange", "wall"] = "exchange"
    """"wall": tickers are stamped by the wall clock, for a frozen fake serving a bot that runs on the wall clock."""

    def __init__(self, *, now_ms: int | None = None, params: SimulatedParams | None = None,
                 candles: Mapping[Any, Any] | None = None, funding: Mapping[str, Any] | None = None,
                 spot_balances: Mapping[str, float | str | Decimal] | None = None,
                 futures_wallet_quote: float | str | Decimal = 10_000,
                 api_keys: Collection[str] | None = None,
                 api_restrictions: Mapping[str, Any] | None = None, strict_client_ids: bool = True,
                 spot_fee_frac: str = "0.001", futures_fee_frac: str = "0.0005",
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._fixed_now_ms = now_ms
        self._injected = {self._candle_key(key): _as_rows(value) for key, value in (candles or {}).items()}
        self._funding = {to_spot(key): _as_pairs(value) for key, value in (funding or {}).items()}
        base_params = params or SimulatedParams()
        extra = tuple(sorted({symbol for symbol, _ in self._injected} - set(base_params.symbols)))
        self.params = dataclasses.replace(base_params, symbols=base_params.symbols + extra)
        self._market = SimulatedMarket(self.params, now_ms=0)
        self.spot_locked: dict[str, Decimal] = {}  # held by open orders the bot did not place (not free)
        self.spot_balances = {asset: Decimal(str(amount)) for asset, amount in
                              (spot_balances if spot_balances is not None else {"USDT": 10_000}).items()}
        self.futures_wallet_quote = Decimal(str(futures_wallet_quote))
        self.positions: dict[str, _Position] = {}
        self.api_keys = None if api_keys is None else set(api_keys)
        self.api_restrictions = {**DEFAULT_API_RESTRICTIONS, **(api_restrictions or {})}
        self.strict_client_ids = strict_client_ids
        self._fees = {"spot": Decimal(spot_fee_frac), "futures": Decimal(futures_fee_frac)}
        self._orders: dict[str, dict[str, dict[str, Any]]] = {"spot": {}, "futures": {}}  # by client id
        self._trades: dict[str, list[dict[str, Any]]] = {"spot": [], "futures": []}
        self._next_id = 100_000_001
        self._settled_ms: int | None = None
        self._faults: list[_Fault] = []
        self._gaps: list[tuple[str, int, int, str | None]] = []
        self._requests: list[RecordedRequest] = []
        self._order_log: list[RecordedOrder] = []
        self.capital_moves: list[dict[str, Any]] = []  # deposits and withdrawals (sapi capital history)
        self.wallet_transfers: list[dict[str, Any]] = []  # spot <-> USD-M universal transfers (sapi asset)
        self.funding_income: list[dict[str, Any]] = []  # FUNDING_FEE income records (fapi income), oldest first
        self._server = ThreadingHTTPServer((host, port), _handler_class(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}"

    def start(self) -> FakeBinance:
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-binance",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeBinance:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- clock -----------------------------------------------------------------------------------------
    @property
    def now_ms(self) -> int:
        with self._lock:
            return self._fixed_now_ms if self._fixed_now_ms is not None else int(time.time() * 1000)

    def set_now_ms(self, now_ms: int | None) -> None:
        """Freeze the clock at ``now_ms`` (None: follow the wall clock). Funding settles as it passes."""
        with self._lock:
            self._fixed_now_ms = now_ms

    def advance_ms(self, delta_ms: int) -> int:
        with self._lock:
            self._fixed_now_ms = self.now_ms + delta_ms
            return self._fixed_now_ms

    # -- fault injection (path is the request path, e.g. "/api/v3/klines"; times=None: until cleared) ----
    def fail_next(self, path: str, *, status: int = 500, times: int | None = 1,
                  retry_after_s: int | None = None, method: str | None = None,
                  match: Mapping[str, str] | None = None) -> None:
        """Reject matching requests with an HTTP error (429/418 carry Retry-After; 502/503 an HTML page)."""
        self._add(path, "http_error", times, method, match, status=status, retry_after_s=retry_after_s)

    def delay_next(self, path: str, *, seconds: float, times: int | None = 1, method: str | None = None,
                   match: Mapping[str, str] | None = None) -> None:
        """Hold matching requests for ``seconds`` before serving them (an order still executes)."""
        self._add(path, "delay", times, method, match, seconds=seconds)

    def malform_next(self, path: str, *, how: Literal["invalid_json", "truncated", "empty"] = "invalid_json",
                     times: int | None = 1, method: str | None = None,
                     match: Mapping[str, str] | None = None) -> None:
        """Serve matching requests with HTTP 200 and a body that is not valid JSON ("empty": no body at all)."""
        self._add(path, "malformed", times, method, match, how=how)

    def disconnect_next(self, path: str, *, times: int | None = 1, method: str | None = None,
                        match: Mapping[str, str] | None = None) -> None:
        """Close the connection without any reply (nothing is executed)."""
        self._add(path, "disconnect", times, method, match)

    def lose_next_order_response(self, *, futures: bool = False, how: str = "http_502", seconds: float = 3.0,
                                 times: int | None = 1, match: Mapping[str, str] | None = None) -> None:
        """The order IS executed, but the client gets ``how`` (LOST_RESPONSE_MODES) instead of the reply."""
        if how not in LOST_RESPONSE_MODES:
            raise ValueError(f"how must be one of {LOST_RESPONSE_MODES}, got {how!r}")
        self._add("/fapi/v1/order" if futures else "/api/v3/order", "lost", times, "POST", match,
                  how=how, seconds=seconds)

    def reject_next_order(self, *, futures: bool = False, code: int = -2010, msg: str = _INSUFFICIENT_TEXT,
                          times: int | None = 1, match: Mapping[str, str] | None = None) -> None:
        """Refuse matching new orders with HTTP 400 and Binance's ``code``/``msg`` (nothing executes; recorded)."""
        self._add("/fapi/v1/order" if futures else "/api/v3/order", "reject", times, "POST", match, code=code, msg=msg)

    def lose_next_transfer_response(self, *, how: str = "timeout", seconds: float = 3.0, times: int | None = 1) -> None:
        """The wallet transfer IS executed, but the client gets ``how`` (LOST_RESPONSE_MODES) instead of the reply."""
        if how not in LOST_RESPONSE_MODES:
            raise ValueError(f"how must be one of {LOST_RESPONSE_MODES}, got {how!r}")
        self._add(TRANSFER_PATH, "lost", times, "POST", None, how=how, seconds=seconds)

    def corrupt_next_candles(self, kind: str, *, futures: bool = False, symbol: str | None = None,
                             at_ms: int | None = None, times: int | None = 1) -> None:
        """Corrupt one row of matching klines replies (the row opening at ``at_ms``, else the middle one)."""
        if kind not in BAD_CANDLE_KINDS:
            raise ValueError(f"kind must be one of {BAD_CANDLE_KINDS}, got {kind!r}")
        match = {"symbol": exchange_id(symbol)} if symbol else None
        self._add("/fapi/v1/klines" if futures else "/api/v3/klines", "bad_candle", times, "GET", match,
                  bad=kind, at_ms=at_ms)

    def add_gap(self, symbol: str, start_ms: int, end_ms: int, *, timeframe: str | None = None) -> None:
        """The exchange permanently has no candles opening in [start_ms, end_ms) (spot and perp)."""
        with self._lock:
            self._gaps.append((to_spot(symbol), start_ms, end_ms, timeframe))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    def _add(self, path: str, kind: str, times: int | None, method: str | None,
             match: Mapping[str, str] | None, **options: Any) -> None:
        with self._lock:
            self._faults.append(_Fault(path, kind, method, dict(match or {}), times, options))

    def _take_fault(self, request: RecordedRequest, kinds: tuple[str, ...],
                    accept: Callable[[_Fault], bool] = lambda fault: True) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.kind in kinds and fault.applies(request) and accept(fault):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    return fault
            return None

    # -- observation -----------------------------------------------------------------------------------
    def requests(self, path: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self._requests if path is None or r.path == path]

    def request_count(self, path: str, *, method: str | None = None, **params: str) -> int:
        """Requests that hit ``path``, optionally with these exact query/body values (symbol="BTCUSDT")."""
        return sum(1 for r in self.requests(path) if method in (None, r.method)
                   and all(r.params.get(key) == str(value) for key, value in params.items()))

    def reset_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    @property
    def orders(self) -> list[RecordedOrder]:
        with self._lock:
            return list(self._order_log)

    # -- data ------------------------------------------------------------------------------------------
    @staticmethod
    def _candle_key(key: Any) -> tuple[str, str | None]:
        symbol, timeframe = (key, None) if isinstance(key, str) else key
        return to_spot(symbol), timeframe

    def market(self) -> SimulatedMarket:
        return self._market.with_now(self.now_ms)

    def _injected_for(self, symbol: str) -> dict[int, np.ndarray]:
        """Injected candles of a spot symbol by timeframe length in ms."""
        found: dict[int, np.ndarray] = {}
        for (injected_symbol, timeframe), rows in self._injected.items():
            if injected_symbol == symbol and len(rows):
                inferred_ms = int(np.min(np.diff(rows[:, 0]))) if len(rows) > 1 else MS_PER_DAY
                found[timeframe_ms(timeframe) if timeframe else inferred_ms] = rows
        return found

    def listing_ms(self, symbol: str) -> int:
        injected = self._injected_for(to_spot(symbol))
        if injected:
            return int(min(rows[0, 0] for rows in injected.values()))
        return self._market.listing_ms(symbol)

    def listed_symbols(self) -> list[str]:
        """Spot symbols trading at now_ms (each also has its perpetual); delisted ones are gone entirely."""
        now, delisted = self.now_ms, getattr(self, "_delisted", set())
        return [symbol for symbol in self.params.symbols if self.listing_ms(symbol) <= now
                and to_spot(symbol) not in delisted]

    def stop_trading(self, symbol: str) -> None:
        """``symbol`` stays in exchangeInfo with status BREAK (how Binance shows a delisted pair): ccxt inactive."""
        with self._lock:
            self._breaks = {*getattr(self, "_breaks", set()), to_spot(symbol)}

    def delist(self, symbol: str) -> None:
        """The exchange no longer lists ``symbol`` (spot and perp): absent from exchangeInfo, -1121 on use."""
        with self._lock:
            self._delisted = {*getattr(self, "_delisted", set()), to_spot(symbol)}

    def candle_rows(self, symbol: str, timeframe: str, start_ms: int, end_ms: int) -> np.ndarray:
        """Served candles with open in [start_ms, end_ms) and <= now_ms, gaps removed (before faults)."""
        symbol, tf_ms, now = to_spot(symbol), timeframe_ms(timeframe), self.now_ms
        injected = self._injected_for(symbol)
        if injected:
            usable = [step for step in injected if tf_ms % step == 0]
            if not usable:
                raise ApiError(400, -1120, "Invalid interval.")
            rows = injected[max(usable)]
            times = rows[:, 0]
            rows = rows[(times >= start_ms // tf_ms * tf_ms) & (times < end_ms) & (times <= now)]
            rows = aggregate_candles(rows, tf_ms) if max(usable) != tf_ms else rows
            rows = rows[rows[:, 0] >= start_ms]
        else:
            try:
                rows = self.market().candles(symbol, timeframe, start_ms, end_ms)
            except ConfigError:
                raise ApiError(400, -1120, "Invalid interval.") from None
        with self._lock:
            gaps = [(lo, hi) for s, lo, hi, tf in self._gaps if s == symbol and tf in (None, timeframe)]
        for lo, hi in gaps:
            rows = rows[(rows[:, 0] < lo) | (rows[:, 0] >= hi)]
        return rows

    def last_price(self, symbol: str) -> Decimal:
        injected = self._injected_for(to_spot(symbol))
        if injected:
            rows = injected[min(injected)]
            rows = rows[rows[:, 0] <= self.now_ms]
            if not len(rows):
                raise ApiError(400, -1121, "Invalid symbol.")
            return Decimal(num(rows[-1, 4]))
        return Decimal(num(self.market().price_at(to_spot(symbol))))

    def funding_rows(self, symbol: str, start_ms: int, end_ms: int) -> np.ndarray:
        symbol = to_spot(symbol)
        if symbol in self._funding:
            rows = self._funding[symbol]
            return rows[(rows[:, 0] >= start_ms) & (rows[:, 0] < end_ms) & (rows[:, 0] <= self.now_ms)]
        if self._injected_for(symbol):  # injected candles without injected funding: none
            return np.empty((0, 2))
        return self.market().funding_rates(to_perpetual(symbol), start_ms, end_ms)

    def rules(self, symbol: str) -> MarketRules:
        return self._market.market_rules(symbol)

    def new_order_id(self) -> int:
        with self._lock:
            self._next_id += 1
            return self._next_id

    def settle_funding(self) -> None:
        """Charge/credit funding on open positions for every settlement passed since the last call."""
        with self._lock:
            now = self.now_ms
            if self._settled_ms is None or now <= self._settled_ms:
                self._settled_ms = max(self._settled_ms or now, now)
                return
            for symbol, position in self.positions.items():
                if position.amount:
                    for settled_ms, rate in self.funding_rows(symbol, self._settled_ms + 1, now + 1):
                        price = self.last_price(symbol)
                        self.futures_wallet_quote -= position.amount * price * Decimal(num(rate))
                        self._record_funding_income(symbol, -position.amount * price * Decimal(num(rate)),
                                                    int(settled_ms))
            self._settled_ms = now

    def _record_funding_income(self, symbol: str, income: Decimal, settled_ms: int) -> None:
        """One FUNDING_FEE income record (GET /fapi/v1/income), stamped like the transfers: by the wall clock for a
        ``ticker_clock = "wall"`` fake (the bot's clock), else at the settlement."""
        stamp = int(time.time() * 1000) if self.ticker_clock == "wall" else settled_ms
        self.funding_income.append({"symbol": exchange_id(symbol), "incomeType": "FUNDING_FEE", "income": num(income),
                                    "asset": "USDT", "time": stamp, "info": "FUNDING_FEE",
                                    "tranId": str(self.new_order_id()), "tradeId": ""})

    def record_order(self, entry: RecordedOrder) -> None:
        with self._lock:
            self._order_log.append(entry)

    def move_capital(self, coin: str, amount: Decimal, *, fee: Decimal = Decimal(0)) -> None:
        """A deposit (amount > 0) or a withdrawal (< 0, plus ``fee``) now: the balance moves and the capital
        history endpoints report it (withdrawals with Binance's ``applyTime`` text, in UTC)."""
        now = self.now_ms
        with self._lock:
            self.spot_balances[coin] = self.spot_balances.get(coin, Decimal(0)) + amount - (fee if amount < 0 else 0)
            self.capital_moves.append({"coin": coin, "amount": amount, "fee": fee, "time_ms": now,
                                       "id": f"move-{self.new_order_id()}"})

    def add_resting_spot_order(self, symbol: str, side: str, quantity: Decimal, client_order_id: str) -> None:
        """A spot order still working on the book (status NEW, nothing filled): a lookup by client id finds it
        open. (This fake fills market orders at once; a resting one stands for one a person or a stuck venue
        left open.)"""
        now = self.now_ms
        with self._lock:
            self._orders["spot"][client_order_id] = {
                "symbol": exchange_id(symbol), "orderId": self.new_order_id(), "clientOrderId": client_order_id,
                "price": "0", "origQty": num(quantity), "executedQty": "0", "cummulativeQuoteQty": "0",
                "status": "NEW", "timeInForce": "GTC", "type": "MARKET", "side": side.upper(), "updateTime": now,
                "time": now, "orderListId": -1, "isWorking": True, "workingTime": now,
                "origQuoteOrderQty": "0", "selfTradePreventionMode": "EXPIRE_MAKER"}


# == endpoints ===========================================================================================
_D8 = Decimal("1e-8")
BNB_FEE_DISCOUNT = Decimal("0.75")
"""Binance's 25 % off a commission paid in BNB (spot_fee_asset = "BNB")."""
_INSUFFICIENT = "Account has insufficient balance for requested action."


def _int_param(params: Mapping[str, str], key: str) -> int | None:
    value = params.get(key)
    try:
        return None if value in (None, "") else int(value)
    except ValueError:
        raise ApiError(400, -1100, f"Illegal characters found in parameter '{key}'; "
                                   "legal range is '^[0-9]{1,20}$'.") from None


def _required(params: Mapping[str, str], key: str) -> str:
    value = params.get(key)
    if not value:
        raise ApiError(400, -1102, f"Mandatory parameter '{key}' was not sent, was empty/null, or malformed.")
    return value


def _symbol(fake: FakeBinance, params: Mapping[str, str]) -> str:
    """The spot unified symbol behind the request's ``symbol`` id (spot and perp share ids)."""
    wanted = _required(params, "symbol")
    for symbol in fake.listed_symbols():
        if exchange_id(symbol) == wanted:
            return symbol
    raise ApiError(400, -1121, "Invalid symbol.")


def _symbols_param(fake: FakeBinance, params: Mapping[str, str]) -> list[str]:
    if params.get("symbol"):
        return [_symbol(fake, params)]
    if params.get("symbols"):
        return [_symbol(fake, {"symbol": wanted}) for wanted in json.loads(params["symbols"])]
    return fake.listed_symbols()


def _filters(rules: MarketRules, *, futures: bool) -> list[dict[str, Any]]:
    lot = {"minQty": num(rules.min_amount_base), "maxQty": num(rules.max_amount_base or Decimal(10**9)),
           "stepSize": num(rules.amount_step)}
    price = {"filterType": "PRICE_FILTER", "minPrice": num(rules.price_step), "maxPrice": "10000000",
             "tickSize": num(rules.price_step)}
    if futures:
        return [price, {"filterType": "LOT_SIZE", **lot}, {"filterType": "MARKET_LOT_SIZE", **lot},
                {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                {"filterType": "MIN_NOTIONAL", "notional": num(rules.min_notional_quote)},
                {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
                 "multiplierDecimal": "4"}]
    return [price, {"filterType": "LOT_SIZE", **lot}, {"filterType": "MARKET_LOT_SIZE", **lot},
            {"filterType": "NOTIONAL", "minNotional": num(rules.min_notional_quote), "applyMinToMarket": True,
             "maxNotional": "9000000", "applyMaxToMarket": False, "avgPriceMins": 5}]


def exchange_info(fake: FakeBinance, request: RecordedRequest) -> dict[str, Any]:
    futures = request.path.startswith("/fapi/")
    entries = []
    for symbol in fake.listed_symbols():
        rules = fake.rules(to_perpetual(symbol) if futures else symbol)
        entry: dict[str, Any] = {
            "symbol": exchange_id(symbol), "baseAsset": rules.base,
            "status": "BREAK" if symbol in getattr(fake, "_breaks", set()) else "TRADING",
            "quoteAsset": rules.quote, "baseAssetPrecision": 8, "quotePrecision": 8,
            "filters": _filters(rules, futures=futures),
            "orderTypes": ["LIMIT", "MARKET"], "permissions": [], "permissionSets": [["SPOT"]],
        }
        if futures:
            entry.update({"pair": exchange_id(symbol), "contractType": "PERPETUAL",
                          "deliveryDate": 4133404800000,
                          "onboardDate": fake.listing_ms(symbol), "marginAsset": rules.quote,
                          "pricePrecision": max(-rules.price_step.as_tuple().exponent, 0),  # type: ignore[operator]
                          "quantityPrecision": max(-rules.amount_step.as_tuple().exponent, 0),  # type: ignore[operator]
                          "underlyingType": "COIN", "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
                          "maintMarginPercent": "2.5000", "requiredMarginPercent": "5.0000"})
        else:
            entry.update({"quoteAssetPrecision": 8, "isSpotTradingAllowed": True,
                          "isMarginTradingAllowed": False, "quoteOrderQtyMarketAllowed": True})
        entries.append(entry)
    return {"timezone": "UTC", "serverTime": fake.now_ms, "rateLimits": [], "exchangeFilters": [],
            "symbols": entries}


def klines(fake: FakeBinance, request: RecordedRequest) -> list[list[Any]]:
    """Binance klines: open >= startTime and <= endTime, at most ``limit``; no startTime: the latest."""
    params, futures = request.params, request.path.startswith("/fapi/")
    symbol, interval = _symbol(fake, params), _required(params, "interval")
    if interval not in INTERVALS:
        raise ApiError(400, -1120, "Invalid interval.")
    limit = _int_param(params, "limit") or 500
    if not 1 <= limit <= (1500 if futures else 1000):
        raise ApiError(400, -1130, "Data sent for parameter 'limit' is not valid.")
    tf_ms, start, end = timeframe_ms(interval), _int_param(params, "startTime"), _int_param(params, "endTime")
    upper = min(end + 1 if end is not None else fake.now_ms + 1, fake.now_ms + 1)
    floor_ms = fake.listing_ms(symbol) // tf_ms * tf_ms
    chunks: list[np.ndarray] = []
    count = 0
    if start is not None:  # walk forward from startTime (gaps make it take more than one window)
        cursor = max(start, floor_ms)
        while count < limit and cursor < upper:
            step_end = min(upper, cursor // tf_ms * tf_ms + (limit - count + 1) * tf_ms)
            chunks.append(fake.candle_rows(symbol, interval, cursor, step_end))
            count, cursor = count + len(chunks[-1]), step_end
        rows = np.concatenate(chunks)[:limit] if chunks else np.empty((0, 6))
    else:  # walk back from endTime (or now)
        cursor = upper
        while count < limit and cursor > floor_ms:
            step_start = max(floor_ms, (cursor - 1) // tf_ms * tf_ms - (limit - count - 1) * tf_ms)
            chunks.insert(0, fake.candle_rows(symbol, interval, step_start, cursor))
            count, cursor = count + len(chunks[0]), step_start
        rows = np.concatenate(chunks)[-limit:] if chunks else np.empty((0, 6))
    return [_kline(row, tf_ms) for row in rows]


def _kline(row: np.ndarray, tf_ms: int) -> list[Any]:
    open_ms, open_, high, low, close, volume = row
    quote = round(float(volume * (open_ + close) / 2), 8)
    return [int(open_ms), num(open_), num(high), num(low), num(close), num(volume), int(open_ms) + tf_ms - 1,
            num(quote), int(quote // 1000) + 1, num(round(float(volume) / 2, 8)), num(round(quote / 2, 8)),
            "0"]


def can_corrupt(payload: list[list[Any]], at_ms: int | None) -> bool:
    return len(payload) >= 2 and (at_ms is None or any(row[0] == at_ms for row in payload))


def corrupt(payload: list[list[Any]], kind: str, at_ms: int | None) -> list[list[Any]]:
    rows = [list(row) for row in payload]
    i = next(k for k, row in enumerate(rows) if row[0] == at_ms) if at_ms is not None else len(rows) // 2
    if kind == "negative_price":
        rows[i][3] = num(-float(rows[i][3]))
    elif kind == "high_below_low":
        rows[i][2] = num(float(rows[i][3]) * 0.5)
    elif kind == "nan_string":
        rows[i][4] = "NaN"
    elif kind == "duplicate_row":
        rows.insert(i + 1, list(rows[i]))
    elif kind == "out_of_order":
        j = i + 1 if i + 1 < len(rows) else i - 1
        rows[i], rows[j] = rows[j], rows[i]
    elif kind == "absurd_jump":
        rows[i][1:5] = [num(float(value) * 100) for value in rows[i][1:5]]
    elif kind in ("double_print", "half_print"):
        factor = 2.2 if kind == "double_print" else 1 / 2.2
        rows[i][1:5] = [num(float(value) * factor) for value in rows[i][1:5]]
    return rows


def server_time(fake: FakeBinance, request: RecordedRequest) -> dict[str, Any]:
    return {"serverTime": fake.now_ms}


def ticker_price(fake: FakeBinance, request: RecordedRequest) -> Any:
    tickers = [{"symbol": exchange_id(s), "price": num(fake.last_price(s)), "time": fake.now_ms}
               for s in _symbols_param(fake, request.params)]
    return tickers[0] if request.params.get("symbol") else tickers


def ticker_24hr(fake: FakeBinance, request: RecordedRequest) -> Any:
    now, tickers = fake.now_ms, []
    for symbol in _symbols_param(fake, request.params):
        try:
            rows = fake.candle_rows(symbol, "1h", now - 24 * MS_PER_HOUR + 1, now + 1)
        except ApiError:  # injected daily candles only: no intraday statistics
            rows = np.empty((0, 6))
        last = fake.last_price(symbol)
        first = Decimal(num(rows[0, 1])) if len(rows) else last
        step = fake.rules(symbol).price_step
        volume = float(rows[:, 5].sum()) if len(rows) else 0.0
        high = max(float(rows[:, 2].max()), float(last)) if len(rows) else last
        low = min(float(rows[:, 3].min()), float(last)) if len(rows) else last
        tickers.append({
            "symbol": exchange_id(symbol), "priceChange": num(last - first),
            "priceChangePercent": num(((last - first) / first * 100).quantize(Decimal("0.001"))),
            "weightedAvgPrice": num(last), "prevClosePrice": num(first), "lastPrice": num(last),
            "lastQty": "1", "bidPrice": num(last - step), "bidQty": "10", "askPrice": num(last + step),
            "askQty": "10", "openPrice": num(first), "highPrice": num(high), "lowPrice": num(low),
            "volume": num(round(volume, 8)), "quoteVolume": num(round(volume * float(last), 8)),
            "openTime": now - 24 * MS_PER_HOUR, "closeTime": now, "firstId": 1, "lastId": 1000, "count": 1000,
        })
        if fake.ticker_time_lag_ms is None:
            del tickers[-1]["closeTime"]
        else:
            stamp_ms = int(time.time() * 1000) if fake.ticker_clock == "wall" else now
            tickers[-1]["closeTime"] = stamp_ms - fake.ticker_time_lag_ms
    return tickers[0] if request.params.get("symbol") else tickers


def funding_rate(fake: FakeBinance, request: RecordedRequest) -> list[dict[str, Any]]:
    """Funding history: from startTime forward, else the latest ``limit`` (default 100, max 1000)."""
    params = request.params
    symbol = _symbol(fake, params)
    limit = _int_param(params, "limit") or 100
    if not 1 <= limit <= 1000:
        raise ApiError(400, -1130, "Data sent for parameter 'limit' is not valid.")
    start, end = _int_param(params, "startTime"), _int_param(params, "endTime")
    upper = end + 1 if end is not None else fake.now_ms + 1
    rows = fake.funding_rows(symbol, start if start is not None else 0, upper)
    rows = rows[:limit] if start is not None else rows[-limit:]
    return [{"symbol": exchange_id(symbol), "fundingTime": int(time_ms), "fundingRate": f"{rate:.8f}",
             "markPrice": ""} for time_ms, rate in rows]


def premium_index(fake: FakeBinance, request: RecordedRequest) -> Any:
    now, entries = fake.now_ms, []
    for symbol in _symbols_param(fake, request.params):
        price = num(fake.last_price(symbol))
        recent = fake.funding_rows(symbol, now - FUNDING_INTERVAL_MS + 1, now + 1)
        entries.append({"symbol": exchange_id(symbol), "markPrice": price, "indexPrice": price,
                        "estimatedSettlePrice": price,
                        "lastFundingRate": f"{recent[-1, 1]:.8f}" if len(recent) else "0.00010000",
                        "interestRate": "0.00010000", "time": now,
                        "nextFundingTime": (now // FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS})
    return entries[0] if request.params.get("symbol") else entries


def api_restrictions(fake: FakeBinance, request: RecordedRequest) -> dict[str, Any]:
    return {**fake.api_restrictions, "createTime": 1_700_000_000_000}


def spot_account(fake: FakeBinance, request: RecordedRequest) -> dict[str, Any]:
    with fake._lock:
        balances = [{"asset": asset, "free": f"{amount:.8f}",
                     "locked": f"{fake.spot_locked.get(asset, Decimal(0)):.8f}"}  # by a person's open orders
                    for asset, amount in sorted(fake.spot_balances.items())]
    return {"makerCommission": 10, "takerCommission": 10, "buyerCommission": 0, "sellerCommission": 0,
            "canTrade": True, "canWithdraw": bool(fake.api_restrictions["enableWithdrawals"]),
            "canDeposit": True, "updateTime": fake.now_ms, "accountType": "SPOT", "balances": balances,
            "permissions": ["SPOT"]}


def new_order(fake: FakeBinance, request: RecordedRequest) -> dict[str, Any]:
    """A MARKET order filled at once at the last price; rejections are recorded too."""
    market: Literal["spot", "futures"] = "futures" if request.path.startswith("/fapi/") else "spot"
    client_id = request.params.get("newClientOrderId") or f"fake-{fake.new_order_id()}"
    try:
        with fake._lock:
            order = (_fill_futures if market == "futures" else _fill_spot)(fake, request.params, client_id)
    except ApiError as error:
        fake.record_order(RecordedOrder(market, request.params, client_id, False, error.code))
        raise
    fake.record_order(RecordedOrder(market, request.params, client_id, True, order=order))
    response_type = request.params.get("newOrderRespType", "ACK" if market == "futures" else "FULL")
    public = {key: value for key, value in order.items() if not key.startswith("_")}
    if response_type == "ACK":
        if market == "futures":
            return {**public, "status": "NEW", "executedQty": "0", "cumQty": "0", "cumQuote": "0",
                    "avgPrice": "0"}
        return {key: public[key] for key in ("symbol", "orderId", "orderListId", "clientOrderId",
                                             "transactTime")}
    return {**public, "fills": order["_fills"]} if response_type == "FULL" and market == "spot" else public


def _check_new_order(fake: FakeBinance, params: Mapping[str, str], client_id: str,
                     market: str) -> tuple[str, str]:
    if _required(params, "type") != "MARKET":
        raise ApiError(400, -1116, "Invalid orderType.")  # this fake only fills market orders
    side = _required(params, "side")
    if side not in ("BUY", "SELL"):
        raise ApiError(400, -1117, "Invalid side.")
    if fake.strict_client_ids and client_id in fake._orders[market]:
        raise ApiError(400, *((-4116, "ClientOrderId is duplicated.") if market == "futures"
                              else (-2010, "Duplicate order sent.")))
    return _symbol(fake, params), side


def _check_quantity(quantity: Decimal, rules: MarketRules, *, futures: bool) -> None:
    if quantity <= 0:
        raise ApiError(400, -4003 if futures else -1013, "Quantity less than or equal to zero." if futures
                       else "Filter failure: LOT_SIZE")
    if quantity % rules.amount_step:
        raise ApiError(400, -1111, "Precision is over the maximum defined for this asset.") if futures \
            else ApiError(400, -1013, "Filter failure: LOT_SIZE")
    too_big = rules.max_amount_base is not None and quantity > rules.max_amount_base
    if quantity < rules.min_amount_base or too_big:
        raise ApiError(400, -1013, "Filter failure: LOT_SIZE")


def _fill_spot(fake: FakeBinance, params: Mapping[str, str], client_id: str) -> dict[str, Any]:
    symbol, side = _check_new_order(fake, params, client_id, "spot")
    rules, price = fake.rules(symbol), fake.last_price(symbol)
    if params.get("quantity"):
        quantity = Decimal(params["quantity"])
    else:
        quote_amount = Decimal(_required(params, "quoteOrderQty"))
        quantity = (quote_amount / price).quantize(rules.amount_step, ROUND_DOWN)
    _check_quantity(quantity, rules, futures=False)
    notional = quantity * price
    if notional < rules.min_notional_quote:
        raise ApiError(400, -1013, "Filter failure: NOTIONAL")
    fee = (notional * fake._fees["spot"]).quantize(_D8)
    fee_in_base = fake.spot_fee_asset == "received" and side == "BUY"
    if fee_in_base:
        fee = (quantity * fake._fees["spot"]).quantize(_D8)
    balances = fake.spot_balances
    bnb_fee = (fee * BNB_FEE_DISCOUNT / fake.last_price(f"BNB/{rules.quote}")).quantize(_D8) \
        if fake.spot_fee_asset == "BNB" else None
    selling_bnb = quantity if side == "SELL" and rules.base == "BNB" else Decimal(0)
    if bnb_fee is not None and balances.get("BNB", Decimal(0)) >= bnb_fee + selling_bnb:
        fee, fee_in_base = Decimal(0), False  # taken from BNB below, nothing out of the quote or the coin
    else:
        bnb_fee = None
    paid, paid_amount = (rules.quote, notional + (0 if fee_in_base else fee)) if side == "BUY" \
        else (rules.base, quantity)
    if balances.get(paid, Decimal(0)) < paid_amount:
        raise ApiError(400, -2010, _INSUFFICIENT)
    balances[paid] -= paid_amount
    got, got_amount = (rules.base, quantity - (fee if fee_in_base else 0)) if side == "BUY" \
        else (rules.quote, notional - fee)
    balances[got] = balances.get(got, Decimal(0)) + got_amount
    if bnb_fee is not None:
        balances["BNB"] -= bnb_fee
        return _record_fill(fake, "spot", symbol, side, client_id, quantity, price, bnb_fee, Decimal(0),
                            fee_asset="BNB")
    return _record_fill(fake, "spot", symbol, side, client_id, quantity, price, fee, Decimal(0),
                        fee_asset=rules.base if fee_in_base else rules.quote)


def _fill_futures(fake: FakeBinance, params: Mapping[str, str], client_id: str) -> dict[str, Any]:
    symbol, side = _check_new_order(fake, params, client_id, "futures")
    perp = to_perpetual(symbol)
    rules, price = fake.rules(perp), fake.last_price(symbol)
    quantity = Decimal(_required(params, "quantity"))
    _check_quantity(quantity, rules, futures=True)
    reduce_only = params.get("reduceOnly", "false").lower() == "true"
    position = fake.positions.setdefault(perp, _Position())
    signed = quantity if side == "BUY" else -quantity
    same_side = (position.amount > 0) == (signed > 0)
    if reduce_only and (not position.amount or same_side or quantity > abs(position.amount)):
        raise ApiError(400, -2022, "ReduceOnly Order is rejected.")
    notional = quantity * price
    if not reduce_only and notional < rules.min_notional_quote:
        raise ApiError(400, -4164, "Order's notional must be no smaller than "
                                   f"{num(rules.min_notional_quote)} (unless you choose reduce only).")
    fee = (notional * fake._fees["futures"]).quantize(_D8)
    new_amount = position.amount + signed
    closed = min(abs(position.amount), quantity) if position.amount and not same_side else 0
    realized = (price - position.entry_price) * closed * (1 if position.amount > 0 else -1)
    if abs(new_amount) > abs(position.amount):
        state = _futures_state(fake)
        added_margin = (abs(new_amount) - abs(position.amount)) * price / position.leverage
        required = state["initial_margin"] + added_margin
        if required > state["wallet"] + state["unrealized"] + realized - fee:
            raise ApiError(400, -2019, "Margin is insufficient.")
    if not new_amount:
        position.entry_price = Decimal(0)
    elif not position.amount or same_side:
        position.entry_price = (abs(position.amount) * position.entry_price + notional) / abs(new_amount)
    elif (new_amount > 0) != (position.amount > 0):  # flipped: the rest opens at this price
        position.entry_price = price
    position.amount = new_amount.normalize() if new_amount else Decimal(0)
    fake.futures_wallet_quote += realized - fee
    return _record_fill(fake, "futures", symbol, side, client_id, quantity, price, fee, realized,
                        reduce_only=reduce_only)


def _record_fill(fake: FakeBinance, market: str, symbol: str, side: str, client_id: str, quantity: Decimal,
                 price: Decimal, fee: Decimal, realized: Decimal, *,
                 reduce_only: bool = False, fee_asset: str = "USDT") -> dict[str, Any]:
    order_id, trade_id, now = fake.new_order_id(), fake.new_order_id(), fake.now_ms
    notional = quantity * price
    order: dict[str, Any] = {
        "symbol": exchange_id(symbol), "orderId": order_id, "clientOrderId": client_id, "price": "0",
        "origQty": num(quantity), "executedQty": num(quantity), "status": "FILLED", "timeInForce": "GTC",
        "type": "MARKET", "side": side, "updateTime": now, "time": now,
        "selfTradePreventionMode": "EXPIRE_MAKER",
    }
    if market == "spot":
        order.update({"orderListId": -1, "transactTime": now, "cummulativeQuoteQty": num(notional),
                      "origQuoteOrderQty": "0", "isWorking": True, "workingTime": now, "_fills": [
                          {"price": num(price), "qty": num(quantity), "commission": num(fee),
                           "commissionAsset": fee_asset, "tradeId": trade_id}]})
    else:
        order.update({"avgPrice": num(price), "cumQty": num(quantity), "cumQuote": num(notional),
                      "reduceOnly": reduce_only, "closePosition": False, "positionSide": "BOTH",
                      "stopPrice": "0",
                      "workingType": "CONTRACT_PRICE", "priceProtect": False, "origType": "MARKET",
                      "priceMatch": "NONE", "goodTillDate": 0})
    fake._orders[market][client_id] = order
    fake._trades[market].append({
        "symbol": exchange_id(symbol), "id": trade_id, "orderId": order_id, "price": num(price),
        "qty": num(quantity), "quoteQty": num(notional), "commission": num(fee), "commissionAsset": fee_asset,
        "time": now,
        "isBuyer": side == "BUY", "buyer": side == "BUY", "isMaker": False, "maker": False, "side": side,
        "positionSide": "BOTH", "realizedPnl": num(realized), "orderListId": -1, "isBestMatch": True})
    return order


def get_order(fake: FakeBinance, request: RecordedRequest) -> dict[str, Any]:
    market = "futures" if request.path.startswith("/fapi/") else "spot"
    params = request.params
    wanted_id, wanted_client = _int_param(params, "orderId"), params.get("origClientOrderId")
    if wanted_id is None and not wanted_client:
        raise ApiError(400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, "
                                   "but both were empty/null!")
    symbol_id = exchange_id(_symbol(fake, params))
    with fake._lock:
        for order in fake._orders[market].values():
            wanted = order["orderId"] == wanted_id or order["clientOrderId"] == wanted_client
            if order["symbol"] == symbol_id and wanted:
                return {key: value for key, value in order.items() if not key.startswith("_")}
    raise ApiError(400, -2013, "Order does not exist.")


def my_trades(fake: FakeBinance, request: RecordedRequest) -> list[dict[str, Any]]:
    market = "futures" if request.path.startswith("/fapi/") else "spot"
    symbol_id, order_id = exchange_id(_symbol(fake, request.params)), _int_param(request.params, "orderId")
    with fake._lock:
        return [trade for trade in fake._trades[market]
                if trade["symbol"] == symbol_id and order_id in (None, trade["orderId"])]


def _capital_moves(fake: FakeBinance, request: RecordedRequest, *, deposits: bool) -> list[dict[str, Any]]:
    start, end = _int_param(request.params, "startTime") or 0, _int_param(request.params, "endTime") or 2**62
    with fake._lock:
        moves = [m for m in fake.capital_moves if (m["amount"] > 0) == deposits and start <= m["time_ms"] <= end]
    if deposits:
        return [{"id": m["id"], "amount": num(m["amount"]), "coin": m["coin"], "network": "ETH", "status": 1,
                 "address": "0xfake", "addressTag": "", "txId": f"tx-{m['id']}", "insertTime": m["time_ms"],
                 "transferType": 0, "confirmTimes": "12/12", "unlockConfirm": 0, "walletType": 0} for m in moves]
    return [{"id": m["id"], "amount": num(-m["amount"]), "transactionFee": num(m["fee"]), "coin": m["coin"],
             "status": 6, "address": "0xfake", "txId": f"tx-{m['id']}", "network": "ETH", "transferType": 0,
             "applyTime": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(m["time_ms"] / 1000)), "info": "",
             "confirmNo": 12, "walletType": 0, "txKey": "", "completeTime": ""} for m in moves]


def deposit_history(fake: FakeBinance, request: RecordedRequest) -> list[dict[str, Any]]:
    return _capital_moves(fake, request, deposits=True)


def withdraw_history(fake: FakeBinance, request: RecordedRequest) -> list[dict[str, Any]]:
    return _capital_moves(fake, request, deposits=False)


TRANSFER_PATH = "/sapi/v1/asset/transfer"
_TRANSFER_TYPES = ("MAIN_UMFUTURE", "UMFUTURE_MAIN")


def asset_transfer(fake: FakeBinance, request: RecordedRequest) -> dict[str, Any]:
    """POST /sapi/v1/asset/transfer (universal transfer) between the spot and USD-M wallets, USDT only."""
    kind, asset = _required(request.params, "type"), _required(request.params, "asset")
    try:
        amount = Decimal(_required(request.params, "amount"))
    except ArithmeticError:
        raise ApiError(400, -1100, "Illegal characters found in parameter 'amount'.") from None
    if kind not in _TRANSFER_TYPES or asset != "USDT":
        raise ApiError(400, -9000, f"unsupported transfer {kind} {asset}")
    if not amount.is_finite() or amount <= 0:
        raise ApiError(400, -1100, "Illegal characters found in parameter 'amount'.")
    with fake._lock:
        if kind == "MAIN_UMFUTURE":
            if fake.spot_balances.get("USDT", Decimal(0)) < amount:
                raise ApiError(400, -5002, "You have insufficient balance.")
            fake.spot_balances["USDT"] -= amount
            fake.futures_wallet_quote += amount
        else:
            state = _futures_state(fake)
            if state["wallet"] + state["unrealized"] - state["initial_margin"] < amount:
                raise ApiError(400, -5002, "You have insufficient balance.")
            fake.futures_wallet_quote -= amount
            fake.spot_balances["USDT"] = fake.spot_balances.get("USDT", Decimal(0)) + amount
        tran_id = fake.new_order_id()
        stamp = int(time.time() * 1000) if fake.ticker_clock == "wall" else fake.now_ms
        fake.wallet_transfers.append({"timestamp": stamp, "asset": asset, "amount": num(amount), "type": kind,
                                      "status": "CONFIRMED", "tranId": tran_id})
    return {"tranId": tran_id}


def transfer_history(fake: FakeBinance, request: RecordedRequest) -> dict[str, Any]:
    """GET /sapi/v1/asset/transfer: one type's transfers in [startTime, endTime], newest first (Binance's order)."""
    kind = _required(request.params, "type")
    start, end = _int_param(request.params, "startTime") or 0, _int_param(request.params, "endTime") or 2**62
    size = _int_param(request.params, "size") or 10
    with fake._lock:
        rows = [dict(t) for t in fake.wallet_transfers if t["type"] == kind and start <= t["timestamp"] <= end]
    rows.reverse()
    return {"total": len(rows), "rows": rows[:size]}


INCOME_PATH = "/fapi/v1/income"


def income_history(fake: FakeBinance, request: RecordedRequest) -> list[dict[str, Any]]:
    """GET /fapi/v1/income: FUNDING_FEE records (the only income type this fake keeps) in [startTime, endTime],
    oldest first, at most ``limit`` (default 100, Binance's); without a window, the last 7 days (Binance's rule)."""
    kind, symbol = request.params.get("incomeType"), request.params.get("symbol")
    end = _int_param(request.params, "endTime") or 2**62
    start = _int_param(request.params, "startTime")
    if start is None:
        start = (int(time.time() * 1000) if fake.ticker_clock == "wall" else fake.now_ms) - 7 * 86_400_000
    limit = min(_int_param(request.params, "limit") or 100, 1000)
    with fake._lock:
        rows = [dict(r) for r in fake.funding_income if start <= r["time"] <= end
                and kind in (None, "FUNDING_FEE") and symbol in (None, r["symbol"])]
    return rows[:limit]


def open_orders(fake: FakeBinance, request: RecordedRequest) -> list[Any]:
    return []  # market orders never rest on the book


def _futures_state(fake: FakeBinance) -> dict[str, Any]:
    """Marked positions and margin totals (cross margin, mark price = last price)."""
    rows, unrealized, initial_margin = [], Decimal(0), Decimal(0)
    for symbol, position in sorted(fake.positions.items()):
        amount, mark = position.amount, fake.last_price(symbol)
        pnl = (amount * (mark - position.entry_price) if amount else Decimal(0)).quantize(_D8)
        margin = (abs(amount) * mark / position.leverage).quantize(_D8)
        unrealized, initial_margin = unrealized + pnl, initial_margin + margin
        rows.append({
            "symbol": exchange_id(symbol), "positionSide": "BOTH", "positionAmt": num(amount),
            "entryPrice": num(position.entry_price), "breakEvenPrice": num(position.entry_price),
            "markPrice": num(mark), "unRealizedProfit": num(pnl), "unrealizedProfit": num(pnl),
            "liquidationPrice": "0", "leverage": str(position.leverage),
            "marginType": "isolated" if position.margin_type == "ISOLATED" else "cross",
            "isolated": position.margin_type == "ISOLATED", "isolatedMargin": "0", "isolatedWallet": "0",
            "isAutoAddMargin": "false", "notional": num((amount * mark).quantize(_D8)),
            "initialMargin": num(margin), "positionInitialMargin": num(margin), "openOrderInitialMargin": "0",
            "maintMargin": num((margin / 50).quantize(_D8)), "marginAsset": "USDT",
            "maxNotionalValue": "1000000", "adl": 0, "bidNotional": "0", "askNotional": "0",
            "updateTime": fake.now_ms,
        })
    return {"positions": rows, "unrealized": unrealized, "initial_margin": initial_margin,
            "wallet": fake.futures_wallet_quote}


def futures_account(fake: FakeBinance, request: RecordedRequest) -> dict[str, Any]:
    """v2 and v3 account (ccxt 4.5.90 reads v3): totals, the USDT asset and positions (v3: open ones)."""
    with fake._lock:
        state = _futures_state(fake)
    wallet, pnl, margin = state["wallet"], state["unrealized"], state["initial_margin"]
    available = num((wallet + pnl - margin).quantize(_D8))
    totals = {
        "walletBalance": num(wallet), "unrealizedProfit": num(pnl), "marginBalance": num(wallet + pnl),
        "initialMargin": num(margin), "maintMargin": num((margin / 50).quantize(_D8)),
        "positionInitialMargin": num(margin), "openOrderInitialMargin": "0",
        "crossWalletBalance": num(wallet), "crossUnPnl": num(pnl), "availableBalance": available,
        "maxWithdrawAmount": available,
    }
    every_symbol = request.path.startswith("/fapi/v2/")
    return {
        **{f"total{key[0].upper()}{key[1:]}": value for key, value in totals.items()},
        "availableBalance": available, "maxWithdrawAmount": available, "canTrade": True, "canDeposit": True,
        "canWithdraw": True, "feeTier": 0, "updateTime": 0, "multiAssetsMargin": False,
        "assets": [{"asset": "USDT", **totals, "marginAvailable": True, "updateTime": fake.now_ms}],
        "positions": [row for row in state["positions"] if every_symbol or Decimal(row["positionAmt"])],
    }


def futures_balance(fake: FakeBinance, request: RecordedRequest) -> list[dict[str, Any]]:
    account = futures_account(fake, request)
    wallet, available = account["totalWalletBalance"], account["availableBalance"]
    return [{"accountAlias": "SgsR", "asset": "USDT", "balance": wallet, "crossWalletBalance": wallet,
             "crossUnPnl": account["totalCrossUnPnl"], "availableBalance": available,
             "maxWithdrawAmount": available, "marginAvailable": True, "updateTime": fake.now_ms}]


def position_risk(fake: FakeBinance, request: RecordedRequest) -> list[dict[str, Any]]:
    """v2 lists every perp; v3 only the ones with a position."""
    with fake._lock:
        if request.path.startswith("/fapi/v2/"):
            for symbol in fake.listed_symbols():
                fake.positions.setdefault(to_perpetual(symbol), _Position())
        rows = _futures_state(fake)["positions"]
    wanted = exchange_id(_symbol(fake, request.params)) if request.params.get("symbol") else None
    return [row for row in rows if wanted in (None, row["symbol"])
            and (request.path.startswith("/fapi/v2/") or Decimal(row["positionAmt"]))]


def leverage_bracket(fake: FakeBinance, request: RecordedRequest) -> list[dict[str, Any]]:
    brackets = [{"bracket": 1, "initialLeverage": 125, "notionalCap": 50_000, "notionalFloor": 0,
                 "maintMarginRatio": 0.004, "cum": 0.0},
                {"bracket": 2, "initialLeverage": 100, "notionalCap": 600_000, "notionalFloor": 50_000,
                 "maintMarginRatio": 0.005, "cum": 50.0}]
    return [{"symbol": exchange_id(symbol), "notionalCoef": 1.0, "brackets": brackets}
            for symbol in fake.listed_symbols()]


def set_leverage(fake: FakeBinance, request: RecordedRequest) -> dict[str, Any]:
    symbol, leverage = _symbol(fake, request.params), _int_param(request.params, "leverage")
    if leverage is None or not 1 <= leverage <= 125:
        raise ApiError(400, -4028, f"Leverage {leverage} is not valid")
    with fake._lock:
        fake.positions.setdefault(to_perpetual(symbol), _Position()).leverage = leverage
    return {"leverage": leverage, "maxNotionalValue": "1000000", "symbol": exchange_id(symbol)}


def set_margin_type(fake: FakeBinance, request: RecordedRequest) -> dict[str, Any]:
    symbol, margin_type = _symbol(fake, request.params), _required(request.params, "marginType")
    if margin_type not in ("ISOLATED", "CROSSED"):
        raise ApiError(400, -1116, "Invalid marginType.")
    with fake._lock:
        position = fake.positions.setdefault(to_perpetual(symbol), _Position())
        if position.margin_type == margin_type:
            raise ApiError(400, -4046, "No need to change margin type.")
        if position.amount:
            raise ApiError(400, -4048, "Margin type cannot be changed if there exists position.")
        position.margin_type = margin_type
    return {"code": 200, "msg": "success"}


def position_side_dual(fake: FakeBinance, request: RecordedRequest) -> dict[str, Any]:
    return {"dualSidePosition": fake.dual_side_position}


def _ping(fake: FakeBinance, request: RecordedRequest) -> dict[str, Any]:
    return {}


_Route = Callable[[FakeBinance, RecordedRequest], Any]
_PUBLIC: Mapping[_Route, tuple[str, ...]] = {
    _ping: ("/api/v3/ping", "/fapi/v1/ping"),
    server_time: ("/api/v3/time", "/fapi/v1/time"),
    exchange_info: ("/api/v3/exchangeInfo", "/fapi/v1/exchangeInfo"),
    klines: ("/api/v3/klines", "/fapi/v1/klines"),
    ticker_price: ("/api/v3/ticker/price", "/fapi/v1/ticker/price", "/fapi/v2/ticker/price"),
    ticker_24hr: ("/api/v3/ticker/24hr", "/fapi/v1/ticker/24hr"),
    funding_rate: ("/fapi/v1/fundingRate",),
    premium_index: ("/fapi/v1/premiumIndex",),
}
_PRIVATE: Mapping[_Route, tuple[str, ...]] = {
    api_restrictions: ("/sapi/v1/account/apiRestrictions",),
    spot_account: ("/api/v3/account",),
    get_order: ("/api/v3/order", "/fapi/v1/order"),
    my_trades: ("/api/v3/myTrades", "/fapi/v1/userTrades"),
    open_orders: ("/api/v3/openOrders", "/fapi/v1/openOrders"),
    futures_account: ("/fapi/v2/account", "/fapi/v3/account"),
    futures_balance: ("/fapi/v2/balance", "/fapi/v3/balance"),
    position_risk: ("/fapi/v2/positionRisk", "/fapi/v3/positionRisk"),
    leverage_bracket: ("/fapi/v1/leverageBracket",),
    deposit_history: ("/sapi/v1/capital/deposit/hisrec",),
    withdraw_history: ("/sapi/v1/capital/withdraw/history",),
    position_side_dual: ("/fapi/v1/positionSide/dual",),
    transfer_history: (TRANSFER_PATH,),
    income_history: (INCOME_PATH,),
}
_PRIVATE_POST: Mapping[_Route, tuple[str, ...]] = {
    new_order: ("/api/v3/order", "/fapi/v1/order"),
    set_leverage: ("/fapi/v1/leverage",),
    set_margin_type: ("/fapi/v1/marginType",),
    asset_transfer: (TRANSFER_PATH,),
}
ROUTES: Mapping[tuple[str, str], tuple[_Route, bool]] = types.MappingProxyType({
    **{("GET", path): (handler, False) for handler, paths in _PUBLIC.items() for path in paths},
    **{("GET", path): (handler, True) for handler, paths in _PRIVATE.items() for path in paths},
    **{("POST", path): (handler, True) for handler, paths in _PRIVATE_POST.items() for path in paths},
})
"""(method, path) -> (handler, needs an API key)."""


def dispatch(fake: FakeBinance, request: RecordedRequest) -> Any:
    route = ROUTES.get((request.method, request.path))
    if route is None:
        raise ApiError(404, -5000, f"Path {request.path}, Method {request.method} is invalid")
    handler, private = route
    if private:
        if not request.api_key or (fake.api_keys is not None and request.api_key not in fake.api_keys):
            raise ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        _required(request.params, "signature")
    return handler(fake, request)


# == HTTP plumbing ========================================================================================
def _handler_class(fake: FakeBinance) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "FakeBinance/1.0"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - no access log on stderr
            return

        def do_GET(self) -> None:  # noqa: N802
            self._serve()

        do_POST = do_DELETE = do_PUT = do_GET  # noqa: N815

        def _serve(self) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            params = dict(parse_qsl(split.query, keep_blank_values=True))
            body = self.rfile.read(length).decode() if length else ""
            params.update(parse_qsl(body, keep_blank_values=True))
            request = RecordedRequest(self.command, split.path, params, self.headers.get("X-MBX-APIKEY"))
            with fake._lock:
                fake._requests.append(request)
            rejected = fake._take_fault(request, ("reject",))
            if rejected is not None:
                market = "futures" if request.path.startswith("/fapi/") else "spot"
                client_id = request.params.get("newClientOrderId") or ""
                fake.record_order(RecordedOrder(market, request.params, client_id, False, rejected.options["code"]))
                body = {"code": rejected.options["code"], "msg": rejected.options["msg"]}
                self._send_raw(400, json.dumps(body).encode(), "application/json")
                return
            fault = fake._take_fault(request, ("http_error", "disconnect", "delay"))
            if fault is not None and fault.kind == "delay":
                fake._stop.wait(fault.options["seconds"])
            elif fault is not None:
                if fault.kind == "http_error":
                    self._send_error_status(fault.options["status"], fault.options.get("retry_after_s"))
                self.close_connection = True
                return
            try:
                fake.settle_funding()
                status, payload = 200, dispatch(fake, request)
            except ApiError as error:
                status, payload = error.status, {"code": error.code, "msg": error.msg}
            if status == 200:
                payload = self._apply_output_faults(request, payload)
                if payload is None:
                    return
            self._send_raw(status, json.dumps(payload).encode(), "application/json")

        def _apply_output_faults(self, request: RecordedRequest, payload: Any) -> Any:
            lost = fake._take_fault(request, ("lost",))
            if lost is not None:
                how = lost.options["how"]
                if how == "timeout":
                    fake._stop.wait(lost.options["seconds"])
                    return payload
                if how != "disconnect":
                    self._send_error_status(int(how.removeprefix("http_")), None)
                self.close_connection = True
                return None
            if request.path.endswith("/klines"):
                bad = fake._take_fault(request, ("bad_candle",),
                                       lambda fault: can_corrupt(payload, fault.options["at_ms"]))
                if bad is not None:
                    payload = corrupt(payload, bad.options["bad"], bad.options["at_ms"])
            malformed = fake._take_fault(request, ("malformed",))
            if malformed is not None:
                text = json.dumps(payload)
                broken = text[: max(1, len(text) // 2)] if malformed.options["how"] == "truncated" \
                    else "<html><body>upstream error</body></html>"
                broken = "" if malformed.options["how"] == "empty" else broken
                self._send_raw(200, broken.encode(), "application/json")
                return None
            return payload

        def _send_error_status(self, status: int, retry_after_s: int | None) -> None:
            headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else {}
            if status in (502, 503, 504):
                self._send_raw(status, _GATEWAY_HTML.format(status).encode(), "text/html", headers)
                return
            code, msg = _ERROR_BODIES.get(status, _ERROR_BODIES[500])
            body = json.dumps({"code": code, "msg": msg}).encode()
            self._send_raw(status, body, "application/json", headers)

        def _send_raw(self, status: int, body: bytes, content_type: str,
                      headers: Mapping[str, str] | None = None) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):  # the client already gave up (timeout)
                pass

    return Handler


def point_ccxt_at(exchange: Any, base_url: str, *, map_errors_by_path: bool = True) -> Any:
    """Aim a ccxt binance/binanceusdm client at ``base_url`` (the production contract: scheme+host replaced).

    ``map_errors_by_path`` restores ccxt's spot/linear error tables, which ccxt picks by *hostname*
    (api.binance.com, fapi.binance.com) and so never applies on 127.0.0.1: without it USD-M -4116,
    -2019, -2022 or -4164 become a plain ExchangeError instead of InvalidOrder / InsufficientFunds.
    """
    def rebase(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: rebase(item) for key, item in value.items()}
        return base_url.rstrip("/") + urlsplit(value).path if isinstance(value, str) else value

    exchange.urls["api"] = rebase(exchange.urls["api"])
    if map_errors_by_path:
        def get_exceptions_by_url(self: Any, url: str | None, exact_or_broad: str) -> dict:
            path = urlsplit(url or "").path
            prefixes = {"/api/": "spot", "/sapi/": "spot", "/fapi/": "linear", "/dapi/": "inverse"}
            market_type = next((kind for prefix, kind in prefixes.items() if path.startswith(prefix)), None)
            return self.safe_dict(self.safe_dict(self.exceptions, market_type, {}), exact_or_broad, {}) \
                if market_type else {}

        exchange.get_exceptions_by_url = types.MethodType(get_exceptions_by_url, exchange)
    return exchange


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the fake Binance REST server for manual trials.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--now-ms", type=int, default=None, help="freeze the clock (default: wall clock)")
    parser.add_argument("--seed", type=int, default=SimulatedParams().seed)
    args = parser.parse_args(argv)
    with FakeBinance(now_ms=args.now_ms, params=SimulatedParams(seed=args.seed), port=args.port) as fake:
        print(f"fake Binance at {fake.base_url} (any X-MBX-APIKEY is accepted); Ctrl-C stops", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    raise SystemExit(main())
