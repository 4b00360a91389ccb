"""`hub users create --password/--password-stdin/--link`, `hub users password`, `link`, `mfa-reset`, `bootstrap`."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from hub.__main__ import main
from hub.console import links, passwords, sessions
from hub.events import utcnow
from hub.storage import open_database
from hub.storage.schema import audit_log, users

T = TypeVar("T")
LINK = re.compile(r"https://support\.example\.com/console/link/([A-Za-z0-9_-]{43})")


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("HUB_DATABASE_URL", url)
    monkeypatch.setenv("HUB_PUBLIC_URL", "https://support.example.com/")
    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(main, ["db", "upgrade"]).exit_code == 0
    return url


def run_db(url: str, fn: Any, *args: Any, write: bool = False) -> Any:
    async def go() -> Any:
        db = open_database(url)
        try:
            return await (db.write(fn, *args) if write else db.read(fn, *args))
        finally:
            await db.close()

    return asyncio.run(go())


def password_hash(url: str, email: str) -> str | None:
    return run_db(
        url, lambda conn: conn.execute(sa.select(users.c.password_hash).where(users.c.email == email)).scalar_one()
    )


def verifies(stored: str | None, password: str) -> bool:
    return asyncio.run(passwords.verify(stored, password)).ok


def test_create_with_a_password_from_stdin_or_a_prompt(cli_env: str) -> None:
    runner = CliRunner()
    created = runner.invoke(
        main,
        ["users", "create", "--name", "Ada", "--email", "ada@example.com", "--password-stdin", "--no-token"],
        input="a-long-password-1\n",
    )
    assert created.exit_code == 0, created.output
    assert "a-long-password-1" not in created.output and "console password set" in created.output
    assert verifies(password_hash(cli_env, "ada@example.com"), "a-long-password-1")

    prompted = runner.invoke(
        main,
        ["users", "create", "--name", "Bob", "--email", "bob@example.com", "--password", "--no-token"],
        input="another-password-2\nanother-password-2\n",
    )
    assert prompted.exit_code == 0, prompted.output
    assert verifies(password_hash(cli_env, "bob@example.com"), "another-password-2")

    short = runner.invoke(
        main, ["users", "create", "--name", "Cy", "--email", "cy@example.com", "--password-stdin"], input="short\n"
    )
    assert short.exit_code == 1 and "at least 10 characters" in short.output
    assert "cy@example.com" not in runner.invoke(main, ["users", "list"]).output  # nothing created


def test_create_with_a_link_and_a_new_link(cli_env: str) -> None:
    runner = CliRunner()
    created = runner.invoke(main, ["users", "create", "--name", "Di", "--email", "di@example.com", "--link"])
    assert created.exit_code == 0, created.output
    first = LINK.search(created.output)
    assert first, created.output
    again = runner.invoke(main, ["users", "link", "di@example.com"])
    assert again.exit_code == 0
    second = LINK.search(again.output)
    assert second and second.group(1) != first.group(1)
    now = utcnow()
    # The newer link voids the older one; each works once.
    assert run_db(cli_env, lambda conn: links.use_link(conn, first.group(1), now=now), write=True) is None
    assert run_db(cli_env, lambda conn: links.use_link(conn, second.group(1), now=now), write=True) is not None
    assert run_db(cli_env, lambda conn: links.use_link(conn, second.group(1), now=now), write=True) is None
    missing = runner.invoke(main, ["users", "link", "nobody@example.com"])
    assert missing.exit_code == 1 and "does not exist" in missing.output


def test_password_resets_and_signs_out_everywhere(cli_env: str) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["users", "create", "--name", "Ed", "--email", "ed@example.com"]).exit_code == 0
    user_id = run_db(
        cli_env, lambda conn: conn.execute(sa.select(users.c.id).where(users.c.email == "ed@example.com")).scalar_one()
    )
    for _ in range(2):
        run_db(
            cli_env,
            lambda conn: sessions.open_session(
                conn,
                user_id,
                stage=sessions.Stage.FULL,
                now=utcnow(),
                idle=timedelta(hours=1),
                lifetime=timedelta(hours=2),
            ),
            write=True,
        )
    reset = runner.invoke(main, ["users", "password", "ed@example.com", "--stdin"], input="reset-password-3\n")
    assert reset.exit_code == 0, reset.output
    assert "2 console session(s) ended" in reset.output
    assert verifies(password_hash(cli_env, "ed@example.com"), "reset-password-3")
    prompted = runner.invoke(main, ["users", "password", str(user_id)], input="prompt-password-4\nprompt-password-4\n")
    assert prompted.exit_code == 0, prompted.output
    assert verifies(password_hash(cli_env, "ed@example.com"), "prompt-password-4")
    actions = run_db(
        cli_env, lambda conn: [r.action for r in conn.execute(sa.select(audit_log).order_by(audit_log.c.id))]
    )
    assert actions.count("user.password") == 2


def test_bootstrap_prints_a_sign_in_link_never_a_password(cli_env: str, tmp_path: Path) -> None:
    runner = CliRunner()
    token_file = tmp_path / "admin-token"
    first = runner.invoke(main, ["users", "bootstrap", "--token-file", str(token_file)])
    assert first.exit_code == 0, first.output
    assert "API token saved to" in first.output
    link = LINK.search(first.output)
    assert link, first.output
    assert "password" not in first.output.lower()
    assert token_file.read_text().strip() not in first.output
    # Until the admin sets a password, every run prints a fresh link.
    again = runner.invoke(main, ["users", "bootstrap", "--token-file", str(token_file)])
    assert "exist already" in again.output
    assert LINK.search(again.output) and LINK.search(again.output).group(1) != link.group(1)
    assert (
        runner.invoke(main, ["users", "password", "admin@localhost", "--stdin"], input="admin-password-5\n").exit_code
        == 0
    )
    quiet = runner.invoke(main, ["users", "bootstrap", "--token-file", str(token_file)])
    assert quiet.exit_code == 0 and not LINK.search(quiet.output)


def test_mfa_reset(cli_env: str) -> None:
    from hub.console import totp

    runner = CliRunner()
    assert runner.invoke(main, ["users", "create", "--name", "Fay", "--email", "fay@example.com"]).exit_code == 0
    user_id = run_db(
        cli_env, lambda conn: conn.execute(sa.select(users.c.id).where(users.c.email == "fay@example.com")).scalar_one()
    )
    state = run_db(cli_env, lambda conn: totp.start_enrolment(conn, user_id), write=True)
    import pyotp

    code = pyotp.TOTP(state.pending_secret).now()
    assert run_db(cli_env, lambda conn: totp.confirm_enrolment(conn, user_id, code, now=utcnow()), write=True)
    reset = runner.invoke(main, ["users", "mfa-reset", "fay@example.com"])
    assert reset.exit_code == 0, reset.output
    after = run_db(cli_env, lambda conn: totp.state(conn, user_id))
    assert not after.enabled and after.recovery_codes_left == 0
