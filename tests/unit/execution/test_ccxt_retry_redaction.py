"""A ccxt read's retry log lines redact the client's own credentials from the error's text before cutting it
(lib.core.retry.error_text): an exchange error quoting the key must not leave its head in the log."""

from __future__ import annotations

from typing import Any

import ccxt
import pytest
from loguru import logger

from lib.core.errors import ExchangeUnavailable
from lib.core.retry import ERROR_TEXT_CHARS
from lib.execution.ccxt_client import RETRY_BASE_DELAY_ATTRIBUTE, call

API_KEY = "fake-api-key-1234"


class Client:
    """What `call` reads of a ccxt client, with its credentials set."""

    apiKey, secret, password = API_KEY, "fake-api-secret-5678", None
    last_http_response = last_json_response = None
    last_response_headers: dict[str, str] = {}

    def __init__(self) -> None:
        setattr(self, RETRY_BASE_DELAY_ATTRIBUTE, 0.0)


@pytest.mark.parametrize("cut", range(1, len(API_KEY)))
def test_the_clients_key_where_the_log_cuts_the_error_leaks_no_part_of_it(cut: int) -> None:
    filler = "x" * (ERROR_TEXT_CHARS - cut)

    def fails() -> Any:
        raise ccxt.NetworkError(filler + API_KEY + " timed out")

    messages: list[str] = []
    sink = logger.add(lambda message: messages.append(message.record["message"]), level="WARNING")
    try:
        with pytest.raises(ExchangeUnavailable):
            call(Client(), "fetch_balance", fails)
    finally:
        logger.remove(sink)
    assert messages
    for message in messages:
        assert message.split(filler, 1)[1].startswith("*"), message  # redacted, then cut
        assert API_KEY[:2] not in message.split(filler, 1)[1]
