"""Two-factor sign-in (two_factor.py): setting it up from the account, the
codes a sign-in then needs (their window, replay, recovery codes), the
sign-in page's ticket between the password and the code, the limits, turning
it off, and REQUIRE_TWO_FACTOR. The clock codes are checked at is fixed."""

import re
import threading
from datetime import UTC, datetime

import pyotp
import pytest
from itsdangerous import TimestampSigner

import two_factor
from config import ConfigError
from helpers import (
    HTML,
    PASSWORD,
    basic_auth,
    bearer,
    make_app,
    make_token,
)
from models import RecoveryCode, StorageKey, User, db
from totp import LATER, START, STEP_SECONDS, code_for, wrong_code

COOKIE = "lockbox_renew"
TICKET_RE = re.compile(r'<input type="hidden" name="ticket" value="([^"]+)">')
SECRET_RE = re.compile(r'<code id="totp-secret"[^>]*>([A-Z2-7]+)</code>')
RECOVERY_FORMAT = re.compile(r"[a-z2-7]{4}(-[a-z2-7]{4}){3}")
OTP_CHALLENGE = "required; app"
WRONG_CODE = "Wrong or already used two-factor code"


def code_at(secret: str, seconds: float) -> str:
    """The code an authenticator app shows at ``seconds`` since the epoch."""
    return pyotp.TOTP(secret).at(datetime.fromtimestamp(seconds, UTC))


def begin(client, token) -> str:
    """POST /account/two-factor that must succeed; the new secret."""
    response = client.post(
        "/account/two-factor", json={"password": PASSWORD}, headers=bearer(token)
    )
    assert response.status_code == 200, response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    return response.get_json()["secret"]


def confirm(client, token, code):
    """POST /account/two-factor/confirm with ``code``; the answer."""
    return client.post(
        "/account/two-factor/confirm", json={"code": code}, headers=bearer(token)
    )


def enrol(client, token, clock) -> tuple[str, list[str]]:
    """Turn alice's second factor on at the clock's time; its secret and
    recovery codes."""
    secret = begin(client, token)
    response = confirm(client, token, code_for(secret, clock.step))
    assert response.status_code == 200, response.get_json()
    return secret, response.get_json()["recovery_codes"]


@pytest.fixture
def enrolled(client, token, clock) -> tuple[str, list[str]]:
    """alice with two-factor sign-in on (set up at START), the clock moved
    on to LATER: her secret and recovery codes."""
    made = enrol(client, token, clock)
    clock.at = LATER
    return made


def otp_sign_in(client, code=None, how="basic", password=PASSWORD):
    """An API sign-in of alice's with ``code`` as her second factor: Basic
    auth with X-Lockbox-OTP, or POST /login's JSON with ``otp``."""
    if how == "basic":
        headers = basic_auth("alice", password)
        if code is not None:
            headers["X-Lockbox-OTP"] = code
        return client.get("/login", headers=headers)
    body = {"username": "alice", "password": password}
    if code is not None:
        body["otp"] = code
    return client.post("/login", json=body)


def account_json(client, token) -> dict:
    """GET /account's JSON."""
    response = client.get("/account", headers=bearer(token))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def alice_row(app) -> User:
    """alice's row as stored."""
    with app.app_context():
        user = db.session.execute(db.select(User).filter_by(username="alice"))
        user = user.scalar_one()
        db.session.expunge(user)
        return user


def recovery_counts(app) -> tuple[int, int]:
    """alice's recovery codes in the database: (all of them, unused)."""
    user_id = alice_row(app).id
    with app.app_context():
        rows = db.session.execute(
            db.select(RecoveryCode.used_at).filter_by(user_id=user_id)
        ).all()
        return len(rows), sum(1 for (used_at,) in rows if used_at is None)


def page_password(client, username="alice", **fields):
    """The sign-in page's form, posted with the right password; the answer."""
    form = {"username": username, "password": PASSWORD, **fields}
    return client.post("/login", data=form, headers=HTML)


def ticket_of(response) -> str:
    """The hidden ticket a sign-in page carries."""
    found = TICKET_RE.findall(response.get_data(as_text=True))
    assert len(found) == 1, response.get_data(as_text=True)
    return found[0]


def page_code(client, ticket, code, **fields):
    """The code page's form: the ticket and a code; the answer."""
    return client.post(
        "/login", data={"ticket": ticket, "otp": code, **fields}, headers=HTML
    )


