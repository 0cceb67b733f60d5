"""The clients: ``AIHubClient`` (blocking) and ``AsyncAIHubClient`` (asyncio), both on httpx."""

from __future__ import annotations

from typing import Any, Mapping, Optional

import httpx

from ._resources import AsyncResources, Resources
from ._transport import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    AsyncTransport,
    SyncTransport,
    Timeout,
    _Config,
)


class AIHubClient(Resources):
    """A client of the AI Hub API.

    ``api_key`` defaults to ``AIHUB_API_KEY``; ``base_url`` to ``AIHUB_BASE_URL``, else
    ``http://localhost:8001/api/v1``. ``timeout`` is in seconds (or an ``httpx.Timeout``);
    GET, PUT and DELETE answered 429 or 503 are tried again up to ``max_retries`` times, after
    the ``retry-after`` the platform gave (or an exponential backoff). POST is never retried:
    a chat call or a creation could happen twice.
    """

    def __init__(
        self,
        api_key: Optional[str] = None,
        *,
        base_url: Optional[str] = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        default_headers: Optional[Mapping[str, str]] = None,
        http_client: Optional[httpx.Client] = None,
    ) -> None:
        config = _Config(api_key, base_url, timeout, max_retries, default_headers)
        self.base_url = config.base_url
        self.max_retries = config.max_retries
        self._transport = SyncTransport(config, http_client)
        super().__init__(self._transport)

    def close(self) -> None:
        """Closes the connection pool."""
        self._transport.close()

    def __enter__(self) -> "AIHubClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncAIHubClient(AsyncResources):
    """The asyncio form of :class:`AIHubClient`: every call is awaited; lists are awaited for
    their first page or run through with ``async for``."""

    def __init__(
        self,
        api_key: Optional[str] = None,
        *,
        base_url: Optional[str] = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        default_headers: Optional[Mapping[str, str]] = None,
        http_client: Optional[httpx.AsyncClient] = None,
    ) -> None:
        config = _Config(api_key, base_url, timeout, max_retries, default_headers)
        self.base_url = config.base_url
        self.max_retries = config.max_retries
        self._transport = AsyncTransport(config, http_client)
        super().__init__(self._transport)

    async def close(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> "AsyncAIHubClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
