"""The admin area: accounts, everything shared, the server's policies and the
audit log, for administrators (a signed-in session of an account with the
admin role, or a personal access token with the ``admin`` scope of one).

Every page works without JavaScript: each action is a POST that a form on
the page sends, and that an API client sends as JSON (or a form body) too;
a browser is sent back to the page, an API client gets JSON. Each change is
written to the audit log (users.py and audit.py).

The invitation pages are here too: the link an administrator hands a new
person (or one who forgot their password), which lets them set a password
once (invitations.py).
"""

from datetime import UTC, datetime
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
import caller
import invitations
import policies
import request_links
import share_links
import storage
import two_factor
import users
import webhook_http
from authentication import check_for_token
from config import parse_size
from errors import ApiError, no_content, wants_html
from models import (
    ADMIN,
    MAX_INT_ID,
    AccessToken,
    Share,
    UploadRequest,
    User,
    Webhook,
    db,
    utcnow,
)
from page_sessions import NO_STORE
from personal_tokens import revoke as revoke_token_of
from quotas import quota_of, usage_by_account
from request_data import load_or_400, request_body
from schemas import (
    ADMIN_SCOPE,
    admin_shared_schema,
    admin_user_create_schema,
    admin_user_created_schema,
    admin_user_list_schema,
    admin_user_schema,
    audit_list_schema,
    audit_query_schema,
    invitation_schema,
    new_password_schema,
    policies_schema,
    quota_schema,
    role_schema,
)

bp = Blueprint("admin", __name__)

USER_ID = "<int:user_id>"
# The newest rows the "everything shared" page lists of each kind.
SHARED_ROWS = 200
# Events the audit page offers as filters: each family once.
EVENT_FAMILIES = sorted({name.split(".")[0] for name in audit.AUDIT_EVENTS})
admin_only = check_for_token(scope=ADMIN_SCOPE)


# --- accounts -----------------------------------------------------------------


def _facts(user: User, used: int) -> dict[str, Any]:
    """An account as the admin area shows it."""
    return {
        "id": user.id,
        "username": user.username,
        "role": user.role,
        "email": user.email,
        "created_at": user.created_at,
        "last_sign_in_at": user.last_sign_in_at,
        "disabled": user.disabled_at is not None,
        "has_password": user.password_hash is not None,
        "single_sign_on": user.oidc_subject is not None,
        "two_factor": two_factor.is_on(user),
        "files": storage.kept_file_count(user),
        "used_bytes": used,
        "quota_bytes": quota_of(user),
        "quota_is_default": user.quota_bytes is None,
    }


def _user_or_404(user_id: int) -> User:
    """The account with this id (404 for none)."""
    if not 1 <= user_id <= MAX_INT_ID:
        raise ApiError(404, "No such user")
    return users.find(user_id)


def _not_yourself(user: User, what: str) -> None:
    """An administrator may not lock themselves out (409)."""
    if user.id == g.user.id:
        raise ApiError(409, f"You cannot {what} your own account here")


def _session_only(what: str) -> None:
    """What could hand an account to whoever holds the token (a password
    link, the admin role) needs a signed-in session: an API token, copied
    from a script, does not do it (403)."""
    if not g.caller.is_session:
        raise ApiError(403, f"{what} needs a signed-in session, not an API token")


def _done(user: User, message: str) -> ResponseReturnValue:
    """After a change to an account: a browser back to its page, with a
    message; an API client gets the account."""
    if wants_html():
        flash(message, "success")
        return redirect(url_for("admin.user_page", user_id=user.id), 303)
    used = usage_by_account().get(user.id, 0)
    return jsonify(admin_user_schema.dump(_facts(user, used)))


def _quota_from(value: str | None) -> int | None:
    """A quota as typed: a size, 0 for no limit, empty or "default" for the
    server's default (None); a 400 for anything else."""
    if value is None or value.strip().lower() in ("", "default"):
        return None
    try:
        return parse_size(value)
    except ValueError as error:
        raise ApiError(400, f"quota: {error}") from None


