"""Calls between contexts across a process or host boundary, for every deployer.

One mechanism serves both remote variants: the *interfaces* in `workloads.shop.interfaces`
define each method's argument and result types, so a `Dispatcher` (server side) and a
proxy made by `make_proxy` (client side) can encode a call with any msgspec codec —
msgpack over a Unix socket (multiprocess) or JSON over HTTP (distributed) — without
per-method code. A transport is just `send(method, args) -> (ok, body)`; it raises
`TransportError` when the other side cannot be reached in time.

Domain errors cross the boundary as `ErrorBody{error, detail}` and are raised again on
the caller's side as the same `ShopError` subclass; an unreachable peer becomes
`Unavailable`, which the edge API maps to a fast 503 (or a flagged degraded answer).
"""

from __future__ import annotations

import inspect
import logging
import socket
import struct
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import msgspec

from workloads.shop.contracts import ErrorBody
from workloads.shop.errors import ShopError, Unavailable, error_from_code
from workloads.shop.interfaces import (
    CatalogApi,
    InventoryApi,
    NotificationsApi,
    OrdersApi,
    RecommendationsApi,
)

log = logging.getLogger(__name__)


def kernel_timeouts(sock: socket.socket, seconds: float) -> None:
    """Have the kernel time out `sock`'s sends and receives after `seconds` (SO_SNDTIMEO,
    SO_RCVTIMEO; a blocking socket then raises BlockingIOError). Every transport does this
    instead of a Python-level timeout, which adds a poll() before every send and recv."""
    sec, usec = divmod(max(1, round(seconds * 1e6)), 1_000_000)
    timeval = struct.pack("@ll", sec, usec)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


RECV_CHUNK = 16 * 1024
"""Bytes asked of one recv() by every transport. recv(n) allocates n bytes for every call
before it shrinks them to what came: in a plain keep-alive loop against the granian catalog
service, 256 KiB per recv cost about 40 µs more client CPU per call than 64 KiB on this
machine; a larger answer takes a few more calls."""

INTERFACES: dict[str, type] = {
    "catalog": CatalogApi,
    "inventory": InventoryApi,
    "orders": OrdersApi,
    "recommendations": RecommendationsApi,
    "notifications": NotificationsApi,
}

Format = Literal["msgpack", "json"]


class TransportError(Exception):
    """The peer could not be reached, or did not answer in time."""


class Transport(Protocol):
    def __call__(self, method: str, args: bytes) -> tuple[bool, bytes]: ...


@dataclass(frozen=True)
class Method:
    name: str
    params: tuple[str, ...]
    args_type: Any
    result_type: Any


def methods(interface: type) -> dict[str, Method]:
    """Each public method of an interface with its argument tuple type and result type."""
    found = {}
    for name, fn in inspect.getmembers(interface, inspect.isfunction):
        if name.startswith("_"):
            continue
        hints = typing.get_type_hints(fn)
        params = tuple(p for p in inspect.signature(fn).parameters if p != "self")
        args_type = tuple[tuple(hints[p] for p in params)] if params else tuple[()]
        found[name] = Method(name, params, args_type, hints["return"])
    return found


class Codec:
    """Encoders and per-type decoders for one wire format, built once."""

    def __init__(self, fmt: Format) -> None:
        self.format = fmt
        mod = msgspec.msgpack if fmt == "msgpack" else msgspec.json
        self.encode: Callable[[Any], bytes] = mod.Encoder().encode
        self._decoder_class = mod.Decoder
        self._decoders: dict[Any, Callable[[bytes], Any]] = {}

    def decoder(self, type_: Any) -> Callable[[bytes], Any]:
        dec = self._decoders.get(type_)
        if dec is None:
            dec = self._decoders[type_] = self._decoder_class(type_).decode
        return dec


class Dispatcher:
    """Serves one context: decodes a call, runs the real method, encodes the answer."""

    def __init__(self, context: str, impl: object, codec: Codec) -> None:
        self.context = context
        self.codec = codec
        self._calls = {
            name: (getattr(impl, name), codec.decoder(m.args_type))
            for name, m in methods(INTERFACES[context]).items()
        }
        self._decode_error = codec.decoder(ErrorBody)

    def handle(self, method: str, args: bytes) -> tuple[bool, bytes]:
        """(True, result) or (False, ErrorBody). Never raises for a bad call."""
        entry = self._calls.get(method)
        if entry is None:
            return False, self.codec.encode(
                ErrorBody("invalid_request", f"{self.context} has no method {method!r}")
            )
        fn, decode_args = entry
        try:
            result = fn(*decode_args(args))
        except msgspec.ValidationError as exc:
            return False, self.codec.encode(ErrorBody("invalid_request", str(exc)))
        except ShopError as exc:
            return False, self.codec.encode(ErrorBody(exc.code, exc.detail))
        except Exception as exc:
            log.exception("%s.%s failed", self.context, method)
            return False, self.codec.encode(ErrorBody("shop_error", f"{type(exc).__name__}: {exc}"))
        return True, self.codec.encode(result)


def make_proxy(context: str, transport: Transport, codec: Codec) -> Any:
    """An object with the context's interface whose methods call through `transport`."""
    decode_error = codec.decoder(ErrorBody)
    attrs: dict[str, Any] = {"__doc__": f"Remote {context} over {codec.format}."}
    for name, m in methods(INTERFACES[context]).items():
        attrs[name] = _remote_method(context, name, transport, codec, m, decode_error)
    return type(f"Remote{context.title()}", (), attrs)()


def _remote_method(
    context: str,
    name: str,
    transport: Transport,
    codec: Codec,
    m: Method,
    decode_error: Callable[[bytes], ErrorBody],
) -> Callable[..., Any]:
    encode = codec.encode
    decode_result = codec.decoder(m.result_type)

    def call(self: object, *args: Any) -> Any:
        try:
            ok, body = transport(name, encode(args))
        except TransportError as exc:
            raise Unavailable(f"{context} unavailable: {exc}") from exc
        if ok:
            return decode_result(body)
        err = decode_error(body)
        raise error_from_code(err.error, err.detail)

    call.__name__ = name
    return call