def renewal_cookies(response) -> list[str]:
    """The Set-Cookie lines of the renewal cookie in an answer."""
    return [
        line
        for line in response.headers.getlist("Set-Cookie")
        if line.startswith(COOKIE + "=")
    ]


def token_in_url(url: str) -> str:
    """The ?token= of a URL the sign-in sent the browser on to."""
    match = re.search(r"[?&]token=([^&]+)", url)
    assert match, url
    return match.group(1)


def test_enrolment_needs_the_right_first_code_and_seals_the_secret(
    app, client, token, clock, auth, database_url
):
    """Setting up needs the app's current code, gives ten distinct recovery
    codes, and stores the secret sealed for this account and this key only."""
    secret = begin(client, token)
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    assert account_json(client, token)["two_factor"] is False

    response = confirm(client, token, wrong_code(secret, clock.step))
    assert response.status_code == 400
    assert account_json(client, token)["two_factor"] is False
    assert alice_row(app).totp_enabled_at is None

    response = confirm(client, token, code_for(secret, clock.step))
    assert response.status_code == 200, response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    codes = response.get_json()["recovery_codes"]
    assert len(codes) == len(set(codes)) == 10
    assert all(RECOVERY_FORMAT.fullmatch(code) for code in codes), codes
    assert recovery_counts(app) == (10, 10)
    usage = account_json(client, token)
    assert usage["two_factor"] is True and usage["has_password"] is True

    row = alice_row(app)
    assert row.totp_last_step == clock.step  # its first code is used up
    assert secret not in row.totp_secret
    assert secret.lower() not in row.totp_secret.lower()
    bob_id = auth.create_user("bob")
    with app.app_context():
        assert two_factor.secret_of(db.session.get(User, row.id)) == secret
        # The sealed secret moved to another account opens nothing there.
        bob = db.session.get(User, bob_id)
        bob.totp_secret = row.totp_secret
        db.session.commit()
        assert two_factor.secret_of(bob) is None
    # It is sealed under the storage key: an app with another key under the
    # same id refuses to start, and one that lacks it opens nothing.
    with pytest.raises(ConfigError, match="another key"):
        make_app(database_url, STORAGE_KEYS={"test-1": bytes(32)})
    with app.app_context():
        db.session.execute(db.delete(StorageKey))
        db.session.commit()
    other = make_app(
        database_url,
        STORAGE_KEYS={"test-2": bytes(32)},
        STORAGE_KEY_CURRENT="test-2",
    )
    with other.app_context():
        try:
            assert two_factor.secret_of(db.session.get(User, row.id)) is None
        finally:
            db.session.remove()
            db.engine.dispose()


@pytest.mark.parametrize("how", ["basic", "json"])
def test_an_api_sign_in_needs_a_code_used_once(client, enrolled, clock, how):
    """With two factors on, an API sign-in needs a code, which is then used
    up, as is every code of the same or an earlier step."""
    secret, _ = enrolled
    response = otp_sign_in(client, how=how)
    assert response.status_code == 401
    assert "X-Lockbox-OTP" in response.get_json()["message"]
    assert response.headers["X-Lockbox-OTP"] == OTP_CHALLENGE

    code = code_for(secret, clock.step)
    # A wrong password with the right code: refused, and the code not used up.
    response = otp_sign_in(client, code, how, password="wrong password")
    assert response.status_code == 401
    assert "X-Lockbox-OTP" not in response.headers

    response = otp_sign_in(client, code, how)
    assert response.status_code == 200, response.get_json()
    assert {"token", "refresh_token"} <= set(response.get_json())

    replay = otp_sign_in(client, code, how)
    assert replay.status_code == 401
    assert replay.get_json()["message"] == WRONG_CODE
    assert replay.headers["X-Lockbox-OTP"] == OTP_CHALLENGE
    earlier = otp_sign_in(client, code_for(secret, clock.step - 1), how)
    assert earlier.status_code == 401
    assert earlier.get_json()["message"] == WRONG_CODE
    # Not a lockout: the next step's code still lets alice in.
    assert otp_sign_in(client, code_for(secret, clock.step + 1), how).status_code == 200


