"""The HTTP side of errors: OpenAI's error object, and which status each error gets.

    ApiError (EdgeLMError)     a request the server refuses, with its HTTP status

edgelm's own errors map to statuses here, once: ConfigError (a bad option or input)
is 400; anything else a request triggers is a 500 with a one-line message.
"""

from __future__ import annotations

from typing import Any

from edgelm.errors import ConfigError, EdgeLMError, first_line


class ApiError(EdgeLMError):
    """A refused request: status, OpenAI error type, the field at fault and a code."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.type, self.param, self.code = status, type, param, code


def bad_request(message: str, *, param: str | None = None, code: str | None = None
                ) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def as_api_error(error: BaseException) -> ApiError:
    """Any exception as an ApiError: ours keep their status, ConfigError is a 400."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, ConfigError):
        return ApiError(400, first_line(error))
    return ApiError(500, f"the server failed: {first_line(error)}", type="server_error")


def error_body(error: ApiError) -> dict[str, Any]:
    """OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""
    return {"error": {"message": first_line(error), "type": error.type,
                      "param": error.param, "code": error.code}}
