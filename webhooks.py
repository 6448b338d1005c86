"""Notifications, the views: an account's webhooks (addresses that hear of
its events) and its e-mail address (notifications.py queues and sends
both). Webhooks are made, listed, switched on and off and deleted by a
signed-in session only, like API tokens; each one's newest deliveries are
listed with what came of them, and any may be sent again. An e-mail address
is told nothing but the link that confirms it until that link is opened by
the account's owner, signed in (email_links.py).

A webhook's signing secret is shown once: in the answer that made it, or on
the page the form leads to, after which no page or answer shows it again.
"""

import contextlib
import json
from typing import Any

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue

import audit
import email_links
import notifications
import sealing
import storage
import webhook_http
from authentication import check_for_token
from errors import ApiError, no_content, wants_html
from models import MAX_INT_ID, Delivery, User, Webhook, db, utcnow
from request_data import load_or_400, request_body
from schemas import (
    EVENT_TYPES,
    delivery_list_schema,
    email_settings_request_schema,
    email_settings_schema,
    new_webhook_schema,
    webhook_list_schema,
    webhook_request_schema,
    webhook_schema,
    webhook_state_schema,
)

bp = Blueprint("webhooks", __name__)

WEBHOOK_ID = "<int:webhook_id>"
# Webhooks one account may have, and the deliveries a page or answer lists.
MAX_WEBHOOKS = 10
SHOWN = 50


def _describe(webhook: Webhook) -> dict[str, Any]:
    """A webhook as its owner sees it (WebhookSchema)."""
    return {
        "id": webhook.id,
        "url": webhook.url,
        "events": webhook.events.split(),
        "enabled": webhook.enabled,
        "created_at": webhook.created_at,
    }


def _webhooks() -> list[Webhook]:
    """The caller's webhooks, newest first."""
    return list(
        db.session.execute(
            db.select(Webhook)
            .filter_by(owner_id=g.user.id)
            .order_by(Webhook.created_at.desc(), Webhook.id.desc())
        ).scalars()
    )


def _own_webhook(webhook_id: int) -> Webhook:
    """The caller's webhook with this id; 404 for anyone else's or none."""
    webhook = None
    if 1 <= webhook_id <= MAX_INT_ID:
        webhook = db.session.execute(
            db.select(Webhook).filter_by(id=webhook_id, owner_id=g.user.id)
        ).scalar_one_or_none()
    if webhook is None:
        raise ApiError(404, "Webhook not found")
    return webhook


def _deliveries(webhook: Webhook, shown: int = SHOWN) -> list[dict[str, Any]]:
    """A webhook's newest ``shown`` deliveries (DeliverySchema)."""
    return [
        {
            "id": delivery.id,
            "message_id": delivery.message_id,
            "event_type": delivery.event_type,
            "status": delivery.status,
            "attempts": delivery.attempts,
            "created_at": delivery.created_at,
            "next_attempt_at": delivery.next_attempt_at,
            "last_attempt_at": delivery.last_attempt_at,
            "last_status_code": delivery.last_status_code,
            "last_error": delivery.last_error,
            "body": json.loads(delivery.payload),
        }
        for delivery in db.session.execute(
            db.select(Delivery)
            .filter_by(webhook_id=webhook.id)
            .order_by(Delivery.id.desc())
            .limit(shown)
        ).scalars()
    ]


def _webhook_request() -> dict[str, Any]:
    """The new webhook's settings, from JSON or the page's form (events are
    checkboxes there), its address checked."""
    body = request_body()
    if not request.is_json:
        body = {
            "url": request.form.get("url", "").strip(),
            "events": request.form.getlist("events"),
        }
        if "enabled" in request.form:
            body["enabled"] = request.form["enabled"]
    settings = load_or_400(webhook_request_schema, body)
    try:
        webhook_http.check_url(
            settings["url"], current_app.config["WEBHOOK_ALLOW_HOSTS"]
        )
    except webhook_http.Refused as refused:
        raise ApiError(400, f"url: {refused}") from None
    return settings