@pytest.mark.parametrize(
    "offset",
    [0, -1, STEP_SECONDS - 1],
    ids=["on-the-boundary", "a-second-before-it", "a-step-s-last-second"],
)
def test_codes_one_step_either_side_pass_and_two_steps_do_not(
    client, token, clock, offset
):
    """The window is the clock's step and one step either side, to the
    second: codes just outside it are refused, those at its very edges pass."""
    clock.at = START - 10 * STEP_SECONDS
    secret, _ = enrol(client, token, clock)
    clock.at = LATER + offset
    step = clock.step
    first_second = step * STEP_SECONDS  # of the clock's step
    # The last second of step - 2 and the first of step + 2: refused (and
    # refused first, so that no accepted code can mask why).
    for outside in (first_second - STEP_SECONDS - 1, first_second + 2 * STEP_SECONDS):
        response = otp_sign_in(client, code_at(secret, outside))
        assert response.status_code == 401, outside - clock.at
    # The two sides of the step's boundary (the last second of step - 1, the
    # first of step), then the last second of step + 1: each a later step
    # than the one before it, so that none is refused as a replay.
    for inside in (first_second - 1, first_second, first_second + 2 * STEP_SECONDS - 1):
        response = otp_sign_in(client, code_at(secret, inside))
        assert response.status_code == 200, (inside - clock.at, response.get_json())
    assert alice_row(client.application).totp_last_step == step + 1


def test_a_recovery_code_signs_in_once_however_it_is_typed(
    app, client, enrolled, token
):
    """A recovery code stands in for the app's code once, with or without
    its dashes and in either case; the account page counts those left."""
    _, codes = enrolled
    typed = [codes[0], codes[1].replace("-", ""), codes[2].upper(), f" {codes[3]} "]
    for code in typed:
        response = otp_sign_in(client, code)
        assert response.status_code == 200, (code, response.get_json())
    for code in (codes[0], codes[1], codes[2].replace("-", "")):
        response = otp_sign_in(client, code)
        assert response.status_code == 401, code
        assert response.get_json()["message"] == WRONG_CODE
    assert recovery_counts(app) == (10, 6)
    page = client.get("/account", headers={**HTML, **bearer(token)})
    assert page.status_code == 200
    assert "6 recovery codes left" in page.get_data(as_text=True)


def test_the_page_asks_for_the_code_after_the_password(client, enrolled, clock):
    """The sign-in page gives no session for the password alone: a ticket
    and the code page; the ticket and the right code sign in."""
    secret, _ = enrolled
    asked = page_password(client, next="/account", remember="1")
    assert asked.status_code == 200
    assert "Location" not in asked.headers
    assert renewal_cookies(asked) == []
    body = asked.get_data(as_text=True)
    assert 'name="otp"' in body and "token=" not in body
    ticket = ticket_of(asked)

    wrong = page_code(client, ticket, wrong_code(secret, clock.step), next="/account")
    assert wrong.status_code == 401
    assert WRONG_CODE in wrong.get_data(as_text=True)
    assert renewal_cookies(wrong) == [] and "Location" not in wrong.headers
    ticket_of(wrong)  # the page asks again

    code = code_for(secret, clock.step)
    signed_in = page_code(client, ticket, code, next="/account", remember="1")
    assert signed_in.status_code == 303
    location = signed_in.headers["Location"]
    assert location.startswith("/account?token=")
    assert len(renewal_cookies(signed_in)) == 1
    assert account_json(client, token_in_url(location))["two_factor"] is True

    # The code is used up: the same ticket and code again sign nobody in.
    again = page_code(client, ticket, code)
    assert again.status_code == 401 and renewal_cookies(again) == []


def test_a_tampered_or_expired_ticket_goes_back_to_the_password(
    client, enrolled, clock, monkeypatch
):
    """Only a ticket the server signed, less than five minutes ago, leads to
    a session; any other goes back to the sign-in page with nothing."""
    secret, _ = enrolled
    ticket = ticket_of(page_password(client))
    value, _, signature = ticket.rpartition(".")
    tampered = [
        value + "." + ("A" if signature[0] != "A" else "B") + signature[1:],
        str(int(ticket.split(":", 1)[0]) + 1000) + ":" + ticket.split(":", 1)[1],
        "x" * 600,
    ]
    for bad in tampered:
        response = page_code(client, bad, code_for(secret, clock.step))
        assert response.status_code == 303, bad
        assert response.headers["Location"].startswith("/login")
        assert "token=" not in response.headers["Location"]
        assert renewal_cookies(response) == []
    late = TimestampSigner.get_timestamp
    with monkeypatch.context() as patch:
        patch.setattr(
            TimestampSigner, "get_timestamp", lambda signer: late(signer) + 301
        )
        response = page_code(client, ticket, code_for(secret, clock.step))
    assert response.status_code == 303 and renewal_cookies(response) == []
    # None of them used the code up.
    assert otp_sign_in(client, code_for(secret, clock.step)).status_code == 200