@bp.get("/admin/users")
@admin_only
def list_users() -> ResponseReturnValue:
    """Every account, with its usage, quota, last sign-in, sign-in ways and
    role (a browser: the admin area's first page).
    ---
    get:
      responses:
        200:
          description: The accounts, by name
          content:
            application/json:
              schema: AdminUserListSchema
            text/html: {}
    """
    used = usage_by_account()
    accounts = db.session.execute(db.select(User).order_by(User.username)).scalars()
    rows = [_facts(user, used.get(user.id, 0)) for user in accounts]
    if not wants_html():
        return jsonify(admin_user_list_schema.dump({"items": rows}))
    return render_template("admin_users.html", users=rows, section="users")


@bp.post("/admin/users")
@admin_only
def create_user() -> ResponseReturnValue:
    """Make an account, and the invitation link that lets its person set a
    password (sent by e-mail when this server mails and an address is
    given; shown here either way, this once).
    ---
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema: AdminUserCreateSchema
          application/x-www-form-urlencoded:
            schema: AdminUserCreateSchema
      responses:
        201:
          description: The account, and its invitation
          content:
            application/json:
              schema: AdminUserCreatedSchema
            text/html: {}
        409:
          description: The name is taken
          content:
            application/json:
              schema: ErrorSchema
    """
    body = request_body()
    if not request.is_json:
        body = {name: value for name, value in body.items() if value.strip()}
    settings = load_or_400(admin_user_create_schema, body)
    if settings["role"] == ADMIN:
        _session_only("Making an administrator")
    quota = _quota_from(settings["quota"])
    user = users.create(
        settings["username"], settings["role"], settings["email"], quota
    )
    invited = users.invite(user)
    return _invitation_answer(user, invited, created=True)


def _invitation_answer(
    user: User, invited: users.Invited, created: bool
) -> ResponseReturnValue:
    """The link made, shown this once: a page, or JSON (201)."""
    invitation = {
        "url": invited.url,
        "expires_at": invited.expires_at,
        "emailed": invited.emailed,
    }
    if wants_html():
        page = render_template(
            "admin_invitation.html",
            user=user,
            invited=invited,
            created=created,
            section="users",
        )
        return page, 201, NO_STORE
    if created:
        facts = _facts(user, 0)
        body = admin_user_created_schema.dump({"user": facts, "invitation": invitation})
    else:
        body = invitation_schema.dump(invitation)
    return jsonify(body), 201, NO_STORE


@bp.get(f"/admin/users/{USER_ID}")
@admin_only
def user_page(user_id: int) -> ResponseReturnValue:
    """One account, with what an administrator may do to it (a page).
    ---
    get:
      parameters: [UserId]
      responses:
        200:
          description: The account
          content:
            application/json:
              schema: AdminUserSchema
            text/html: {}
        404: UserNotFound
    """
    user = _user_or_404(user_id)
    facts = _facts(user, usage_by_account().get(user.id, 0))
    if not wants_html():
        return jsonify(admin_user_schema.dump(facts))
    recent = audit.rows_about(user)
    return render_template(
        "admin_user.html",
        account=facts,
        recent=recent,
        is_you=user.id == g.user.id,
        section="users",
    )


@bp.post(f"/admin/users/{USER_ID}/disable")
@admin_only
def disable_user(user_id: int) -> ResponseReturnValue:
    """Disable an account: its sessions, tokens, links, upload keys, upload
    requests and renewal cookies stop at once on every instance, and it
    cannot sign in, until it is enabled again.
    ---
    post:
      parameters: [UserId]
      responses:
        200:
          description: The account, disabled
          content:
            application/json:
              schema: AdminUserSchema
        303: BackToThePage
        404: UserNotFound
        409: LastAdmin
    """
    user = _user_or_404(user_id)
    _not_yourself(user, "disable")
    users.set_disabled(user, True)
    return _done(user, f"{user.username} is disabled: nothing of theirs opens now.")


@bp.post(f"/admin/users/{USER_ID}/enable")
@admin_only
def enable_user(user_id: int) -> ResponseReturnValue:
    """Enable a disabled account again: what it had works again.
    ---
    post:
      parameters: [UserId]
      responses:
        200:
          description: The account, enabled
          content:
            application/json:
              schema: AdminUserSchema
        303: BackToThePage
        404: UserNotFound
    """
    user = _user_or_404(user_id)
    users.set_disabled(user, False)
    return _done(user, f"{user.username} is enabled again.")


