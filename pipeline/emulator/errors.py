"""Google-shaped API errors (``google.rpc.Status`` in an ``{"error": ...}`` envelope).

Every handler raises ``ApiError``; the HTTP layer turns it into the JSON body the SDK's
``errors.APIError`` parses, and the batch worker turns it into a per-line status.
"""
from __future__ import annotations

GRPC_CODES = {
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
}

HTTP_STATUS = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def retry_info(delay_s: float) -> dict:
    """A ``google.rpc.RetryInfo`` detail, as the service attaches to 429s."""
    text = f"{delay_s:g}s"
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": text}


class ApiError(Exception):
    """An error answer: HTTP code, canonical status, message, and rpc details."""

    def __init__(
        self, http_code: int, message: str, status: str | None = None,
        details: list | None = None,
    ) -> None:
        super().__init__(message)
        self.http_code = http_code
        self.status = status or HTTP_STATUS.get(http_code, "UNKNOWN")
        self.message = message
        self.details = list(details or [])

    @property
    def grpc_code(self) -> int:
        return GRPC_CODES.get(self.status, 2)

    def body(self) -> dict:
        return {"error": {"code": self.http_code, "message": self.message,
                          "status": self.status, "details": self.details}}

    def line_status(self) -> dict:
        """The per-line ``google.rpc.Status`` written into batch output (gRPC code)."""
        return {"code": self.grpc_code, "message": self.message}


def invalid_argument(message: str) -> ApiError:
    return ApiError(400, message, "INVALID_ARGUMENT")


def not_found(message: str = "Requested entity was not found.") -> ApiError:
    return ApiError(404, message, "NOT_FOUND")


def permission_denied(message: str) -> ApiError:
    return ApiError(403, message, "PERMISSION_DENIED")


def resource_exhausted(message: str, retry_delay_s: float) -> ApiError:
    return ApiError(429, message, "RESOURCE_EXHAUSTED", [retry_info(retry_delay_s)])