def test_signing_out_everywhere_ends_the_ticket(client, enrolled, token, clock):
    """A ticket names the account's token version: after a sign-out
    everywhere it opens nothing, on the page or through the API."""
    secret, _ = enrolled
    ticket = ticket_of(page_password(client))
    response = client.post("/logout?everywhere=1", headers=bearer(token))
    assert response.status_code == 204

    response = page_code(client, ticket, code_for(secret, clock.step))
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/login")
    assert renewal_cookies(response) == []
    response = client.post(
        "/login", json={"ticket": ticket, "otp": code_for(secret, clock.step)}
    )
    assert response.status_code == 401
    assert "token" not in response.get_json()
    # The code was not used up by either.
    assert otp_sign_in(client, code_for(secret, clock.step)).status_code == 200


@pytest.mark.one_database
@pytest.mark.parametrize("app_settings", [{"LOGIN_LIMIT_PER_USERNAME": "3 per minute"}])
@pytest.mark.parametrize("how", ["basic", "page"])
def test_wrong_codes_count_against_the_sign_in_limit(client, auth, clock, how):
    """Guessing codes is limited like guessing passwords: once the username
    is at its limit, even the right code is refused."""
    user_id = auth.create_user()
    # A session token made without signing in, which would count.
    session = make_token({"sub": str(user_id), "ver": auth.token_version()})
    secret, _ = enrol(client, session, clock)
    clock.at = LATER
    wrong = wrong_code(secret, clock.step)
    if how == "basic":
        for _ in range(3):
            assert otp_sign_in(client, wrong).status_code == 401
        response = otp_sign_in(client, code_for(secret, clock.step))
    else:
        ticket = ticket_of(page_password(client))  # the first attempt
        for _ in range(2):
            assert page_code(client, ticket, wrong).status_code == 401
        response = page_code(client, ticket, code_for(secret, clock.step))
    assert response.status_code == 429
    assert renewal_cookies(response) == []
    # The limit holds for the other way of signing in too.
    assert otp_sign_in(client, code_for(secret, clock.step)).status_code == 429


def test_turning_it_off_needs_the_password_and_a_code(
    app, client, enrolled, token, clock
):
    """Off takes the password and a code together (a wrong one of either
    changes nothing and uses nothing up); then the password alone signs in
    and the secret and recovery codes are gone."""
    secret, _ = enrolled
    code = code_for(secret, clock.step)

    def disable(password, code):
        return client.post(
            "/account/two-factor/disable",
            json={"password": password, "code": code},
            headers=bearer(token),
        )

    assert disable("wrong password", code).status_code == 403
    assert account_json(client, token)["two_factor"] is True
    assert disable(PASSWORD, wrong_code(secret, clock.step)).status_code == 403
    assert account_json(client, token)["two_factor"] is True
    assert otp_sign_in(client).status_code == 401

    response = disable(PASSWORD, code)
    assert response.status_code == 204
    assert account_json(client, token)["two_factor"] is False
    assert otp_sign_in(client).status_code == 200
    assert recovery_counts(app) == (0, 0)
    row = alice_row(app)
    assert row.totp_secret is None and row.totp_last_step == 0
    assert disable(PASSWORD, code).status_code == 400  # not on any more


def test_turning_it_off_with_a_recovery_code_uses_it(app, client, enrolled, token):
    """A recovery code stands in for the app's code when turning it off."""
    _, codes = enrolled
    response = client.post(
        "/account/two-factor/disable",
        json={"password": PASSWORD, "code": codes[4]},
        headers=bearer(token),
    )
    assert response.status_code == 204
    assert recovery_counts(app) == (0, 0)


