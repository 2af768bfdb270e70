"""``refalign demo``: serve the gradio web demo (issue: web demo)."""

from __future__ import annotations

import logging
import socket
from typing import Optional

import typer

from refalign.cli._common import DeviceOption, ModelOption, handle_errors
from refalign.errors import RefalignError

logger = logging.getLogger(__name__)


def check_port(host: str, port: int) -> None:
    """Fail before the model loads when ``host:port`` cannot be served on (in use, or not an address here)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise RefalignError(f"--host {host}: not a usable address ({exc.strerror}); try 127.0.0.1") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind(addr)
        except OSError as exc:
            raise RefalignError(f"--port {port}: cannot serve on {host}:{port} ({exc.strerror}); choose another port") from None


@handle_errors
def demo(
    model: Optional[str] = ModelOption,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to serve on (0.0.0.0 exposes it to your network)."),
    port: int = typer.Option(7860, "--port", min=1, max=65535, help="Port to serve on."),
    device: Optional[str] = DeviceOption,
) -> None:
    """Open a web page to paint the artifact, see where the model looked in the reference, and refine."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise RefalignError("the web demo needs gradio; install it with: pip install 'refalign[demo]'") from None
    from refalign.cli._common import load_pipeline
    from refalign.demo.app import build_demo, launch, serving_folder

    check_port(host, port)
    pipe = load_pipeline(model, device)  # once, before serving; requests queue on it
    with serving_folder() as folder:  # uploads and downloads, removed on every exit (also SIGTERM)
        page = build_demo(pipe, output_root=folder / "outputs")
        typer.echo(f"refalign demo on http://{host}:{port} (Ctrl-C to stop)", err=True)
        try:
            launch(page, host=host, port=port, quiet=True)
        except OSError:  # taken between the check and the launch
            raise RefalignError(f"--port {port}: {host}:{port} is in use; choose another port") from None
