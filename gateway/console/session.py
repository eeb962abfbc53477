"""Console sessions: an auditor or admin API key exchanged for a signed, expiring cookie.

The cookie holds the key's id (never the key), the role, the expiry and a random session id,
signed with HMAC-SHA-256 under the console secret. Every request checks the signature, the expiry
and that the key still exists with an auditor or admin role, so removing a key from `keys.yaml`
ends its sessions at the next reload. Signing out remembers the session id until it would have
expired. Forms carry a token derived from the session id (from a pre-session cookie on the
sign-in form), on top of `SameSite=Strict`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import orjson

from gateway.auth.keys import KeyStore, Principal
from gateway.auth.schema import Role

COOKIE = "sgw_console"
SIGN_IN_COOKIE = "sgw_console_sign_in"
READERS = (Role.AUDITOR, Role.ADMIN)
ENDED = {  # why a session no longer holds, by the code the sign-in page is given
    "expired": "Your session has expired. Please sign in again.",
    "signed_out": "You have signed out.",
    "invalid": "Your session is not valid here. Please sign in again.",
    "revoked": "The key you signed in with is no longer valid for the console.",
}


@dataclass(frozen=True)
class Session:
    principal: Principal
    session_id: str
    expires: float
    csrf: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    def __init__(self, secret: bytes, lifetime_s: float, keys: KeyStore) -> None:
        self._secret = secret
        self.lifetime_s = lifetime_s
        self._keys = keys
        self._ended: dict[str, float] = {}  # signed-out session ids, until they would expire

    def _mac(self, purpose: str, data: str) -> str:
        return _b64(hmac.new(self._secret, f"{purpose}:{data}".encode(), hashlib.sha256).digest())

    def issue(self, principal: Principal, now: float) -> str:
        """The cookie value for a fresh session of `principal`."""
        payload = {
            "k": principal.key_id,
            "e": int(now + self.lifetime_s),
            "s": secrets.token_urlsafe(16),
        }
        body = _b64(orjson.dumps(payload))
        return f"{body}.{self._mac('session', body)}"

    def read(self, cookie: str | None, now: float) -> Session | str | None:
        """The session, None without a cookie, or why it no longer holds (a key of `ENDED`)."""
        if not cookie:
            return None
        body, _, mac = cookie.partition(".")
        if not hmac.compare_digest(mac, self._mac("session", body)):
            return "invalid"
        try:
            payload = orjson.loads(_unb64(body))
            key_id, expires, session_id = str(payload["k"]), float(payload["e"]), str(payload["s"])
        except (ValueError, KeyError, TypeError):
            return "invalid"
        if expires <= now:
            return "expired"
        if session_id in self._ended:
            return "signed_out"
        principal = self._keys.principal(key_id)
        if principal is None or principal.role not in READERS:
            return "revoked"
        return Session(principal, session_id, expires, self._mac("csrf", session_id))

    def end(self, session: Session, now: float) -> None:
        self._ended = {sid: exp for sid, exp in self._ended.items() if exp > now}
        self._ended[session.session_id] = session.expires

    def sign_in_token(self, nonce: str) -> str:
        """The form token that goes with the pre-session cookie `nonce`."""
        return self._mac("sign-in", nonce)

    def check_sign_in_token(self, nonce: str | None, token: str | None) -> bool:
        return bool(nonce and token) and hmac.compare_digest(
            str(token), self.sign_in_token(str(nonce))
        )


def check_csrf(session: Session, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(str(token), session.csrf)