@pytest.mark.one_database
@pytest.mark.parametrize("app_settings", [{"REQUIRE_TWO_FACTOR": True}])
def test_a_site_that_requires_two_factors_sets_them_up_on_sign_in(client, auth, clock):
    """With REQUIRE_TWO_FACTOR the API refuses an account without a second
    factor, and the sign-in page sets one up, shows the recovery codes and
    leads on signed in; it can't be turned off."""
    auth.create_user()
    for response in (otp_sign_in(client, how="basic"), otp_sign_in(client, how="json")):
        assert response.status_code == 401
        assert "must set up two-factor sign-in first" in response.get_json()["message"]

    setup = page_password(client)
    assert setup.status_code == 200
    assert renewal_cookies(setup) == []
    (secret,) = SECRET_RE.findall(setup.get_data(as_text=True))
    ticket = ticket_of(setup)

    wrong = page_code(client, ticket, wrong_code(secret, clock.step))
    assert wrong.status_code == 401 and renewal_cookies(wrong) == []
    # The same secret is still being set up: the page shows it again.
    assert SECRET_RE.findall(wrong.get_data(as_text=True)) == [secret]

    done = page_code(client, ticket, code_for(secret, clock.step))
    assert done.status_code == 200
    assert done.headers["Cache-Control"] == "no-store"
    assert len(renewal_cookies(done)) == 1
    page = done.get_data(as_text=True)
    listed = re.search(r'<ul[^>]*id="recovery-codes"[^>]*>(.*?)</ul>', page, re.S)
    codes = re.findall(r"<code>([^<]+)</code>", listed.group(1))
    assert len(set(codes)) == 10
    link = re.search(
        r'<a class="button" href="([^"]+)">Continue to your files</a>', page
    )
    assert link and "?token=" in link.group(1)
    token = token_in_url(link.group(1))
    assert account_json(client, token)["two_factor"] is True

    clock.at = LATER
    response = otp_sign_in(client)
    assert response.status_code == 401
    assert "X-Lockbox-OTP" in response.get_json()["message"]
    assert otp_sign_in(client, code_for(secret, clock.step)).status_code == 200
    response = client.post(
        "/account/two-factor/disable",
        json={"password": PASSWORD, "code": code_for(secret, clock.step + 1)},
        headers=bearer(token),
    )
    assert response.status_code == 409


def test_only_a_signed_in_session_sets_it_up_and_only_once(client, token, clock):
    """A personal access token can't set up, confirm or turn off a second
    factor; setting up again while it is on is refused."""
    made = client.post(
        "/tokens",
        json={"name": "ci", "scopes": ["files:read", "files:write", "shares:write"]},
        headers=bearer(token),
    )
    assert made.status_code == 201, made.get_json()
    pat = made.get_json()["token"]
    for path, body in [
        ("/account/two-factor", {"password": PASSWORD}),
        ("/account/two-factor/confirm", {"code": "123456"}),
        ("/account/two-factor/disable", {"password": PASSWORD, "code": "123456"}),
    ]:
        response = client.post(path, json=body, headers=bearer(pat))
        assert response.status_code == 403, (path, response.get_json())
    assert account_json(client, token)["two_factor"] is False

    secret, _ = enrol(client, token, clock)
    response = client.post(
        "/account/two-factor", json={"password": PASSWORD}, headers=bearer(token)
    )
    assert response.status_code == 409
    assert confirm(client, token, code_for(secret, clock.step + 1)).status_code == 409
    # The secret that is on was not replaced.
    with client.application.app_context():
        user = db.session.execute(db.select(User).filter_by(username="alice"))
        assert two_factor.secret_of(user.scalar_one()) == secret


