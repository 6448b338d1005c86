"""Operations: liveness and health checks for supervisors and load balancers,
and the Prometheus metrics (metrics.py counts them).

``/metrics`` is not public: it answers 404 unless METRICS_TOKEN is set, and
then only to ``Authorization: Bearer <METRICS_TOKEN>`` (metrics_token.py).
"""

from flask import Blueprint, Flask, Response, current_app, jsonify
from flask.typing import ResponseReturnValue
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

import caller
from cluster import node_state, skip_catch_up
from errors import rollback_quietly
from metrics import registry
from models import db
from schemas import health_schema, liveness_schema

bp = Blueprint("monitoring", __name__)
# The liveness answer never changes: serialized once.
ALIVE = liveness_schema.dump({"status": "ok"})


@bp.get("/livez")
@caller.nobody
def livez() -> Response:
    """Liveness: the process answers (no token, no database).

    For a supervisor deciding whether to restart the process: a database outage
    must not make it restart every instance; that is what /healthz tells.
    ---
    get:
      security: []
      responses:
        200:
          description: Alive
          content:
            application/json:
              schema: LivenessSchema
    """
    return jsonify(ALIVE)


@bp.get("/healthz")
@caller.nobody
def healthz() -> ResponseReturnValue:
    """Liveness, database reachability and, on a Galera cluster, whether this
    node may serve: in the primary component and synced (no token).
    ---
    get:
      security: []
      responses:
        200:
          description: Healthy
          content:
            application/json:
              schema: HealthSchema
        503:
          description: Database unavailable, or a Galera node not fit to serve
          content:
            application/json:
              schema: HealthSchema
    """
    # The node's own state: no causal read first, which would wait for the
    # cluster this check is asked about.
    skip_catch_up()
    try:
        db.session.execute(db.text("SELECT 1"))
        serving, cluster = node_state()
    except SQLAlchemyError as error:
        rollback_quietly()
        current_app.logger.error("Health check: database unavailable: %s", error)
        body = {
            "status": "unavailable",
            "database": "unavailable",
            "message": "Database unavailable",
        }
        return jsonify(health_schema.dump(body)), 503
    body = {"status": "ok", "database": "ok"}
    if cluster is not None:
        body["cluster"] = cluster
    if not serving:
        current_app.logger.warning("Health check: Galera node is %s", cluster)
        body.update(status="unavailable", message="Database node not synced")
        return jsonify(health_schema.dump(body)), 503
    return jsonify(health_schema.dump(body))


@bp.get("/metrics")
@caller.metrics
def metrics() -> Response:
    """Prometheus metrics; only with METRICS_TOKEN as a Bearer token.
    ---
    get:
      security:
      - metricsToken: []
      responses:
        200:
          description: The Prometheus text format
          content:
            text/plain: {}
        401:
          description: The metrics token is missing or wrong
          content:
            application/json:
              schema: ErrorSchema
        404:
          description: Metrics are off (METRICS_TOKEN is not set)
          content:
            application/json:
              schema: ErrorSchema
    """
    body = generate_latest(registry())
    return current_app.response_class(
        body, content_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"}
    )


def init_app(app: Flask) -> None:
    """Register the liveness and health checks and the metrics."""
    app.register_blueprint(bp)
