"""Second-factor codes for the tests: a fixed clock for the app's (the
``clock`` fixture in conftest.py), the codes an authenticator app shows, and
one that waits for real time in a browser test."""

import string
import time

import pyotp

STEP_SECONDS = 30
# A step boundary: the first second of step START // 30.
START = 1_750_000_020
assert START % STEP_SECONDS == 0
# Well after START's step, so that the code that turned the second factor on
# (its step is recorded as used) is far behind every code the tests send.
LATER = START + 20 * STEP_SECONDS
# How long a browser test may take to type a code and send it.
TYPING_SECONDS = 5


class Clock:
    """The time two_factor checks codes at, which a test moves by hand."""

    def __init__(self, at: float):
        self.at = at

    @property
    def step(self) -> int:
        return int(self.at // STEP_SECONDS)


def code_for(secret: str, step: int) -> str:
    """The authenticator app's code for a time step."""
    return pyotp.TOTP(secret).generate_otp(step)


def wrong_code(secret: str, step: int) -> str:
    """Six digits that are no code of the window around ``step``."""
    window = {code_for(secret, step + offset) for offset in (-1, 0, 1)}
    return next(
        code
        for code in (f"{n:06d}" for n in range(123456, 10**6, 111111))
        if code not in window
    )


class Authenticator:
    """The person's authenticator app, which the server takes each time step
    of once: every code it gives is of a later step than the one before, and
    of a step the server still accepts when the code arrives (the current
    one, or the one before or after), waiting for the clock when need be."""

    def __init__(self, secret: str):
        self.totp = pyotp.TOTP(secret)
        self.last_step = 0

    def code(self) -> str:
        """A code the server has not seen yet."""
        while True:
            now = time.time()
            earliest = int((now + TYPING_SECONDS) // STEP_SECONDS) - 1
            latest = int(now // STEP_SECONDS) + 1
            step = max(earliest, self.last_step + 1)
            if step <= latest:
                self.last_step = step
                return self.totp.generate_otp(step)
            time.sleep(STEP_SECONDS - now % STEP_SECONDS + 0.1)

    def wrong_code(self) -> str:
        """Six digits that are no code of any step near now."""
        step = int(time.time() // STEP_SECONDS)
        near = {self.totp.generate_otp(step + offset) for offset in range(-3, 4)}
        return next(code for code in (d * 6 for d in string.digits) if code not in near)
