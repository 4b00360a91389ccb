"""Users, API tokens (hashed at rest) and roles.

Tokens are 256-bit random strings shown once; only their SHA-256 is stored
(a fast hash is right for high-entropy secrets: nothing to brute-force).
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.errors import Conflict, InvalidInput, NotFound
from hub.events import utcnow
from hub.inputs import check_email, parse_id
from hub.models import Role, User
from hub.storage import Database, rows
from hub.storage.schema import api_tokens, users

TOKEN_PREFIX = "shub_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(conn: Connection, *, name: str, email: str, role: str, slack_user_id: str | None = None) -> User:
    try:
        role_value = Role(role).value
    except ValueError:
        raise InvalidInput("role must be one of admin, agent, viewer") from None
    email = check_email(email)
    if conn.execute(sa.select(users.c.id).where(users.c.email == email)).first() is not None:
        raise Conflict(f"a user with e-mail {email} already exists")
    row = conn.execute(
        sa.insert(users)
        .values(name=name, email=email, role=role_value, slack_user_id=slack_user_id, extra={}, created_at=utcnow())
        .returning(*users.c)
    ).one()
    return rows.user(row)


def find_user(conn: Connection, ref: str | int) -> User:
    stmt = sa.select(users)
    user_id = ref if isinstance(ref, int) else parse_id(str(ref))  # "²" passes str.isdigit, not int()
    if user_id is not None:
        stmt = stmt.where(users.c.id == user_id)
    else:
        stmt = stmt.where(users.c.email == str(ref).strip().lower())
    row = conn.execute(stmt).first()
    if row is None:
        raise NotFound(f"user {ref} does not exist")
    return rows.user(row)


def list_users(conn: Connection) -> list[User]:
    return [rows.user(r) for r in conn.execute(sa.select(users).order_by(users.c.id))]


def create_token(conn: Connection, user_id: int, name: str) -> tuple[str, int]:
    """A new token for ``user_id``: returns ``(token, token_id)``; the token is never stored."""
    find_user(conn, user_id)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token_id = conn.execute(
        sa.insert(api_tokens)
        .values(user_id=user_id, name=name, prefix=token[:12], token_hash=hash_token(token), created_at=utcnow())
        .returning(api_tokens.c.id)
    ).scalar_one()
    return token, token_id


def revoke_token(conn: Connection, token_id: int) -> None:
    done = conn.execute(
        sa.update(api_tokens)
        .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    if done.rowcount == 0:
        raise NotFound(f"no active token {token_id}")


def _lookup(conn: Connection, digest: str) -> User | None:
    row = conn.execute(
        sa.select(users)
        .join(api_tokens, api_tokens.c.user_id == users.c.id)
        .where(api_tokens.c.token_hash == digest, api_tokens.c.revoked_at.is_(None))
    ).first()
    return rows.user(row) if row is not None else None


class TokenAuthenticator:
    """Resolves bearer tokens to users: one indexed read per request, no cache,
    so a revocation (API or ``hub tokens revoke``, on any instance) holds from
    the next request on."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def authenticate(self, token: str) -> User | None:
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        return await self.db.read(_lookup, hash_token(token))


def check_assignee(conn: Connection, user_id: Any) -> None:
    """Only agents and admins take work: a conversation or ticket assigned to
    anyone else (a viewer, a user who does not exist) is refused with a 400."""
    if not isinstance(user_id, int) or isinstance(user_id, bool):
        raise InvalidInput("assignee_id must be an integer or null")
    row = conn.execute(sa.select(users.c.role).where(users.c.id == user_id)).first()
    if row is None:
        raise InvalidInput(f"assignee_id: user {user_id} does not exist")
    if row.role not in (Role.AGENT.value, Role.ADMIN.value):
        raise InvalidInput(f"assignee_id: user {user_id} is a {row.role}; only agents and admins take work")


def user_summary(user: User) -> dict[str, Any]:
    return {"id": user.id, "name": user.name, "email": user.email, "role": user.role.value}
