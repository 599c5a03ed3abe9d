"""`fp api serve|token`: run the HTTP API and manage its bearer tokens."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from feature_platform.cli.common import (
    EXIT_OK,
    add_json_flag,
    data_root,
    domain_errors,
    int_at_least,
    print_json,
    safe_id,
)

if TYPE_CHECKING:
    from feature_platform.cli.common import Commands

SCOPES_HELP = "comma-separated scopes: ml:train, ml:write, datasets:read, datasets:write"


def _port(text: str) -> int:
    value = int_at_least(0, "port (0-65535)")(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"expected a port (0-65535) integer, got {text!r}")
    return value


def register(groups: Commands) -> None:
    cmds = groups.group("api", "{serve,token}", help="the HTTP API: serve it, manage its tokens",
                        description="Endpoints, scopes and curl examples: README, section Platform API; "
                        "OpenAPI at /openapi.json of a running server.")
    serve = cmds.add("serve", _serve, help="serve the API with uvicorn (data root $FP_DATA_ROOT, Dagster "
                     "instance $DAGSTER_HOME, MLflow $MLFLOW_TRACKING_URI, run links $FP_DAGSTER_URL)")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1: this machine "
                       "only; there is no TLS, put a TLS proxy in front for anything else)")
    serve.add_argument("--port", type=_port, default=8080, help="TCP port (default 8080; 0 picks a free one)")

    tcmds = cmds.group("token", "{create,list,revoke}", dest="token_command",
                       help="create, list and revoke API tokens")
    create = tcmds.add("create", _token_create,
                       help="create a token; it is printed once and only its SHA-256 is kept")
    create.add_argument("--name", type=safe_id("--name"), required=True, help="who or what uses the token (unique "
                        "among active tokens; shown as the launcher of the runs it starts)")
    create.add_argument("--scopes", required=True, help=SCOPES_HELP)
    create.add_argument("--expires", default=None, help="expiry: a duration like 90m, 12h, 30d, or an ISO-8601 "
                        "time with a zone like 2027-01-31T00:00:00Z (default: never)")
    add_json_flag(create)
    listing = tcmds.add("list", _token_list, help="list tokens (name, id, scopes, times, state; never the token)")
    add_json_flag(listing)
    revoke = tcmds.add("revoke", _token_revoke,
                       help="revoke a token by name (the active one) or id; it stops working at once")
    revoke.add_argument("token", metavar="NAME|ID", help="token name or id (fp api token list)")
    add_json_flag(revoke)


def _store() -> Any:
    from feature_platform.api.tokens import TokenStore, token_store_path

    return TokenStore(token_store_path(data_root()))


def _token_create(args: argparse.Namespace) -> int:
    from feature_platform.api.tokens import TokenConflict, TokenInputError, parse_expiry, parse_scopes, utc_now

    store = _store()
    with domain_errors(usage=TokenInputError, failed=TokenConflict):
        scopes = parse_scopes(args.scopes)
        expires = parse_expiry(args.expires, utc_now()) if args.expires is not None else None
        secret, record = store.create(args.name, scopes, expires_at=expires)
    if args.json:
        print_json({**record.to_json_dict(store.clock()), "token": secret})
    else:
        print(secret)
        print(f"created token {record.name} ({record.id}), scopes {','.join(record.scopes)}, expires "
              f"{record.to_json_dict(store.clock())['expires_at'] or 'never'}; the token is shown only this once",
              file=sys.stderr)
    return EXIT_OK


def _token_list(args: argparse.Namespace) -> int:
    store = _store()
    now = store.clock()
    records = [r.to_json_dict(now) for r in store.list()]
    if args.json:
        print_json(records)
        return EXIT_OK
    if not records:
        print("no tokens (fp api token create --name N --scopes ...)")
        return EXIT_OK
    print(f"{'NAME':<24} {'ID':<17} {'STATE':<8} {'CREATED':<21} {'EXPIRES':<21} SCOPES")
    for r in records:
        print(f"{r['name']:<24} {r['id']:<17} {r['state']:<8} {r['created_at']:<21} {r['expires_at'] or 'never':<21} "
              f"{','.join(r['scopes'])}")
    return EXIT_OK


def _token_revoke(args: argparse.Namespace) -> int:
    from feature_platform.api.tokens import TokenNotFound

    store = _store()
    with domain_errors(failed=TokenNotFound):
        record, now_revoked = store.revoke(args.token)
    if args.json:
        print_json({**record.to_json_dict(store.clock()), "revoked_now": now_revoked})
    else:
        print(f"revoked token {record.name} ({record.id})" if now_revoked
              else f"token {record.name} ({record.id}) was already revoked")
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    from feature_platform.api.app import create_app
    from feature_platform.api.settings import ApiSettings
    from feature_platform.cli.common import dagster_instance

    dagster_instance()  # checks $DAGSTER_HOME, or sets up <project>/.dagster_home as every `fp` command does
    with domain_errors(usage=ValueError):
        settings = ApiSettings.from_env(data_root=data_root())
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        print(f"fp api serve: warning: listening on {args.host} without TLS; tokens cross the network in clear "
              "unless a TLS proxy is in front", file=sys.stderr)
    print(f"fp api serve: data root {settings.data_root}, Dagster instance {os.environ['DAGSTER_HOME']}, "
          f"OpenAPI at http://{args.host}:{args.port}/openapi.json", file=sys.stderr)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="debug" if args.verbose else "info",
                access_log=True, server_header=False)
    return EXIT_OK