@bp.post("/webhooks")
@check_for_token
def create_webhook() -> ResponseReturnValue:
    """Add a webhook; its signing secret is in this answer only.
    ---
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema: WebhookRequestSchema
          application/x-www-form-urlencoded:
            schema: WebhookRequestSchema
      responses:
        201:
          description: The webhook, with its secret
          content:
            application/json:
              schema: NewWebhookSchema
        303:
          description: A browser's form post, sent to the page that shows the secret
        400: BadRequest
        403: Forbidden
        409:
          description: The account has as many webhooks as it may
          content:
            application/json:
              schema: ErrorSchema
    """
    settings = _webhook_request()
    # Two made at once are counted one after the other.
    storage.lock_owners(g.user.id)
    if len(_webhooks()) >= MAX_WEBHOOKS:
        raise ApiError(409, f"An account may have {MAX_WEBHOOKS} webhooks")
    secret = notifications.new_secret()
    webhook = Webhook(
        owner_id=g.user.id,
        url=settings["url"],
        secret=notifications.sealed_secret(g.user.id, secret),
        secret_shown=not wants_html(),
        events=" ".join(event for event in EVENT_TYPES if event in settings["events"]),
        enabled=settings.get("enabled", True),
        created_at=utcnow(),
    )
    db.session.add(webhook)
    db.session.commit()
    audit.record(
        "webhook.created", _target(webhook), webhook_http.shown_part(webhook.url)
    )
    if wants_html():
        flash(f"Webhook added: {webhook.url}", "success")
        return redirect(url_for("webhooks.list_webhooks"), 303)
    body = new_webhook_schema.dump({**_describe(webhook), "secret": secret})
    location = url_for("webhooks.list_webhooks", token=None)
    # The secret is in this answer alone: no cache keeps it.
    return jsonify(body), 201, {"Location": location, "Cache-Control": "no-store"}


@bp.get("/webhooks")
@check_for_token
def list_webhooks() -> ResponseReturnValue:
    """Your webhooks, newest first (a page for browsers, with each one's
    deliveries).
    ---
    get:
      responses:
        200:
          description: The webhooks
          content:
            application/json:
              schema: WebhookListSchema
            text/html: {}
        403: Forbidden
    """
    webhooks = _webhooks()
    if not wants_html():
        items = [_describe(webhook) for webhook in webhooks]
        return jsonify(webhook_list_schema.dump({"items": items}))
    # A secret the page has not shown yet (the form just made its webhook)
    # shows now, once.
    new_secrets = {}
    for webhook in webhooks:
        if not webhook.secret_shown:
            with contextlib.suppress(sealing.DamagedData):  # logged when sending
                new_secrets[webhook.id] = notifications.webhook_secret(webhook)
            webhook.secret_shown = True
    db.session.commit()
    return render_template(
        "webhooks.html",
        webhooks=[
            {**_describe(webhook), "deliveries": _deliveries(webhook, 20)}
            for webhook in webhooks
        ],
        new_secrets=new_secrets,
        event_types=EVENT_TYPES,
        email=_email_settings(g.user),
    )


def _target(webhook: Webhook) -> str:
    """How the audit log names a webhook: never its secret."""
    return f"webhook {webhook.id} of user {webhook.owner_id}"


def _state_changed(webhook: Webhook) -> None:
    """Write down a webhook switched on or off."""
    audit.record(
        "webhook.changed",
        _target(webhook),
        "enabled" if webhook.enabled else "disabled",
    )


def _delete(webhook: Webhook) -> None:
    """Delete a webhook and its deliveries (committed)."""
    target = _target(webhook)
    db.session.delete(webhook)
    db.session.commit()
    audit.record("webhook.deleted", target)


@bp.patch(f"/webhooks/{WEBHOOK_ID}")
@check_for_token
def set_webhook_state(webhook_id: int) -> ResponseReturnValue:
    """Switch a webhook on or off (off: its deliveries wait).
    ---
    patch:
      parameters: [WebhookId]
      requestBody:
        required: true
        content:
          application/json:
            schema: WebhookStateSchema
      responses:
        200:
          description: The webhook
          content:
            application/json:
              schema: WebhookSchema
        400: BadRequest
        403: Forbidden
        404: WebhookNotFound
    """
    webhook = _own_webhook(webhook_id)
    webhook.enabled = load_or_400(webhook_state_schema, request_body())["enabled"]
    db.session.commit()
    _state_changed(webhook)
    return jsonify(webhook_schema.dump(_describe(webhook)))


