"""The HTTP side shared by the sync and async clients: configuration, requests with retries,
errors, cursor pages and server-sent event streams."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from pathlib import Path
from typing import (
    IO,
    Any,
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Dict,
    Generator,
    Generic,
    Iterator,
    List,
    Mapping,
    Optional,
    Type,
    TypeVar,
    Union,
)
from urllib.parse import quote

import httpx

from ._base import NOT_GIVEN, Model
from ._errors import (
    AIHubError,
    APIConnectionError,
    APIError,
    APITimeoutError,
    make_error,
    retry_after,
)
from ._sse import SSEDecoder
from ._version import __version__

T = TypeVar("T", bound=Model)

DEFAULT_BASE_URL = "http://localhost:8001/api/v1"
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 2
# A retry-after longer than this is not waited for: the error is raised with it instead.
MAX_RETRY_DELAY = 60.0
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
RETRIED_STATUSES = frozenset({429, 503})

Timeout = Union[float, httpx.Timeout, None]
FileTarget = Union[str, "os.PathLike[str]", IO[bytes]]


def path_segment(value: Any) -> str:
    return quote(str(value), safe="")


def body(values: Mapping[str, Any]) -> Dict[str, Any]:
    """A JSON body of the arguments that were given (``NOT_GIVEN`` left out; ``None`` kept:
    it means null), models sent as the JSON they came from."""
    return {k: _wire(v) for k, v in values.items() if v is not NOT_GIVEN}


def _wire(value: Any) -> Any:
    if isinstance(value, Model):
        return value.to_dict()
    if isinstance(value, Mapping):
        return {k: _wire(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_wire(v) for v in value]
    return value


class _Config:
    def __init__(
        self,
        api_key: Optional[str],
        base_url: Optional[str],
        timeout: Timeout,
        max_retries: int,
        default_headers: Optional[Mapping[str, str]],
    ) -> None:
        api_key = api_key if api_key is not None else os.environ.get("AIHUB_API_KEY")
        if not api_key:
            raise AIHubError(
                "No API key: pass api_key=... or set AIHUB_API_KEY "
                "(an `aihub-sk-...` key, or the platform-admin token)."
            )
        self.api_key = api_key
        self.base_url = (base_url or os.environ.get("AIHUB_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.default_headers = dict(default_headers or {})

    def headers(self, extra: Optional[Mapping[str, Optional[str]]]) -> Dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self.api_key}",
            "Accept": "application/json",
            "User-Agent": f"ai-hub-python/{__version__}",
        }
        headers.update(self.default_headers)
        for name, value in (extra or {}).items():
            if value is None or value is NOT_GIVEN:
                continue
            headers[name] = value
        return headers

    def url(self, path: str) -> str:
        return self.base_url + path

    def query(self, query: Optional[Mapping[str, Any]]) -> Dict[str, str]:
        out = {}
        for name, value in (query or {}).items():
            if value is None or value is NOT_GIVEN:
                continue
            out[name] = str(value).lower() if isinstance(value, bool) else str(value)
        return out

    def retry_delay(self, method: str, status: int, headers: Mapping[str, str], body: Any, attempt: int) -> Optional[float]:
        """How long to wait before trying again, or None to give up and raise."""
        if attempt >= self.max_retries or method not in IDEMPOTENT or status not in RETRIED_STATUSES:
            return None
        detail = body.get("error") if isinstance(body, dict) else None
        if isinstance(detail, dict) and detail.get("code") == "insufficient_quota":
            return None  # the month's tokens do not come back by waiting
        told = retry_after(headers)
        if told is not None:
            return told if told <= MAX_RETRY_DELAY else None
        return backoff(attempt)


def backoff(attempt: int) -> float:
    """0.5 s, 1 s, 2 s … capped at 8 s, with up to a quarter of jitter taken off."""
    delay = min(0.5 * (2**attempt), 8.0)
    return delay * (1 - 0.25 * random.random())


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _error(response: httpx.Response) -> APIError:
    return make_error(response.status_code, _json(response), response.headers)


def _cast(cls: Optional[Type[T]], response: httpx.Response) -> Any:
    if cls is None or response.status_code == 204 or not response.content:
        return None
    value = cls(response.json())
    object.__setattr__(value, "_request_id", response.headers.get("x-request-id"))
    return value


def _timeout(value: Timeout) -> Any:
    return value if isinstance(value, httpx.Timeout) or value is None else httpx.Timeout(value)


# -------------------------------------------------------------------------------------------
# Streams


def _chunks(response: httpx.Response, cls: Type[T]) -> Generator[T, None, None]:
    # A function of its own, not a method: a generator holding the Stream would make a cycle,
    # and a loop left by `break` would close the connection only when the cycle is collected.
    decoder = SSEDecoder()

    def events():
        for raw in response.iter_bytes():
            yield from decoder.feed(raw)
        yield from decoder.close()

    try:
        for event in events():
            if event.data == "[DONE]":
                return
            payload = json.loads(event.data)
            if isinstance(payload, dict) and "error" in payload:
                raise make_error(None, payload)
            yield cls(payload)
    except httpx.TimeoutException as e:
        raise APITimeoutError(f"the stream stalled: {e}") from e
    except httpx.TransportError as e:
        raise APIConnectionError(f"the stream broke off: {e}") from e
    finally:
        response.close()


class Stream(Generic[T]):
    """Chunks of a streamed answer, as they arrive. Leaving the loop early (``break``) or
    ``close()`` closes the connection; the platform still bills what the model generated."""

    def __init__(self, response: httpx.Response, cls: Type[T]) -> None:
        self.response = response
        self.request_id: Optional[str] = response.headers.get("x-request-id")
        self._iterator = _chunks(response, cls)

    def __iter__(self) -> Iterator[T]:
        return self._iterator

    def __next__(self) -> T:
        return next(self._iterator)

    def close(self) -> None:
        self._iterator.close()
        self.response.close()

    def __enter__(self) -> "Stream[T]":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


async def _async_chunks(response: httpx.Response, cls: Type[T]) -> AsyncGenerator[T, None]:
    decoder = SSEDecoder()
    try:
        async for raw in response.aiter_bytes():
            for event in decoder.feed(raw):
                if event.data == "[DONE]":
                    return
                payload = json.loads(event.data)
                if isinstance(payload, dict) and "error" in payload:
                    raise make_error(None, payload)
                yield cls(payload)
    except httpx.TimeoutException as e:
        raise APITimeoutError(f"the stream stalled: {e}") from e
    except httpx.TransportError as e:
        raise APIConnectionError(f"the stream broke off: {e}") from e
    finally:
        await response.aclose()


class AsyncStream(Generic[T]):
    """The async form of :class:`Stream`: ``async for chunk in stream``."""

    def __init__(self, response: httpx.Response, cls: Type[T]) -> None:
        self.response = response
        self.request_id: Optional[str] = response.headers.get("x-request-id")
        self._iterator = _async_chunks(response, cls)

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iterator

    async def __anext__(self) -> T:
        return await self._iterator.__anext__()

    async def close(self) -> None:
        await self._iterator.aclose()
        await self.response.aclose()

    async def __aenter__(self) -> "AsyncStream[T]":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


# -------------------------------------------------------------------------------------------
# Cursor pages


class SyncPage(Generic[T]):
    """One page of a list. Iterating it yields every item of every page after it too, fetching
    each next page (``?cursor=``) when the one before is used up."""

    def __init__(self, body: Mapping[str, Any], cls: Type[T], fetch: Callable[[str], "SyncPage[T]"], request_id: Optional[str]) -> None:
        self.data: List[T] = [cls(item) for item in body.get("data", [])]
        self.next_cursor: Optional[str] = body.get("next_cursor")
        self.request_id = request_id
        self._fetch = fetch

    def has_next_page(self) -> bool:
        return bool(self.next_cursor)

    def next_page(self) -> "SyncPage[T]":
        if not self.next_cursor:
            raise StopIteration("this is the last page")
        return self._fetch(self.next_cursor)

    def iter_pages(self) -> Iterator["SyncPage[T]"]:
        page: SyncPage[T] = self
        while True:
            yield page
            if not page.has_next_page():
                return
            page = page.next_page()

    def __iter__(self) -> Iterator[T]:
        for page in self.iter_pages():
            yield from page.data


class AsyncPage(Generic[T]):
    """One page of a list, fetched by the async client; ``async for`` runs through every page."""

    def __init__(self, body: Mapping[str, Any], cls: Type[T], fetch: Callable[[str], Awaitable["AsyncPage[T]"]], request_id: Optional[str]) -> None:
        self.data: List[T] = [cls(item) for item in body.get("data", [])]
        self.next_cursor: Optional[str] = body.get("next_cursor")
        self.request_id = request_id
        self._fetch = fetch

    def has_next_page(self) -> bool:
        return bool(self.next_cursor)

    async def next_page(self) -> "AsyncPage[T]":
        if not self.next_cursor:
            raise StopAsyncIteration("this is the last page")
        return await self._fetch(self.next_cursor)

    async def iter_pages(self) -> AsyncIterator["AsyncPage[T]"]:
        page: AsyncPage[T] = self
        while True:
            yield page
            if not page.has_next_page():
                return
            page = await page.next_page()

    async def __aiter__(self) -> AsyncIterator[T]:
        async for page in self.iter_pages():
            for item in page.data:
                yield item


class AsyncPager(Generic[T]):
    """What an async list call returns: ``await`` it for the first page, or ``async for`` over
    it for every item of every page."""

    def __init__(self, first: Callable[[], Awaitable[AsyncPage[T]]]) -> None:
        self._first = first

    def __await__(self) -> Generator[Any, None, AsyncPage[T]]:
        return self._first().__await__()

    async def __aiter__(self) -> AsyncIterator[T]:
        page = await self._first()
        async for item in page:
            yield item


# -------------------------------------------------------------------------------------------
# The clients' HTTP cores


def _open(target: FileTarget):
    if hasattr(target, "write"):
        return target, False
    return open(Path(target), "wb"), True  # type: ignore[arg-type]


class SyncTransport:
    def __init__(self, config: _Config, http_client: Optional[httpx.Client]) -> None:
        self._config = config
        self._http = http_client or httpx.Client(timeout=_timeout(config.timeout), follow_redirects=False)

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, *, query=None, body=None, headers=None, timeout: Timeout = None, stream: bool = False) -> httpx.Response:
        config = self._config
        request = self._http.build_request(
            method,
            config.url(path),
            params=config.query(query),
            json=body,
            headers=config.headers(headers),
            timeout=_timeout(timeout) if timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )
        attempt = 0
        while True:
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TimeoutException as e:
                raise APITimeoutError(f"{method} {path}: no answer in time") from e
            except httpx.TransportError as e:
                raise APIConnectionError(f"{method} {path}: {e}") from e
            if response.status_code < 400:
                return response
            if stream:
                response.read()
            delay = config.retry_delay(method, response.status_code, response.headers, _json(response), attempt)
            if delay is None:
                raise _error(response)
            response.close()
            time.sleep(delay)
            attempt += 1

    def request(self, method: str, path: str, *, cast: Optional[Type[T]] = None, **kwargs: Any) -> Any:
        return _cast(cast, self._send(method, path, **kwargs))

    def page(self, path: str, *, cast: Type[T], query: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> SyncPage[T]:
        def fetch(cursor: Optional[str]) -> SyncPage[T]:
            q = dict(query or {})
            if cursor:
                q["cursor"] = cursor
            response = self._send("GET", path, query=q, **kwargs)
            return SyncPage(response.json(), cast, fetch, response.headers.get("x-request-id"))

        return fetch(None)

    def stream(self, method: str, path: str, *, cast: Type[T], **kwargs: Any) -> Stream[T]:
        return Stream(self._send(method, path, stream=True, **kwargs), cast)

    def download(self, path: str, file: FileTarget, **kwargs: Any) -> int:
        response = self._send("GET", path, stream=True, **kwargs)
        out, owned = _open(file)
        written = 0
        try:
            for chunk in response.iter_bytes():
                out.write(chunk)
                written += len(chunk)
        except httpx.TransportError as e:
            raise APIConnectionError(f"the download broke off: {e}") from e
        finally:
            response.close()
            if owned:
                out.close()
        return written


class AsyncTransport:
    def __init__(self, config: _Config, http_client: Optional[httpx.AsyncClient]) -> None:
        self._config = config
        self._http = http_client or httpx.AsyncClient(timeout=_timeout(config.timeout), follow_redirects=False)

    async def close(self) -> None:
        await self._http.aclose()

    async def _send(self, method: str, path: str, *, query=None, body=None, headers=None, timeout: Timeout = None, stream: bool = False) -> httpx.Response:
        config = self._config
        request = self._http.build_request(
            method,
            config.url(path),
            params=config.query(query),
            json=body,
            headers=config.headers(headers),
            timeout=_timeout(timeout) if timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )
        attempt = 0
        while True:
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TimeoutException as e:
                raise APITimeoutError(f"{method} {path}: no answer in time") from e
            except httpx.TransportError as e:
                raise APIConnectionError(f"{method} {path}: {e}") from e
            if response.status_code < 400:
                return response
            if stream:
                await response.aread()
            delay = config.retry_delay(method, response.status_code, response.headers, _json(response), attempt)
            if delay is None:
                raise _error(response)
            await response.aclose()
            await asyncio.sleep(delay)
            attempt += 1

    async def request(self, method: str, path: str, *, cast: Optional[Type[T]] = None, **kwargs: Any) -> Any:
        return _cast(cast, await self._send(method, path, **kwargs))

    def page(self, path: str, *, cast: Type[T], query: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> AsyncPager[T]:
        async def fetch(cursor: Optional[str]) -> AsyncPage[T]:
            q = dict(query or {})
            if cursor:
                q["cursor"] = cursor
            response = await self._send("GET", path, query=q, **kwargs)
            return AsyncPage(response.json(), cast, fetch, response.headers.get("x-request-id"))

        return AsyncPager(lambda: fetch(None))

    async def stream(self, method: str, path: str, *, cast: Type[T], **kwargs: Any) -> AsyncStream[T]:
        return AsyncStream(await self._send(method, path, stream=True, **kwargs), cast)

    async def download(self, path: str, file: FileTarget, **kwargs: Any) -> int:
        response = await self._send("GET", path, stream=True, **kwargs)
        out, owned = _open(file)
        written = 0
        try:
            async for chunk in response.aiter_bytes():
                out.write(chunk)
                written += len(chunk)
        except httpx.TransportError as e:
            raise APIConnectionError(f"the download broke off: {e}") from e
        finally:
            await response.aclose()
            if owned:
                out.close()
        return written
