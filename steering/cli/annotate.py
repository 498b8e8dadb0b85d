"""`steer annotate`: serve the annotation app (compare, rank, rate, critique) over a feedback database.

Tokens: on a loopback address (the default, 127.0.0.1) tokens are optional — a browser without one
annotates as `local`, one with a token (the link `--add-annotator NAME` prints) as that person. Any other
address is refused unless `--require-tokens` is given, and then every request needs a valid token (401).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from steering.errors import InvalidArgument


def annotate(
    db: Annotated[Path, typer.Option("--db", help="The feedback database (steer feedback add fills it).")],
    host: Annotated[str, typer.Option(help="Address to listen on; off loopback needs --require-tokens.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8765,
    overlap: Annotated[
        int, typer.Option("--overlap", min=1, help="How many annotators see each item (for agreement).")
    ] = 1,
    require_tokens: Annotated[
        bool, typer.Option("--require-tokens", help="Every request needs an annotator's token (else 401).")
    ] = False,
    add_annotator: Annotated[
        str | None,
        typer.Option("--add-annotator", help="Create annotator NAME, print their token and link, and exit."),
    ] = None,
) -> None:
    """Serve the annotation app: compare, rank, rate and critique responses in a browser (keys listed on each page)."""
    from steering.feedback.app import is_loopback
    from steering.feedback.store import FeedbackStore

    with FeedbackStore.open(db, create=False) as store:
        if add_annotator is not None:
            token = store.add_annotator(add_annotator)
            out = Console()
            out.print(
                f"annotator {add_annotator!r} added; token (shown once, keep it secret):", highlight=False
            )
            out.print(token, highlight=False, soft_wrap=True)
            out.print(
                f"open: http://{_url_host(host)}:{port}/login?token={token}", highlight=False, soft_wrap=True
            )
            return
        if not is_loopback(host) and not require_tokens:
            raise InvalidArgument(
                f"steer annotate listens on loopback only unless tokens are required; {host} is not loopback",
                received=f"--host {host}",
                fix="add --require-tokens (and give each person the link from --add-annotator NAME), "
                "or use --host 127.0.0.1",
            )
        _check_port_free(host, port)
        _serve(store, host=host, port=port, overlap=overlap, require_tokens=require_tokens)


def _serve(store: object, *, host: str, port: int, overlap: int, require_tokens: bool) -> None:
    """Run uvicorn (one process, answers written in worker threads) until Ctrl-C."""
    import uvicorn

    from steering.feedback.app import create_app
    from steering.feedback.store import FeedbackStore

    assert isinstance(store, FeedbackStore)
    items = store.counts().get("items", 0)
    say = Console(stderr=True)
    if items == 0:
        say.print(f"note: {store.path} has no items to annotate yet (steer feedback add fills the queue)")
    tokens = "tokens required" if require_tokens else "tokens optional on loopback"
    say.print(
        f"serving {store.path} ({items} items, overlap {overlap}, {tokens}) on "
        f"http://{_url_host(host)}:{port}/ — Ctrl-C stops",
        highlight=False,
        soft_wrap=True,
    )
    app = create_app(store, overlap=overlap, require_tokens=require_tokens)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _check_port_free(host: str, port: int) -> None:
    """Refuse a port in use with a clear message (uvicorn would log and exit 1)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as error:
            raise InvalidArgument(
                f"cannot listen on {host}:{port} ({error.strerror})",
                received=f"--host {host} --port {port}",
                fix="pick another --port, or stop the program using it",
            ) from None
