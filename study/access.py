"""Who may see a study's progress, exports and results: whoever gives the admin secret from settings.

With no admin secret configured nobody may. The comparison takes constant time, and neither the given
nor the expected secret is ever logged or returned.
Not for: participants (they need only the study's join code).
"""

from __future__ import annotations

import hmac
import logging

from pydantic import SecretStr

log = logging.getLogger(__name__)

REFUSED = "Refused: wrong or missing researcher secret."
NOT_CONFIGURED = "Researcher access is off: set RECSYS_ADMIN_SECRET and restart the app."


def is_admin(expected: SecretStr | None, given: str | None) -> bool:
    if expected is None or not expected.get_secret_value():
        return False
    ok = hmac.compare_digest(expected.get_secret_value().encode(), (given or "").encode())
    if not ok:
        log.warning("researcher access refused (wrong or missing secret)")
    return ok


def refusal(expected: SecretStr | None) -> str:
    """What to tell someone who was refused."""
    return NOT_CONFIGURED if expected is None or not expected.get_secret_value() else REFUSED
