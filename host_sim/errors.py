"""The host API's error: a stable code, an HTTP status, a message and the figures behind it."""

from __future__ import annotations

from typing import Any

from cardcore.errors import FuelsimError


class ApiError(FuelsimError):
    """A refusal the API answers as `{"error": {"code", "message", ...figures}}`."""

    title = "host API error"

    def __init__(
        self,
        code: str,
        status: int,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **figures: Any,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.figures = figures

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.figures}}


def bad_request(field: str, message: str) -> ApiError:
    """400 E_BAD_REQUEST naming the offending field."""
    return ApiError("E_BAD_REQUEST", 400, f"{field}: {message}", field=field)