@bp.post(f"/admin/users/{USER_ID}/delete")
@admin_only
def delete_user(user_id: int) -> ResponseReturnValue:
    """Delete an account and every file, link and token it has.
    ---
    post:
      parameters: [UserId]
      responses:
        204:
          description: Deleted
        303:
          description: A browser, back to the list
        404: UserNotFound
        409: LastAdmin
    """
    user = _user_or_404(user_id)
    _not_yourself(user, "delete")
    name = user.username
    users.delete(user)
    if wants_html():
        flash(f"{name} and all their files are deleted.", "success")
        return redirect(url_for("admin.list_users"), 303)
    return no_content()


@bp.post(f"/admin/users/{USER_ID}/reset-password")
@admin_only
def reset_password(user_id: int) -> ResponseReturnValue:
    """A new link that lets the account's person set a (new) password: sent
    to their e-mail when this server mails, shown here either way. Earlier
    links of theirs stop working; the password stays until the link is used.
    ---
    post:
      parameters: [UserId]
      responses:
        201:
          description: The link, shown this once
          content:
            application/json:
              schema: InvitationSchema
            text/html: {}
        404: UserNotFound
        409:
          description: The account is disabled
          content:
            application/json:
              schema: ErrorSchema
    """
    _session_only("A password link")
    user = _user_or_404(user_id)
    _not_yourself(user, "send a password link for")
    purpose = invitations.RESET if user.password_hash else invitations.INVITE
    return _invitation_answer(user, users.invite(user, purpose), created=False)


@bp.post(f"/admin/users/{USER_ID}/quota")
@admin_only
def set_quota(user_id: int) -> ResponseReturnValue:
    """Set what an account may keep.
    ---
    post:
      parameters: [UserId]
      requestBody:
        required: true
        content:
          application/json:
            schema: QuotaSchema
          application/x-www-form-urlencoded:
            schema: QuotaSchema
      responses:
        200:
          description: The account, with its quota
          content:
            application/json:
              schema: AdminUserSchema
        303: BackToThePage
        404: UserNotFound
    """
    user = _user_or_404(user_id)
    quota = _quota_from(load_or_400(quota_schema, request_body())["quota"])
    users.set_quota(user, quota)
    return _done(user, f"Quota of {user.username} changed.")


@bp.post(f"/admin/users/{USER_ID}/sign-out")
@admin_only
def sign_out_user(user_id: int) -> ResponseReturnValue:
    """Sign an account out everywhere: its sessions, API tokens, share links
    and upload keys end (it may sign in again).
    ---
    post:
      parameters: [UserId]
      responses:
        200:
          description: The account, signed out
          content:
            application/json:
              schema: AdminUserSchema
        303: BackToThePage
        404: UserNotFound
    """
    user = _user_or_404(user_id)
    users.sign_out_everywhere(user)
    return _done(user, f"{user.username} is signed out everywhere.")


@bp.post(f"/admin/users/{USER_ID}/role")
@admin_only
def set_role(user_id: int) -> ResponseReturnValue:
    """Make an account an administrator, or a user again (its ``admin``
    tokens stop at once).
    ---
    post:
      parameters: [UserId]
      requestBody:
        required: true
        content:
          application/json:
            schema: RoleSchema
          application/x-www-form-urlencoded:
            schema: RoleSchema
      responses:
        200:
          description: The account, with its role
          content:
            application/json:
              schema: AdminUserSchema
        303: BackToThePage
        404: UserNotFound
        409: LastAdmin
    """
    _session_only("Changing a role")
    user = _user_or_404(user_id)
    role = load_or_400(role_schema, request_body())["role"]
    if role != user.role:
        _not_yourself(user, "change the role of")
    users.set_role(user, role)
    return _done(
        user, f"{user.username} is now {'an admin' if role == 'admin' else 'a user'}."
    )


# --- everything shared --------------------------------------------------------


