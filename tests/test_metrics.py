"""GET /metrics: off unless METRICS_TOKEN is set, then only with it; what it
counts. (tests/cluster/ checks the sum over gunicorn's workers.)"""

import re

import pytest

from helpers import bearer, multipart_upload

METRICS = {"METRICS_TOKEN": "a-metrics-token-for-the-tests"}


def sample(text: str, name: str, **labels) -> float:
    """The value of one sample in the Prometheus text format (0 when absent)."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    series = re.escape(name + ("{" + wanted + "}" if labels else ""))
    found = re.search(rf"(?m)^{series} (\S+)$", text)
    return float(found[1]) if found else 0.0


def scrape(client) -> str:
    answer = client.get("/metrics", headers=bearer(METRICS["METRICS_TOKEN"]))
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain")
    return answer.get_data(as_text=True)


def test_metrics_are_off_without_a_metrics_token(client):
    answer = client.get("/metrics")
    assert answer.status_code == 404
    assert answer.get_json() == {"message": "Not Found"}


@pytest.mark.parametrize("app_settings", [METRICS])
def test_metrics_need_the_metrics_token(client, token):
    for headers in ({}, bearer("wrong"), bearer(token)):
        answer = client.get("/metrics", headers=headers)
        assert answer.status_code == 401
        assert answer.get_json() == {"message": "Metrics need the metrics token"}
        assert answer.headers["WWW-Authenticate"].lower().startswith("bearer")


@pytest.mark.parametrize("app_settings", [METRICS])
def test_requests_and_bytes_are_counted(client, token):
    before = scrape(client)
    content = b"x" * 5000
    sent = multipart_upload(client, token, content)
    file_id = sent.get_json()["id"]
    downloaded = client.get(f"/files/{file_id}/download", headers=bearer(token))
    assert downloaded.get_data() == content  # counted as the bytes go out
    missing = client.get("/files/999999", headers=bearer(token))
    # A request is counted when the server closes its response, as gunicorn
    # does once the last byte is out; the test client leaves that to us.
    for response in (sent, downloaded, missing):
        response.close()
    after = scrape(client)

    def grew(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert grew("lockbox_uploaded_bytes_total") == 5000
    assert grew("lockbox_downloaded_bytes_total") == 5000
    assert (
        grew("lockbox_requests_total", route="/upload", method="POST", status="201")
        == 1
    )
    assert (
        grew(
            "lockbox_requests_total",
            route="/files/<int:file_id>",
            method="GET",
            status="404",
        )
        == 1
    )
    assert (
        grew("lockbox_request_duration_seconds_count", route="/upload", method="POST")
        == 1
    )
