"""``mimicry serve`` and ``mimicry keys``: run the HTTP service and manage its API keys."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from mimicry.extras import needs_extra

keys_app = typer.Typer(help="Create, list and revoke the service's API keys (stored hashed).",
                       no_args_is_help=True)

KeysDb = Annotated[Optional[Path], typer.Option(
    "--db", show_default=False,
    help="Key database \\[default: $MIMICRY_KEYS_DB, else keys.sqlite3 in the data folder: $MIMICRY_HOME, "
         "else the user data folder (~/.local/share/mimicry on Linux)].")]


def serve(
    model: Annotated[Optional[str], typer.Option(
        "--model", show_default=False,
        help="Detector: a model directory, or a name looked up in $MIMICRY_MODELS, then among the bundled "
             "models \\[default: $MIMICRY_MODEL_DIR, else default].")] = None,
    host: Annotated[Optional[str], typer.Option("--host", show_default=False, help="\\[default: 127.0.0.1]")] = None,
    port: Annotated[Optional[int], typer.Option("--port", show_default=False, help="\\[default: 8000]")] = None,
    batch_max_size: Annotated[Optional[int], typer.Option(
        "--batch-max-size", min=1, show_default=False, help="Images per model call; 1 turns batching off.")] = None,
    batch_max_wait_ms: Annotated[Optional[float], typer.Option(
        "--batch-max-wait-ms", min=0, show_default=False, help="How long a batch waits to fill.")] = None,
    require_key: Annotated[Optional[bool], typer.Option(
        "--require-key/--no-require-key", show_default=False, help="Require an API key for detect too.")] = None,
    workers: Annotated[int, typer.Option(
        "--workers", min=1, help="Server processes, each with its own model and batcher (stateless: "
                                 "keys and the registry live in their databases).")] = 1,
    log_level: Annotated[str, typer.Option("--log-level")] = "info",
) -> None:
    """Start the HTTP API and the web page under uvicorn.

    Every setting can also come from MIMICRY_* environment variables or a .env file (see service/settings.py); options given here win. The model, the style encoder, the registry and the key database are opened before the port is bound: one that fails its checks stops the server with the reason and exit code 2.
    """  # noqa: E501  (one line per paragraph: the help text keeps line breaks)
    with needs_extra("serve", "serve"):
        import uvicorn
        from pydantic import ValidationError

        from mimicry.service.app import create_app
        from mimicry.service.settings import Settings

    overrides = {k: v for k, v in {
        "model_dir": model, "host": host, "port": port, "batch_max_size": batch_max_size,
        "batch_max_wait_ms": batch_max_wait_ms, "require_key_for_detect": require_key}.items() if v is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        typer.echo(f"error: bad settings: {exc}", err=True)
        raise typer.Exit(2) from None
    from mimicry.detector.bundle import ModelBundle, ModelError

    from uvicorn.config import LOG_LEVELS

    if log_level not in LOG_LEVELS:
        typer.echo(f"error: --log-level must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}", err=True)
        raise typer.Exit(2)
    try:  # fail before binding the port, with the reason
        ModelBundle.from_dir(settings.model_dir)
    except ModelError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    _store(settings.keys_db).close()
    _check_attribution(settings)
    from mimicry.service import server

    # Room for connections: the soft open-file limit up to the hard one (--workers processes inherit it);
    # the connection limits are then set under it (service/server.py).
    server.raise_fd_limit()
    options = server.uvicorn_options(settings)
    if workers == 1:
        uvicorn.run(server.service_app(create_app(settings)), host=settings.host, port=settings.port,
                    log_level=log_level, **options)
        return
    # Several processes: each builds its app from the environment, so the options travel there.
    import os

    for field, value in overrides.items():
        os.environ[f"MIMICRY_{field.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    uvicorn.run("mimicry.service.server:create_app", factory=True, host=settings.host, port=settings.port,
                workers=workers, log_level=log_level, **options)


def _check_attribution(settings) -> None:
    """What the server opens at start-up for attribution, opened once here so that a bad style encoder or
    registry (a missing encoder, a path that cannot be a registry, one bound to another encoder) is a one-line
    error and exit 2 before the port is bound, as a bad model is, not a traceback from inside uvicorn."""
    if settings.style_encoder_dir is None or not str(settings.style_encoder_dir):
        return  # attribution off
    from mimicry.detector.attribution import Attribution
    from mimicry.detector.bundle import ModelError
    from mimicry.detector.registry import Registry, RegistryError
    from mimicry.detector.style import StyleEncoder

    try:
        enc = StyleEncoder.from_dir(settings.style_encoder_dir, intra_op_threads=1)
    except ModelError as exc:
        typer.echo(f"error: style encoder: {exc} (set MIMICRY_STYLE_ENCODER_DIR= to run without attribution)",
                   err=True)
        raise typer.Exit(2) from None
    try:
        with Registry.open(settings.registry, aggregate=enc.aggregate) as reg:
            Attribution(enc, reg)
    except RegistryError as exc:
        typer.echo(f"error: registry: {exc}", err=True)
        raise typer.Exit(2) from None


def _store(db: Path | None):
    """The key store at ``db`` (default: the settings' ``keys_db``); a path or setting that cannot be one is a
    one-line error and exit 2, not a traceback."""
    import sqlite3

    with needs_extra("serve", "keys"):
        from pydantic import ValidationError

        from mimicry.service.keys import KeyStore
        from mimicry.service.settings import Settings

    try:
        path = db or Settings().keys_db
    except ValidationError as exc:
        typer.echo(f"error: bad settings: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        return KeyStore(path)
    except (OSError, sqlite3.Error) as exc:  # a file where a folder should be; a file that is no key database
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        typer.echo(f"error: cannot open the key database {path}: {why}", err=True)
        raise typer.Exit(2) from None


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="Who or what will use the key.")],
    scope: Annotated[str, typer.Option(
        "--scope", help="What the key may do: detect (the detect routes; artists' names in verdicts), enrol "
                        "(also list artists, create them, add works; works in verdicts), admin (also remove "
                        "artists).")] = "detect",
    db: KeysDb = None,
) -> None:
    """Create a key and print it once (only its hash is stored).

    Keys made before scopes existed are admin keys (every right they had); `keys list` shows each key's scope.
    """
    store = _store(db)
    try:
        key, info = store.create(name, scope=scope)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(key)
    typer.echo(f"key id {info.id} for {info.name!r}, scope {info.scope}, in {store.path}; it is shown only now",
               err=True)


@keys_app.command("list")
def keys_list(db: KeysDb = None) -> None:
    """List keys: id, state, scope, created (UTC), name; never the keys."""
    import datetime as dt

    for k in _store(db).list():
        created = dt.datetime.fromtimestamp(k.created_at, dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
        state = "active" if k.active else "revoked"
        typer.echo(f"{k.id}\t{state}\t{k.scope}\t{created}\t{k.name}")


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The id that `keys list` shows.")], db: KeysDb = None) -> None:
    """Revoke a key: requests with it get 401 from then on."""
    if not _store(db).revoke(key_id):
        typer.echo(f"error: no active key with id {key_id!r}", err=True)
        raise typer.Exit(2)  # a usage error, as elsewhere (1 means "flagged" in the commands that judge images)
    typer.echo(f"revoked {key_id}")