def _links() -> list[dict[str, Any]]:
    """The newest share links of every account."""
    found = db.session.execute(
        db.select(Share, User)
        .join(User, User.id == Share.owner_id)
        .order_by(Share.id.desc())
        .limit(SHARED_ROWS)
    ).all()
    rows = []
    in_force = policies.current()
    for share, owner in found:
        files = share_links.files_of(share)
        title = (
            ", ".join(stored_file.filename for _, stored_file in files) or "(no file)"
        )
        status = share_links.shown_status(share, owner, len(files), in_force)
        rows.append(
            {
                "id": share.id,
                "owner": owner.username,
                "title": title[:200],
                "status": status,
                "created_at": share.created_at,
                "expires_at": share.expires_at,
                "has_password": share.password_hash is not None,
                "count": share.downloads,
            }
        )
    return rows


def _requests() -> list[dict[str, Any]]:
    """The newest upload requests of every account."""
    found = db.session.execute(
        db.select(UploadRequest, User)
        .join(User, User.id == UploadRequest.owner_id)
        .order_by(UploadRequest.id.desc())
        .limit(SHARED_ROWS)
    ).all()
    in_force = policies.current()
    return [
        {
            "id": upload_request.id,
            "owner": owner.username,
            "title": upload_request.title,
            "status": request_links.shown_status(upload_request, owner, in_force),
            "created_at": upload_request.created_at,
            "expires_at": upload_request.expires_at,
            "has_password": upload_request.password_hash is not None,
            "count": request_links.received(upload_request)[0],
        }
        for upload_request, owner in found
    ]


def _tokens() -> list[dict[str, Any]]:
    """The newest personal access tokens of every account."""
    now = utcnow()
    found = db.session.execute(
        db.select(AccessToken, User)
        .join(User, User.id == AccessToken.user_id)
        .order_by(AccessToken.id.desc())
        .limit(SHARED_ROWS)
    ).all()
    return [
        {
            "id": access_token.id,
            "owner": owner.username,
            "name": access_token.name,
            "prefix": access_token.prefix,
            "scopes": access_token.scope_list,
            "created_at": access_token.created_at,
            "expires_at": access_token.expires_at,
            "last_used_at": access_token.last_used_at,
            "status": "expired"
            if access_token.expires_at is not None and access_token.expires_at <= now
            else "active",
        }
        for access_token, owner in found
    ]


def _webhooks() -> list[dict[str, Any]]:
    """The newest webhooks of every account."""
    found = db.session.execute(
        db.select(Webhook, User)
        .join(User, User.id == Webhook.owner_id)
        .order_by(Webhook.id.desc())
        .limit(SHARED_ROWS)
    ).all()
    return [
        {
            "id": webhook.id,
            "owner": owner.username,
            "url": webhook_http.shown_part(webhook.url),
            "events": webhook.events.split(),
            "enabled": webhook.enabled,
            "created_at": webhook.created_at,
        }
        for webhook, owner in found
    ]


@bp.get("/admin/shared")
@admin_only
def shared() -> ResponseReturnValue:
    """Everything shared on the server: share links and upload requests with
    their owners, expiry and counts, API tokens and webhooks (a page).
    ---
    get:
      responses:
        200:
          description: The newest of each kind
          content:
            application/json:
              schema: AdminSharedSchema
            text/html: {}
    """
    everything = {
        "links": _links(),
        "requests": _requests(),
        "tokens": _tokens(),
        "webhooks": _webhooks(),
    }
    if not wants_html():
        return jsonify(admin_shared_schema.dump(everything))
    return render_template("admin_shared.html", section="shared", **everything)


def _row_or_404(model: type, row_id: int, what: str) -> Any:
    """A row of any account (404 for none)."""
    row = db.session.get(model, row_id) if 1 <= row_id <= MAX_INT_ID else None
    if row is None:
        raise ApiError(404, f"No such {what}")
    return row


def _back_to_shared(message: str) -> ResponseReturnValue:
    """After a change on the shared page: back to it, or a 204."""
    if wants_html():
        flash(message, "success")
        return redirect(url_for("admin.shared"), 303)
    return no_content()


@bp.post("/admin/links/<int:share_id>/revoke")
@admin_only
def revoke_link(share_id: int) -> ResponseReturnValue:
    """Revoke any account's share link.
    ---
    post:
      parameters: [ShareId]
      responses:
        204:
          description: Done (or done already)
        303: BackToThePage
        404: RowNotFound
    """
    share = _row_or_404(Share, share_id, "link")
    share_links.revoke(share)
    return _back_to_shared(f"Link {share.id} revoked.")


