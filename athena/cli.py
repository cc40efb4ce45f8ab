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


def init_app(app: Flask) -> None:
    app.cli.add_command(users_cli)
    app.cli.add_command(tokens_cli)


def main(argv: list[str]) -> int:
    """``python -m athena.cli watch ...`` (no app needed); the Flask groups run via ``flask --app wsgi``."""
    if argv[:1] == ["watch"]:
        from athena.watch import main as watch_main

        return watch_main(argv[1:])
    print("usage: python -m athena.cli watch <execution-uuid> [--workspace UUID] [--url URL] [--token T] "
          "[--after-seq N]\n       (users/tokens: flask --app wsgi users|tokens ...)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
