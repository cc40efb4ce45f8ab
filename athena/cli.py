"""Flask CLI commands for a fresh install: ``flask --app wsgi users create`` / ``tokens create``."""
from __future__ import annotations

import sys

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import func, select

users_cli = AppGroup("users", help="Manage users.")
tokens_cli = AppGroup("tokens", help="Manage app access tokens.")


@users_cli.command("create")
@click.argument("email")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--name", default="")
@click.option("--workspace", "workspace_name", default=None, help="Also create a workspace owned by the user.")
@click.option("--organization", "organization_name", default=None, help="Organization name (created if new).")
@click.option("--admin", is_flag=True, help="Administrator (may open /rq when in no workspace).")
def create_user(email: str, password: str, name: str, workspace_name: str | None,
                organization_name: str | None, admin: bool) -> None:
    """Create a user (and optionally an owned workspace)."""
    from athena.auth import hash_password
    from athena.extensions import db
    from athena.models import Organization, User
    from athena.services.workspaces import create_workspace

    email = email.strip().lower()
    if "@" not in email or len(password) < 8:
        raise click.ClickException("an email address and a password of at least 8 characters are required")
    if db.session.execute(select(User).where(func.lower(User.email) == email)).scalar_one_or_none():
        raise click.ClickException(f"a user with email {email} already exists")
    organization = None
    if organization_name:
        organization = db.session.execute(
            select(Organization).where(Organization.name == organization_name)
        ).scalar_one_or_none() or Organization(name=organization_name)
    user = User(email=email, name=name or email.split("@")[0], password_hash=hash_password(password),
                organization=organization, is_admin=admin)
    db.session.add(user)
    db.session.commit()
    click.echo(f"user {user.email} created (uuid {user.uuid})")
    if workspace_name:
        workspace = create_workspace(user, workspace_name)
        click.echo(f"workspace {workspace.name!r} created (uuid {workspace.uuid})")


@tokens_cli.command("create")
@click.argument("email")
@click.option("--name", default="cli")
def create_token(email: str, name: str) -> None:
    """Create a long-lived app access token (printed once; send it as X-Multiplai-Authorization)."""
    from athena.auth import issue_token, user_by_email
    from athena.extensions import db

    user = user_by_email(email)
    if user is None:
        raise click.ClickException(f"no user with email {email}")
    clear, _ = issue_token(user, "app", name=name)
    db.session.commit()
    click.echo(clear)


secrets_cli = AppGroup("secrets", help="Manage stored secrets (webhook secrets, secret workflow variables, LLM account credentials).")


@secrets_cli.command("rotate")
@click.option("--dry-run", is_flag=True, help="Only count and check; write nothing.")
def rotate_secrets(dry_run: bool) -> None:
    """Re-encrypt every stored secret under the current SECRET_KEY.

    Values stored under a key of SECRET_KEY_FALLBACKS (or in clear, from before encryption) are
    rewritten under SECRET_KEY; values already under it are left as they are, so running it
    again changes nothing. Exits 1, naming them, if some value no configured key decrypts (the
    others are still re-encrypted)."""
    from athena.crypto import configured_keys
    from athena.services.secrets import rotate_stored_secrets

    counts, unreadable = rotate_stored_secrets(dry_run=dry_run)
    fallbacks = len(configured_keys()) - 1
    verb = "would re-encrypt" if dry_run else "re-encrypted"
    click.echo(f"secrets: {verb} {counts['rotated']} under SECRET_KEY, {counts['current']} already under it, "
               f"{len(unreadable)} undecryptable (keys: SECRET_KEY + {fallbacks} in SECRET_KEY_FALLBACKS)")
    if unreadable:
        raise click.ClickException(
            f"{len(unreadable)} stored secret(s) cannot be decrypted with SECRET_KEY or SECRET_KEY_FALLBACKS:\n  "
            + "\n  ".join(unreadable)
            + "\nAdd the key they were stored under to SECRET_KEY_FALLBACKS and run this again, "
              "or set those secrets again through the API.")


def init_app(app: Flask) -> None:
    app.cli.add_command(users_cli)
    app.cli.add_command(tokens_cli)
    app.cli.add_command(secrets_cli)


FLASK = "flask --app wsgi"
OTHER_FLASK_COMMANDS = [("db upgrade", "Apply the database migrations (make run does it at startup).")]
HELP_FLAGS = ("-h", "--help", "help")


def _app_commands() -> list[tuple[str, str]]:
    """``(group command, one-line help)`` of every command group of this module, in order."""
    found = []
    for group in [value for value in globals().values() if isinstance(value, AppGroup)]:
        for name, command in group.commands.items():
            found.append((f"{group.name} {name}", command.get_short_help_str(limit=70)))
    return found + OTHER_FLASK_COMMANDS


def usage() -> str:
    commands = "\n".join(f"  {name:<18}{text}" for name, text in _app_commands())
    return f"""usage: python -m athena.cli <command> [arguments]
       python -m athena.cli <command> --help      (a command's options)

Commands:
  watch             Follow an execution's events as they happen, then print its final output
                    (or, with --workspace, every execution of a workspace). The server is --url
                    or ATHENA_URL (default http://127.0.0.1:5000), the token --token or ATHENA_TOKEN.
                      python -m athena.cli watch <execution-uuid> [--json] [--after-seq N]
                      python -m athena.cli watch --workspace <workspace-uuid>
{commands}

The commands after watch use the app's database and settings (config.py, the environment):
run them from the project directory; "python -m athena.cli users create ..." is the same as
"{FLASK} users create ...".
  python -m athena.cli users create you@example.com --workspace 'My workspace'
  python -m athena.cli tokens create you@example.com
"""


def _flask(argv: list[str]) -> int:
    """Run a Flask command group of the app (``flask --app wsgi <argv>``); its exit status."""
    from flask.cli import cli as flask_cli

    try:
        flask_cli.main(args=["--app", "wsgi", *argv], prog_name="python -m athena.cli")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def main(argv: list[str]) -> int:
    """``python -m athena.cli watch ...`` (no app needed); the app's command groups (users, tokens,
    ...) run through Flask, as ``flask --app wsgi ...`` would; ``--help`` lists them all."""
    if not argv or argv[0] in HELP_FLAGS:
        print(usage(), end="")
        return 0
    if argv[0] == "watch":
        from athena.dev.watch import main as watch_main

        return watch_main(argv[1:])
    groups = {name.split()[0] for name, _ in _app_commands()}
    if argv[0] in groups:
        return _flask(argv)
    print(f"python -m athena.cli: unknown command {argv[0]!r}\n\n{usage()}", end="", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