@bp.post("/admin/requests/<int:request_id>/close")
@admin_only
def close_request(request_id: int) -> ResponseReturnValue:
    """Close any account's upload request.
    ---
    post:
      parameters: [RequestId]
      responses:
        204:
          description: Done (or done already)
        303: BackToThePage
        404: RowNotFound
    """
    upload_request = _row_or_404(UploadRequest, request_id, "upload request")
    request_links.close(upload_request)
    return _back_to_shared(f"Upload request {upload_request.id} closed.")


@bp.post("/admin/tokens/<int:token_id>/revoke")
@admin_only
def revoke_token(token_id: int) -> ResponseReturnValue:
    """Revoke any account's personal access token.
    ---
    post:
      parameters: [TokenId]
      responses:
        204:
          description: Done (or done already)
        303: BackToThePage
        404: RowNotFound
    """
    access_token = _row_or_404(AccessToken, token_id, "token")
    owner = db.session.get(User, access_token.user_id)
    assert owner is not None  # a token goes with its account
    revoke_token_of(owner, token_id)
    return _back_to_shared(f"Token {access_token.name} revoked.")


@bp.post("/admin/webhooks/<int:webhook_id>/disable")
@admin_only
def disable_webhook(webhook_id: int) -> ResponseReturnValue:
    """Disable any account's webhook (its owner may enable it again).
    ---
    post:
      parameters: [WebhookId]
      responses:
        204:
          description: Done (or done already)
        303: BackToThePage
        404: RowNotFound
    """
    webhook = _row_or_404(Webhook, webhook_id, "webhook")
    if not webhook.enabled:
        return _back_to_shared(f"Webhook {webhook.id} is disabled already.")
    webhook.enabled = False
    db.session.commit()
    audit.record(
        "webhook.changed",
        f"webhook {webhook.id} of user {webhook.owner_id}",
        "disabled",
    )
    return _back_to_shared(f"Webhook {webhook.id} disabled.")


# --- policies -------------------------------------------------------------------


@bp.get("/admin/policies")
@admin_only
def show_policies() -> ResponseReturnValue:
    """The server's policies (a page to change them).
    ---
    get:
      responses:
        200:
          description: The policies in force
          content:
            application/json:
              schema: PoliciesSchema
            text/html: {}
    """
    current = policies.as_dict(policies.current())
    if not wants_html():
        return jsonify(policies_schema.dump(current))
    return render_template(
        "admin_policies.html",
        policies=current,
        required_by_setting=current_app.config["REQUIRE_TWO_FACTOR"],
        section="policies",
    )


def _policies_from_form() -> dict[str, Any]:
    """The policies page's form, as the schema loads it: a checkbox is there
    or not, an empty number means no limit."""
    form = request.form
    values: dict[str, Any] = {
        name: name in form
        for name in (
            "links_need_password",
            "share_links",
            "upload_requests",
            "two_factor_required",
        )
    }
    in_force = policies.current()
    for field, name in (
        ("max_link_days", "max_link_seconds"),
        ("max_file_days", "max_file_seconds"),
    ):
        values[name] = _days_from(form, field, getattr(in_force, name))
    quota = _quota_from(form.get("default_quota", ""))
    values["default_quota_bytes"] = quota
    return values


