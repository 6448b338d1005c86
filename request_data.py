"""What a request sends, parsed and checked: its JSON or form body, query
arguments and form fields validated by a schema, and the app's JSON parser.
Anything malformed is a 400 that says what is wrong (errors.ApiError)."""

from collections.abc import Mapping
from typing import Any

from flask import Flask, current_app, request
from flask.json.provider import DefaultJSONProvider
from marshmallow import Schema, ValidationError

from errors import ApiError


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON, where what Python's parser lets through but is not text
    is bad input, like any malformed body (a ValueError, then a 400).

    Deep nesting (``[[[[...`` a thousand deep) makes the parser give up with
    a RecursionError, which Flask does not count as invalid JSON. And
    ``"\\ud800"`` parses into a string holding half of a UTF-16 pair, which
    no text encoding can write: it failed later, wherever the string went
    (a 500 at a password check or in the database).
    """

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        """Parse JSON; too deep a document, or a lone surrogate in any string,
        raises ValueError like bad syntax."""
        try:
            document = super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("it is nested too deeply") from None
        # Only an escape (\\uD800) can make one: encoded text cannot hold it.
        escaped = "\\u" in s if isinstance(s, str) else b"\\u" in s
        if escaped and _holds_surrogate(document):
            raise ValueError("it holds a lone surrogate (\\ud800-\\udfff), not text")
        return document


def _holds_surrogate(document: Any) -> bool:
    """Whether any string in a parsed JSON document, key or value, holds half
    of a UTF-16 surrogate pair (json joins whole pairs into one character)."""
    pending = [document]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False


def request_body() -> dict[str, Any]:
    """The JSON object or the form of a POST; 400 for a body that is not valid
    JSON (saying why) or not an object."""
    if not request.is_json:
        return request.form
    try:
        body = current_app.json.loads(request.get_data(cache=True))
    except ValueError as error:
        raise ApiError(400, f"The body is not valid JSON: {error}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The body must be a JSON object")
    return body


# Where marshmallow files what a schema-level rule (validates_schema) says.
SCHEMA = "_schema"


def load_or_400(schema: Schema, data: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``data`` with a marshmallow schema; a 400 naming the first problem."""
    try:
        return schema.load(data)
    except ValidationError as error:
        field, messages = next(iter(error.normalized_messages().items()))
        # A list's items have messages of their own: {index: [message]}.
        while isinstance(messages, dict):
            messages = next(iter(messages.values()))
        message = messages[0] if isinstance(messages, list) else str(messages)
        if field == SCHEMA:
            # A rule about the fields together: its sentence says it all.
            raise ApiError(400, message) from None
        raise ApiError(400, f"{field}: {message}") from None


def init_app(app: Flask) -> None:
    """The app's JSON parser."""
    app.json = JSONProvider(app)
