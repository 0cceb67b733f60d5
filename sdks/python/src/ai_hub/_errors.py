"""Typed errors: one class per family of the platform's error answers, each carrying what the
OpenAI error shape says (``status``, ``type``, ``code``, ``param``, ``message``) and the
``x-request-id`` to quote to an operator.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Type


class AIHubError(Exception):
    """Every error this SDK raises."""


class APIConnectionError(AIHubError):
    """The platform could not be reached, or the connection broke before an answer."""


class APITimeoutError(APIConnectionError):
    """No answer within the timeout."""


class APIError(AIHubError):
    """An error answer of the platform, in the OpenAI error shape."""

    status: Optional[int]
    type: Optional[str]
    code: Optional[str]
    param: Optional[str]
    message: str
    request_id: Optional[str]
    body: Any
    headers: Mapping[str, str]

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        type: Optional[str] = None,
        code: Optional[str] = None,
        param: Optional[str] = None,
        request_id: Optional[str] = None,
        body: Any = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.code = code
        self.param = param
        self.request_id = request_id
        self.body = body
        self.headers = dict(headers or {})

    def __str__(self) -> str:
        parts = [str(self.status) if self.status else "stream error"]
        if self.code:
            parts.append(self.code)
        text = " ".join(parts) + f": {self.message}"
        if self.param:
            text += f" (param {self.param})"
        if self.request_id:
            text += f" [request {self.request_id}]"
        return text


class BadRequestError(APIError):
    """400: the request is malformed or a field is invalid; ``param`` names it."""


class AuthenticationError(APIError):
    """401: the key is missing, unknown, disabled, expired or revoked."""


class PermissionDeniedError(APIError):
    """403: the key lacks the permission, or the plan the feature."""


class NotFoundError(APIError):
    """404: no such resource in the caller's organization (or no such model)."""


class ConflictError(APIError):
    """409: a version (``If-Match``) or uniqueness conflict."""


class PayloadTooLargeError(APIError):
    """413: the body is larger than the platform takes."""


class UnprocessableEntityError(APIError):
    """422: well-formed but refused."""


class RateLimitError(APIError):
    """429: too many requests, tokens or streams; ``retry_after`` says when to try again."""

    @property
    def retry_after(self) -> Optional[float]:
        return _retry_after(self.headers)


class QuotaExceededError(RateLimitError):
    """429 ``insufficient_quota``: the plan's monthly tokens are spent."""


class InternalServerError(APIError):
    """5xx: the platform failed."""


class UpstreamError(InternalServerError):
    """502/504: every model provider failed or timed out (``upstream_error``, ``upstream_timeout``)."""


class ServiceUnavailableError(InternalServerError):
    """503: a dependency is unavailable; retry after ``retry-after``."""


_BY_STATUS: Dict[int, Type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    500: InternalServerError,
    502: UpstreamError,
    503: ServiceUnavailableError,
    504: UpstreamError,
}

# Errors inside a stream (status 200 already sent) are told apart by their code.
_BY_CODE: Dict[str, Type[APIError]] = {
    "insufficient_quota": QuotaExceededError,
    "rate_limit_exceeded": RateLimitError,
    "too_many_streams": RateLimitError,
    "upstream_error": UpstreamError,
    "upstream_timeout": UpstreamError,
    "service_unavailable": ServiceUnavailableError,
    "invalid_api_key": AuthenticationError,
    "not_found": NotFoundError,
}


def error_class(status: Optional[int], code: Optional[str]) -> Type[APIError]:
    if status == 429 and code == "insufficient_quota":
        return QuotaExceededError
    if status is not None:
        if status in _BY_STATUS:
            return _BY_STATUS[status]
        if status >= 500:
            return InternalServerError
        return APIError
    return _BY_CODE.get(code or "", APIError)


def make_error(
    status: Optional[int], body: Any, headers: Optional[Mapping[str, str]] = None
) -> APIError:
    """The error an answer (or a stream's error event, ``status`` None) stands for."""
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    detail = body.get("error") if isinstance(body, dict) else None
    if not isinstance(detail, dict):
        detail = {}
    message = detail.get("message") or (body if isinstance(body, str) and body else None)
    code = detail.get("code")
    cls = error_class(status, code)
    return cls(
        str(message or f"HTTP {status}"),
        status=status,
        type=detail.get("type"),
        code=code,
        param=detail.get("param"),
        request_id=headers.get("x-request-id"),
        body=body,
        headers=headers,
    )


def _retry_after(headers: Mapping[str, str]) -> Optional[float]:
    value = {k.lower(): v for k, v in headers.items()}.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime
        import datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        now = datetime.datetime.now(when.tzinfo)
        seconds = (when - now).total_seconds()
    return max(seconds, 0.0)


retry_after = _retry_after
