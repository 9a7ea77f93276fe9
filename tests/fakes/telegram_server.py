"""Fake Telegram Bot API for tests: records sendMessage (JSON or form) and sendPhoto (multipart, photo bytes
kept) on a stdlib ThreadingHTTPServer at 127.0.0.1, with injectable 429 (retry_after) and 401 errors.

Point the alert code's Bot API base URL at ``fake.base_url``; it serves ``/bot<token>/<method>``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

PATH = re.compile(r"/bot(?P<token>[^/]+)/(?P<method>\w+)")
_DESCRIPTIONS = {400: "Bad Request: chat not found", 401: "Unauthorized", 404: "Not Found",
                 403: "Forbidden: bot was blocked by the user", 500: "Internal Server Error"}


@dataclass(frozen=True, slots=True)
class SentMessage:
    """One delivered sendMessage/sendPhoto. ``text`` is the message text or the photo caption."""

    method: str
    token: str
    chat_id: str
    text: str | None
    fields: dict[str, str]
    photo: bytes | None = None
    photo_filename: str | None = None
    photo_content_type: str | None = None


@dataclass(frozen=True, slots=True)
class TelegramRequest:
    method: str
    token: str
    status: int


@dataclass(slots=True)
class _Failure:
    status: int
    retry_after_s: int
    method: str | None
    remaining: int | None
    description: str | None = field(default=None)


def parse_multipart(body: bytes, content_type: str) -> dict[str, tuple[bytes, str | None, str | None]]:
    """``name -> (content, filename, content type)`` of a multipart/form-data body (exact bytes)."""
    header = BytesHeaderParser().parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode())
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str):
        raise ValueError("multipart body without a boundary")
    parts: dict[str, tuple[bytes, str | None, str | None]] = {}
    for chunk in body.split(b"--" + boundary.encode())[1:]:
        if chunk.startswith(b"--"):  # the closing delimiter
            break
        head, _, content = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        headers = BytesHeaderParser().parsebytes(head + b"\r\n\r\n")
        name = headers.get_param("name", header="content-disposition")
        if isinstance(name, str):
            parts[name] = (content.removesuffix(b"\r\n"), headers.get_filename(), headers.get_content_type())
    return parts


class FakeTelegram:
    """Thread-safe fake Bot API: ``with FakeTelegram() as tg: ...; tg.messages``.

    ``valid_tokens`` (when given) makes every other token answer 401, as a revoked bot token does.
    """

    def __init__(self, *, valid_tokens: Collection[str] | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self._lock = threading.Lock()
        self._messages: list[SentMessage] = []
        self._requests: list[TelegramRequest] = []
        self._failures: list[_Failure] = []
        self._next_message_id = 1
        self.valid_tokens = None if valid_tokens is None else set(valid_tokens)
        self._server = ThreadingHTTPServer((host, port), _handler_class(self))
        self._server.daemon_threads = True

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}"

    def start(self) -> FakeTelegram:
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-telegram",
                         daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeTelegram:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- fault injection -------------------------------------------------------------------------------
    def fail_next(self, status: int = 429, *, retry_after_s: int = 3, times: int | None = 1,
                  method: str | None = None, description: str | None = None) -> None:
        """Answer the next matching calls with ``status`` (429 carries ``parameters.retry_after``)."""
        with self._lock:
            self._failures.append(_Failure(status, retry_after_s, method, times, description))

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    # -- observation -----------------------------------------------------------------------------------
    @property
    def messages(self) -> list[SentMessage]:
        """Every delivered sendMessage and sendPhoto, oldest first."""
        with self._lock:
            return list(self._messages)

    @property
    def photos(self) -> list[SentMessage]:
        return [message for message in self.messages if message.photo is not None]

    @property
    def texts(self) -> list[str]:
        return [message.text or "" for message in self.messages]

    def request_count(self, method: str | None = None) -> int:
        """All calls received (failed ones included)."""
        with self._lock:
            return sum(1 for request in self._requests if method in (None, request.method))

    def wait_for_messages(self, count: int, *, timeout_s: float = 5.0) -> list[SentMessage]:
        """The messages once at least ``count`` arrived (for senders on another thread or process)."""
        deadline = time.monotonic() + timeout_s
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.messages

    # -- internals -------------------------------------------------------------------------------------
    def _handle(self, token: str, method: str, fields: Mapping[str, Any],
                photo: tuple[bytes, str | None, str | None] | None) -> tuple[int, dict[str, Any]]:
        with self._lock:
            status, body = self._answer(token, method, fields, photo)
            self._requests.append(TelegramRequest(method, token, status))
            return status, body

    def _answer(self, token: str, method: str, fields: Mapping[str, Any],
                photo: tuple[bytes, str | None, str | None] | None) -> tuple[int, dict[str, Any]]:
        if self.valid_tokens is not None and token not in self.valid_tokens:
            return _error(401)
        failure = next((f for f in self._failures if f.method in (None, method)), None)
        if failure is not None:
            if failure.remaining is not None:
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._failures.remove(failure)
            return _error(failure.status, failure.retry_after_s, failure.description)
        if method == "getMe":
            return 200, {"ok": True, "result": {"id": 1, "is_bot": True, "first_name": "fake",
                                                "username": "fake_bot"}}
        if method not in ("sendMessage", "sendPhoto"):
            return _error(404)
        chat_id = str(fields.get("chat_id") or "")
        empty = not fields.get("text") if method == "sendMessage" else photo is None
        if not chat_id or empty:
            return _error(400, description="Bad Request: message text is empty" if chat_id else None)
        text = fields.get("text") if method == "sendMessage" else fields.get("caption")
        message = SentMessage(method, token, chat_id, None if text is None else str(text),
                              {key: str(value) for key, value in fields.items()},
                              *(photo if photo is not None else (None, None, None)))
        self._messages.append(message)
        message_id, self._next_message_id = self._next_message_id, self._next_message_id + 1
        result: dict[str, Any] = {"message_id": message_id, "date": int(time.time()),
                                  "chat": {"id": int(chat_id) if chat_id.lstrip("-").isdigit() else chat_id,
                                           "type": "private"}}
        if photo is not None:
            result.update({"photo": [{"file_id": f"photo-{message_id}", "file_unique_id": f"u{message_id}",
                                      "file_size": len(photo[0]), "width": 0, "height": 0}], "caption": text})
        else:
            result["text"] = text
        return 200, {"ok": True, "result": result}


def _error(status: int, retry_after_s: int = 3, description: str | None = None) -> tuple[int, dict[str, Any]]:
    if status == 429:
        return 429, {"ok": False, "error_code": 429, "parameters": {"retry_after": retry_after_s},
                     "description": f"Too Many Requests: retry after {retry_after_s}"}
    return status, {"ok": False, "error_code": status,
                    "description": description or _DESCRIPTIONS.get(status, "Error")}


def _handler_class(fake: FakeTelegram) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - no access log on stderr
            return

        def do_POST(self) -> None:  # noqa: N802
            split = urlsplit(self.path)
            match = PATH.fullmatch(split.path)
            if match is None:
                self._send(*_error(404))
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            content_type = self.headers.get("Content-Type") or ""
            fields: dict[str, Any] = dict(parse_qsl(split.query))
            photo = None
            try:
                if content_type.startswith("application/json"):
                    fields.update(json.loads(body or b"{}"))
                elif content_type.startswith("multipart/form-data"):
                    for name, (content, filename, part_type) in parse_multipart(body, content_type).items():
                        if filename is None:
                            fields[name] = content.decode()
                        elif name == "photo":
                            photo = (content, filename, part_type)
                else:
                    fields.update(parse_qsl(body.decode()))
            except (ValueError, UnicodeDecodeError):
                self._send(*_error(400, description="Bad Request: can't parse request body"))
                return
            self._send(*fake._handle(match["token"], match["method"], fields, photo))

        do_GET = do_POST  # noqa: N815

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if status == 429:
                self.send_header("Retry-After", str(payload["parameters"]["retry_after"]))
            self.end_headers()
            self.wfile.write(body)

    return Handler
