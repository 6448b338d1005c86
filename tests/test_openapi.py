"""The OpenAPI description and the app's routes agree."""

import re

import pytest

import monitoring
from helpers import METADATA_FIELDS, DescribedAnswers, make_app
from openapi import build_spec

# The description is made from code alone: no database is involved.
pytestmark = pytest.mark.one_database

HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


def flask_routes(app) -> set[tuple[str, str]]:
    """(OpenAPI-style path, method) for every route but static files."""
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((path, method.lower()))
    return routes


def spec_routes(spec) -> set[tuple[str, str]]:
    """(path, method) for every operation the description lists."""
    return {
        (path, method)
        for path, item in spec["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def test_every_route_is_described_and_nothing_else(app):
    assert flask_routes(app) == spec_routes(build_spec(app))


def test_the_description_is_openapi_3_1_with_both_token_locations(client):
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"] == "3.1.0"
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT, or a personal access token (lbx_...)",
    }
    assert schemes["queryToken"] == {"type": "apiKey", "in": "query", "name": "token"}
    assert schemes["basic"]["scheme"] == "basic"


def test_file_schema_comes_from_the_marshmallow_schema(client):
    spec = client.get("/openapi.json").get_json()
    properties = spec["components"]["schemas"]["StoredFile"]["properties"]
    assert set(properties) == METADATA_FIELDS


def test_every_operation_documents_its_error_shape(client):
    spec = client.get("/openapi.json").get_json()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            for status, response in operation["responses"].items():
                if status.startswith("4") and "content" in response:
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, (
                        path,
                        status,
                    )


# What gunicorn, nginx or the app can answer to any request, whatever the route.
EVERY_LAYER = {"400", "413", "414", "429", "431", "502", "503", "504"}


def test_every_operation_describes_the_answers_of_every_layer(client):
    spec = client.get("/openapi.json").get_json()
    shared = spec["components"]["responses"]
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            expected = EVERY_LAYER | ({"403"} if method != "get" else set())
            assert expected <= set(operation["responses"]), (path, method)
            for status in expected:
                response = operation["responses"][status]
                if "$ref" in response:
                    response = shared[response["$ref"].rsplit("/", 1)[1]]
                schema = response["content"]["application/json"]["schema"]
                if (path, status) != ("/healthz", "503"):
                    assert schema == {"$ref": "#/components/schemas/Error"}


def test_every_operation_is_summed_up_by_its_views_docstring(app):
    spec = build_spec(app)
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        view = app.view_functions[rule.endpoint]
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            operation = spec["paths"][path][method.lower()]
            assert operation["summary"] == view.__doc__.strip().splitlines()[0]


@pytest.fixture
def unchecked_app(tmp_path):
    """An app without the fixture's own check, to watch a check at work."""
    return make_app(f"sqlite:///{tmp_path / 'lockbox.db'}")


def test_an_answer_that_departs_from_its_description_is_caught(
    unchecked_app, monkeypatch
):
    # The check every test app carries (DescribedAnswers): a view whose answer
    # drifts from the schema it is described with makes the test fail.
    answers = DescribedAnswers(unchecked_app)
    drifted = {"status": 1, "extra": True}
    monkeypatch.setattr(monitoring, "ALIVE", drifted)
    unchecked_app.test_client().get("/livez")
    assert {problem.split(":")[0] for problem in answers.problems} == {"GET /livez 200"}
    assert len(answers.problems) == 3


def test_an_answer_with_an_undescribed_status_is_caught(unchecked_app):
    app = unchecked_app
    answers = DescribedAnswers(app)

    @app.get("/teapot")
    def teapot():
        """A route no description knows."""
        return "", 418

    app.test_client().get("/teapot")
    assert answers.problems == ["GET /teapot 418: the operation is not described"]


def test_limits_that_are_settings_are_described_as_set(client):
    schemas = client.get("/openapi.json").get_json()["components"]["schemas"]
    assert schemas["ShareRequest"]["properties"]["expires_in"]["maximum"] == 2592000
    # No null expiry unless PAT_ALLOW_NO_EXPIRY says so.
    assert schemas["AccessTokenRequest"]["properties"]["expires_in"]["type"] == (
        "integer"
    )


@pytest.mark.parametrize(
    "app_settings",
    [
        {
            "SHARE_MAX_SECONDS": 3600,
            "SHARE_DEFAULT_SECONDS": 600,
            "PAT_ALLOW_NO_EXPIRY": True,
        }
    ],
)
def test_the_description_follows_the_servers_settings(client):
    schemas = client.get("/openapi.json").get_json()["components"]["schemas"]
    assert schemas["ShareRequest"]["properties"]["expires_in"]["maximum"] == 3600
    assert schemas["AccessTokenRequest"]["properties"]["expires_in"]["type"] == [
        "integer",
        "null",
    ]
