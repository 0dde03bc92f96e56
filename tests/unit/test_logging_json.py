"""Request ids: a well-formed client id is kept, a malformed one replaced; the id is on the response, in
request.state, and in every JSON log line written while the request runs (and in none after)."""
from __future__ import annotations

import asyncio
import json
import logging
import sys

from serving.logging_json import JsonFormatter, RequestIdMiddleware, current_request_id, install_json_logging


def run(headers: list[tuple[bytes, bytes]]) -> tuple[dict, str | None, str | None]:
    seen: dict = {}

    async def app(scope, receive, send):
        seen["var"], seen["state"] = current_request_id(), scope["state"]["request_id"]
        record = logging.LogRecord("newsrec", logging.INFO, __file__, 1, "inside", (), None)
        seen["log"] = json.loads(JsonFormatter().format(record)).get("request_id")
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    async def scenario():
        sent = {}

        async def send(message):
            if message["type"] == "http.response.start":
                sent.update(message["headers"])

        await RequestIdMiddleware(app)({"type": "http", "path": "/", "headers": headers}, None, send)
        return sent, current_request_id()

    sent, after = asyncio.run(scenario())
    return sent, seen, after


def test_a_well_formed_client_id_is_carried_through_and_returned():
    sent, seen, after = run([(b"x-request-id", b"abc-123.Z")])
    assert sent[b"x-request-id"] == b"abc-123.Z"
    assert seen == {"var": "abc-123.Z", "state": "abc-123.Z", "log": "abc-123.Z"}
    assert sent[b"content-type"] == b"text/plain" and after is None


def test_a_malformed_or_missing_id_is_replaced_by_a_fresh_one():
    for headers in ([(b"x-request-id", b"bad id\n{json}")], [(b"x-request-id", b"x" * 65)], []):
        sent, seen, _ = run(headers)
        rid = sent[b"x-request-id"].decode()
        assert len(rid) == 32 and int(rid, 16) >= 0 and seen["var"] == rid == seen["state"] == seen["log"]


def test_json_lines_carry_the_request_id_extra_fields_and_the_trace():
    fmt = JsonFormatter()
    record = logging.LogRecord("newsrec.serving", logging.ERROR, __file__, 1, "failed %s", ("x",), None)
    record.request_id, record.stage = "r1", "ranker"
    line = json.loads(fmt.format(record))
    assert line["msg"] == "failed x" and line["request_id"] == "r1" and line["stage"] == "ranker"
    assert line["level"] == "ERROR" and line["logger"] == "newsrec.serving" and "exc" not in line
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("newsrec", logging.ERROR, __file__, 1, "m", (), sys.exc_info())
    assert "ValueError: boom" in json.loads(fmt.format(record))["exc"]
    plain = json.loads(fmt.format(logging.LogRecord("newsrec", logging.INFO, __file__, 1, "m", (), None)))
    assert "request_id" not in plain  # outside a request: no id invented


def test_install_is_idempotent():
    logger = logging.getLogger("newsrec-test-install")
    first, second = install_json_logging(logger.name), install_json_logging(logger.name)
    try:
        assert first is second and len(logger.handlers) == 1 and logger.level == logging.INFO
    finally:
        logger.removeHandler(first)