def _days_from(form: Any, field: str, current: int | None) -> int | None:
    """A limit in whole days from the policies page, in seconds; empty: none."""
    days = form.get(field, "").strip()
    if current is not None and days == str(current // 86400):
        # The page shows a limit the API set in whole days, rounded down (0
        # for one under a day): sent back unchanged, it stays what it was.
        return current
    if days and not (days.isascii() and days.isdigit() and 1 <= int(days) <= 3650):
        raise ApiError(400, f"{field} must be a whole number of days, 1 to 3650")
    return int(days) * 86400 if days else None


@bp.post("/admin/policies")
@admin_only
def change_policies() -> ResponseReturnValue:
    """Change the server's policies: they apply at once, on every instance,
    to the API and the pages alike.
    ---
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema: PoliciesSchema
          application/x-www-form-urlencoded:
            schema: PoliciesSchema
      responses:
        200:
          description: The policies now in force
          content:
            application/json:
              schema: PoliciesSchema
        303:
          description: A browser, back to the policies page
    """
    if request.is_json or not wants_html():
        # An API client sends the schema's fields, and only those to change.
        body = request_body()
    else:
        body = _policies_from_form()
    values = load_or_400(policies_schema, body)
    for name in policies.change(values):
        audit.record("policy.changed", name, f"{name} = {values[name]}")
    if wants_html():
        flash("Policies saved: they apply now.", "success")
        return redirect(url_for("admin.show_policies"), 303)
    return jsonify(policies_schema.dump(policies.as_dict(policies.current())))


# --- the audit log -------------------------------------------------------------


@bp.get("/admin/audit")
@admin_only
def audit_log() -> ResponseReturnValue:
    """The audit log, newest first, filtered (a page).
    ---
    get:
      parameters:
      - in: query
        schema: AuditQuerySchema
      responses:
        200:
          description: The rows
          content:
            application/json:
              schema: AuditListSchema
            text/html: {}
    """
    args = request.args.to_dict()
    if wants_html():
        # The page's form sends its empty filters too: they filter nothing.
        args = {name: value for name, value in args.items() if value.strip()}
    query = load_or_400(audit_query_schema, args)
    found = audit.rows(
        event=query.get("event"),
        actor=query.get("actor"),
        since=_utc(query.get("since")),
        until=_utc(query.get("until")),
        before_seq=query.get("before"),
        limit=query["limit"],
    )
    if not wants_html():
        return jsonify(audit_list_schema.dump({"items": found}))
    more = len(found) == query["limit"]
    return render_template(
        "admin_audit.html",
        rows=found,
        query=query,
        families=EVENT_FAMILIES,
        next_before=found[-1].seq if found and more else None,
        section="audit",
    )


def _utc(moment: datetime | None) -> datetime | None:
    """A time from a filter, in UTC (one without a zone is read as UTC); a
    400 for one that is no time in UTC (the year 1 at +14:00)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ApiError(400, "since and until must be from year 1 to 9999") from None


# --- invitations ---------------------------------------------------------------


@bp.get("/invite/<secret>")
@caller.invitation
def invitation_page(secret: str) -> ResponseReturnValue:
    """The page an invitation's link opens: set your password.
    ---
    get:
      security: []
      parameters: [InvitationSecret]
      responses:
        200:
          description: The form (a page)
          content:
            text/html: {}
        404: InvitationNotFound
        410: InvitationGone
    """
    access = g.caller.record
    page = render_template(
        "invitation.html",
        account=access.user,
        secret=secret,
        reset=access.invitation.purpose == invitations.RESET,
    )
    return page, 200, NO_STORE


@bp.post("/invite/<secret>")
@caller.invitation
def use_invitation(secret: str) -> ResponseReturnValue:
    """Set the account's password through an invitation link (once); then
    sign in with it.
    ---
    post:
      security: []
      parameters: [InvitationSecret]
      requestBody:
        required: true
        content:
          application/json:
            schema: NewPasswordSchema
          application/x-www-form-urlencoded:
            schema: NewPasswordSchema
      responses:
        204:
          description: The password is set
        303:
          description: A browser, on to the sign-in page
        404: InvitationNotFound
        410: InvitationGone
    """
    access = g.caller.record
    try:
        body = load_or_400(new_password_schema, request_body())
        if body["password"] != body["confirm"]:
            raise ApiError(400, "The two passwords are not the same")
    except ApiError as error:
        if not wants_html():
            raise
        page = render_template(
            "invitation.html",
            account=access.user,
            secret=secret,
            reset=access.invitation.purpose == invitations.RESET,
            error=error.description,
        )
        return page, 400, NO_STORE
    invitations.use(access.invitation, access.user, body["password"])
    audit.record("invitation.used", audit.target_user(access.user), actor=access.user)
    audit.record(
        "password.changed", audit.target_user(access.user), "invitation", access.user
    )
    if wants_html():
        flash("Your password is set: sign in with it.", "success")
        return redirect(url_for("auth.login"), 303)
    return no_content()
