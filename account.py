"""``GET /account``: who the caller is, what their files take and what they
may keep (quotas.py works it out)."""

from flask import Blueprint, Response, g, jsonify

from authentication import check_for_token
from quotas import account_usage
from schemas import account_schema

bp = Blueprint("account", __name__)


@bp.get("/account")
@check_for_token(scope="files:read")
def account() -> Response:
    """The caller's name, storage used, quota and the largest file allowed.
    ---
    get:
      responses:
        200:
          description: Usage and limits
          content:
            application/json:
              schema: AccountSchema
    """
    return jsonify(account_schema.dump(account_usage(g.user)))
