"""The Python SDK of AI Hub: ``from ai_hub import AIHubClient``."""

from ._base import NOT_GIVEN, Model, ModelDriftError
from ._client import AIHubClient, AsyncAIHubClient
from ._errors import (
    AIHubError,
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
    ServiceUnavailableError,
    UnprocessableEntityError,
    UpstreamError,
)
from ._models import *  # noqa: F401,F403
from ._sse import SSEDecoder, ServerSentEvent
from ._transport import AsyncPage, AsyncPager, AsyncStream, Stream, SyncPage
from ._version import __version__

__all__ = [
    "AIHubClient",
    "AsyncAIHubClient",
    "AIHubError",
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "InternalServerError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "QuotaExceededError",
    "RateLimitError",
    "ServiceUnavailableError",
    "UnprocessableEntityError",
    "UpstreamError",
    "Model",
    "ModelDriftError",
    "NOT_GIVEN",
    "Stream",
    "AsyncStream",
    "SyncPage",
    "AsyncPage",
    "AsyncPager",
    "SSEDecoder",
    "ServerSentEvent",
    "__version__",
]