@bp.post(f"/webhooks/{WEBHOOK_ID}/state")
@check_for_token
def set_webhook_state_form(webhook_id: int) -> ResponseReturnValue:
    """Switch a webhook on or off from the page (HTML).
    ---
    post:
      parameters: [WebhookId]
      requestBody:
        required: true
        content:
          application/x-www-form-urlencoded:
            schema: WebhookStateSchema
      responses:
        303:
          description: Done; back to the page
        400: BadRequest
        403: Forbidden
        404: WebhookNotFound
    """
    webhook = _own_webhook(webhook_id)
    webhook.enabled = load_or_400(webhook_state_schema, request.form)["enabled"]
    db.session.commit()
    _state_changed(webhook)
    flash("Webhook switched " + ("on" if webhook.enabled else "off"), "success")
    return redirect(url_for("webhooks.list_webhooks"), 303)


@bp.delete(f"/webhooks/{WEBHOOK_ID}")
@check_for_token
def delete_webhook(webhook_id: int) -> ResponseReturnValue:
    """Delete a webhook and its deliveries.
    ---
    delete:
      parameters: [WebhookId]
      responses:
        204:
          description: Deleted
        403: Forbidden
        404: WebhookNotFound
    """
    _delete(_own_webhook(webhook_id))
    return no_content()


@bp.post(f"/webhooks/{WEBHOOK_ID}/delete")
@check_for_token
def delete_webhook_form(webhook_id: int) -> ResponseReturnValue:
    """Delete a webhook from the page (HTML).
    ---
    post:
      parameters: [WebhookId]
      responses:
        303:
          description: Deleted; back to the page
        403: Forbidden
        404: WebhookNotFound
    """
    _delete(_own_webhook(webhook_id))
    flash("Webhook deleted", "success")
    return redirect(url_for("webhooks.list_webhooks"), 303)


@bp.get(f"/webhooks/{WEBHOOK_ID}/deliveries")
@check_for_token
def list_deliveries(webhook_id: int) -> ResponseReturnValue:
    """A webhook's newest deliveries and what came of them.
    ---
    get:
      parameters: [WebhookId]
      responses:
        200:
          description: The newest 50, newest first
          content:
            application/json:
              schema: DeliveryListSchema
        403: Forbidden
        404: WebhookNotFound
    """
    items = _deliveries(_own_webhook(webhook_id))
    return jsonify(delivery_list_schema.dump({"items": items}))


@bp.post(f"/webhooks/{WEBHOOK_ID}/deliveries/<int:delivery_id>/send")
@check_for_token
def send_again(webhook_id: int, delivery_id: int) -> ResponseReturnValue:
    """Send a delivery again, now, with the same webhook-id.
    ---
    post:
      parameters:
      - WebhookId
      - name: delivery_id
        in: path
        required: true
        schema: {type: integer, minimum: 1, maximum: 2147483647}
      responses:
        202:
          description: Queued; the sender takes it within seconds
          content:
            application/json:
              schema: ErrorSchema
        303:
          description: A browser's form post; back to the page
        403: Forbidden
        404: WebhookNotFound
    """
    webhook = _own_webhook(webhook_id)
    delivery = None
    if 1 <= delivery_id <= MAX_INT_ID:
        delivery = db.session.execute(
            db.select(Delivery).filter_by(id=delivery_id, webhook_id=webhook.id)
        ).scalar_one_or_none()
    if delivery is None:
        raise ApiError(404, "Delivery not found")
    notifications.send_again(delivery)
    if wants_html():
        flash("Sending it again", "success")
        return redirect(url_for("webhooks.list_webhooks"), 303)
    return jsonify({"message": "Sending it again"}), 202


# E-mail: where the account is told, and of what.