@pytest.mark.parametrize("which", ["app-code", "recovery-code"])
def test_one_code_sent_by_many_at_once_signs_in_once(app, enrolled, clock, which):
    """Sign-ins racing with the same code (or recovery code): exactly one
    gets in, whatever the database."""
    secret, codes = enrolled
    code = code_for(secret, clock.step) if which == "app-code" else codes[0]
    racers = 6
    start = threading.Barrier(racers)
    statuses = []

    def race():
        client = app.test_client()
        start.wait(timeout=10)
        statuses.append(otp_sign_in(client, code).status_code)

    threads = [threading.Thread(target=race) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(statuses) == [200] + [401] * (racers - 1)


@pytest.mark.one_database
def test_an_account_without_a_password_gets_no_factor_it_could_never_turn_off(
    app, client, auth, clock
):
    """An account that signs in through its identity provider alone (no
    password) can't turn on a second factor that guards no sign-in and that
    only its missing password could turn off."""
    with app.app_context():
        carol = User(username="carol", password_hash=None)
        db.session.add(carol)
        db.session.commit()
        carol_id = carol.id
    session = make_token({"sub": str(carol_id), "ver": auth.token_version("carol")})
    begun = client.post(
        "/account/two-factor", json={"password": ""}, headers=bearer(session)
    )
    if begun.status_code == 200:
        code = code_for(begun.get_json()["secret"], clock.step)
        confirm(client, session, code)
    assert account_json(client, session)["two_factor"] is False, (
        "BUG: account.py begin_two_factor/confirm_two_factor let an account "
        "without a password turn a second factor on (the account page offers "
        "it no such form), and disable_two_factor then refuses it forever "
        "(it needs the password): POST /account/two-factor answered "
        f"{begun.status_code}"
    )


@pytest.mark.one_database
@pytest.mark.parametrize("app_settings", [{"REQUIRE_TWO_FACTOR": True}])
def test_the_sign_in_page_that_shows_a_new_secret_is_never_stored(client, auth, clock):
    """The sign-in's set-up page shows the TOTP secret: like the account's
    set-up page and the recovery codes, it is sent no-store."""
    auth.create_user()
    setup = page_password(client)
    assert setup.status_code == 200 and SECRET_RE.search(setup.get_data(as_text=True))
    assert setup.headers.get("Cache-Control") == "no-store", (
        "BUG: sign_ins.py _set_up_while_signing_in sends the page with "
        "the TOTP secret without Cache-Control: no-store (account.py sends "
        "the same page no-store)"
    )


def test_an_admin_turns_it_off_from_the_command_line(app, client, enrolled, token):
    """A lost phone and no recovery code: `users reset-two-factor` turns it
    off and signs the account out everywhere; the password alone signs in."""
    result = app.test_cli_runner().invoke(args=["users", "reset-two-factor", "alice"])
    assert result.exit_code == 0, result.output
    assert "turned off for alice" in result.output
    assert client.get("/account", headers=bearer(token)).status_code == 401
    assert otp_sign_in(client).status_code == 200
    assert recovery_counts(app) == (0, 0)
    assert alice_row(app).totp_secret is None


def test_a_stolen_session_alone_sets_up_no_second_factor(client, token):
    """Setting up needs the password again: a session without it (a token
    copied from a URL) cannot put a factor of its own on the account and lock
    its owner out."""
    for body in ({"password": "a guess"}, {}):
        response = client.post("/account/two-factor", json=body, headers=bearer(token))
        assert response.status_code in (400, 403), response.get_json()
    assert account_json(client, token)["two_factor"] is False
    assert otp_sign_in(client).status_code == 200


@pytest.mark.one_database
@pytest.mark.parametrize("code", ["١٢٣٤٥٦", "１２３４５６", "12345６", "⁰¹²³⁴⁵"])
def test_digits_of_other_scripts_are_a_wrong_code_not_an_error(
    client, enrolled, token, code
):
    """Codes typed in other digits (Arabic-Indic, full-width, superscript):
    refused as wrong, on every route that takes one, never a 500."""
    assert otp_sign_in(client, code).status_code == 401
    assert otp_sign_in(client, code, how="json").status_code == 401
    ticket = ticket_of(page_password(client))
    assert page_code(client, ticket, code).status_code == 401
    off = client.post(
        "/account/two-factor/disable",
        json={"password": PASSWORD, "code": code},
        headers=bearer(token),
    )
    assert off.status_code == 403


@pytest.mark.one_database
def test_a_ticket_keeps_its_time_and_dies_with_the_second_factor(
    client, enrolled, token, clock
):
    """Posting a ticket without a code gives the same ticket back (its five
    minutes are not renewed), and a ticket signs in nobody once the second
    factor is off."""
    secret, _ = enrolled
    ticket = ticket_of(page_password(client))
    again = client.post("/login", data={"ticket": ticket}, headers=HTML)
    assert again.status_code == 200
    assert ticket_of(again) == ticket
    off = client.post(
        "/account/two-factor/disable",
        json={"password": PASSWORD, "code": code_for(secret, clock.step)},
        headers=bearer(token),
    )
    assert off.status_code == 204
    response = client.post("/login", json={"ticket": ticket})
    assert response.status_code == 401
    assert "token" not in (response.get_json() or {})
    page = client.post("/login", data={"ticket": ticket}, headers=HTML)
    assert page.status_code == 303 and "token=" not in page.headers["Location"]


@pytest.mark.one_database
@pytest.mark.parametrize("app_settings", [{"TWO_FACTOR_LIMIT": "3 per 15 minutes"}])
def test_codes_have_a_limit_of_their_own(client, enrolled, clock):
    """TWO_FACTOR_LIMIT counts code attempts per account, right ones too,
    over a long window: the fourth is a 429 even with the right code, while
    sign-ins without a code are not counted by it."""
    secret, _ = enrolled
    assert otp_sign_in(client).status_code == 401  # no code: not counted
    for _ in range(3):
        assert otp_sign_in(client, wrong_code(secret, clock.step)).status_code == 401
    blocked = otp_sign_in(client, code_for(secret, clock.step))
    assert blocked.status_code == 429
    assert "two-factor codes" in blocked.get_json()["message"]
