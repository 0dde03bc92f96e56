"""The API's error tree: each class carries its HTTP status; one handler renders them. A 5xx body carries a
request id, never the exception text. Degradable dependency failures never come here: the pipeline absorbs them."""
from __future__ import annotations


class ApiError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class InvalidInput(ApiError):
    status, code = 422, "invalid_input"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class NotReady(ApiError):
    status, code = 503, "not_ready"