def _email_settings(user: User) -> dict[str, Any]:
    """The account's e-mail settings (EmailSettingsSchema)."""
    return {
        "email": user.email,
        "confirmed": user.email_confirmed_at is not None,
        "events": user.email_events.split(),
        "sending": bool(current_app.config["SMTP_URL"]),
    }


def _confirmation_url(user: User) -> str:
    """The link that confirms the account's present address."""
    token = email_links.confirmation_token(user)
    return url_for("webhooks.confirm_email", token=token, _external=True)


@bp.get("/account/email")
@check_for_token
def email_settings() -> ResponseReturnValue:
    """Where you are told by e-mail, and of what.
    ---
    get:
      responses:
        200:
          description: The settings
          content:
            application/json:
              schema: EmailSettingsSchema
        403: Forbidden
    """
    return jsonify(email_settings_schema.dump(_email_settings(g.user)))


@bp.route("/account/email", methods=["PUT", "POST"])
@check_for_token
def set_email() -> ResponseReturnValue:
    """Set (or, with null, remove) your address and the events told there;
    a new address is sent a link to confirm it, and nothing else until then.
    ---
    put:
      requestBody:
        required: true
        content:
          application/json:
            schema: EmailSettingsRequestSchema
      responses:
        200:
          description: The settings
          content:
            application/json:
              schema: EmailSettingsSchema
        400: BadRequest
        403: Forbidden
        409:
          description: This server sends no e-mail (SMTP_URL is not set)
          content:
            application/json:
              schema: ErrorSchema
    post:
      requestBody:
        required: true
        content:
          application/x-www-form-urlencoded:
            schema: EmailSettingsRequestSchema
          application/json:
            schema: EmailSettingsRequestSchema
      responses:
        200:
          description: The settings (as for PUT)
          content:
            application/json:
              schema: EmailSettingsSchema
        303:
          description: The page's form; back to the page
        400: BadRequest
        403: Forbidden
        409:
          description: This server sends no e-mail
          content:
            application/json:
              schema: ErrorSchema
    """
    body = request_body()
    if not request.is_json:
        body = {"events": request.form.getlist("events")}
        if "email" in request.form:
            body["email"] = request.form["email"].strip() or None
    settings = load_or_400(email_settings_request_schema, body)
    user = g.user
    address = settings["email"]
    if address is not None and not current_app.config["SMTP_URL"]:
        raise ApiError(409, "This server sends no e-mail (SMTP_URL is not set)")
    changed = (address or "").casefold() != (user.email or "").casefold()
    user.email = address
    user.email_events = " ".join(e for e in EVENT_TYPES if e in settings["events"])
    if changed:
        user.email_confirmed_at = None
        if address is not None:
            notifications.ask_to_confirm(user, _confirmation_url(user))
    db.session.commit()
    if wants_html():
        if changed and address is not None:
            flash(f"A link to confirm it is on its way to {address}", "success")
        else:
            flash("E-mail settings saved", "success")
        return redirect(url_for("webhooks.list_webhooks"), 303)
    return jsonify(email_settings_schema.dump(_email_settings(user)))


@bp.get("/account/email/confirm/<token>")
@check_for_token
def confirm_email(token: str) -> ResponseReturnValue:
    """Confirm your address: the link the confirmation message holds (signed
    in; two days).
    ---
    get:
      parameters:
      - name: token
        in: path
        required: true
        schema: {type: string}
      responses:
        200:
          description: Confirmed
          content:
            application/json:
              schema: EmailSettingsSchema
            text/html: {}
        400:
          description: Not a link for this account's present address, or too old
          content:
            application/json:
              schema: ErrorSchema
            text/html: {}
        403: Forbidden
    """
    user = g.user
    if not email_links.confirms(user, token):
        raise ApiError(
            400,
            "This link does not confirm your present address (it is for another "
            "address or account, or more than two days old): save the address "
            "again for a new one",
        )
    if user.email_confirmed_at is None:
        user.email_confirmed_at = utcnow()
        db.session.commit()
    if wants_html():
        flash(f"{user.email} confirmed", "success")
        return redirect(url_for("webhooks.list_webhooks"), 303)
    return jsonify(email_settings_schema.dump(_email_settings(user)))
