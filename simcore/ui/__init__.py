"""`simcore ui`: the planner's web page (simcore/ui/app.py), served by Streamlit.

Streamlit is an optional extra (`pip install 'simcore[ui]'`); without it the command says so on
one line. The page calls the same functions as the CLI.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from simcore.errors import SimcoreError

APP = Path(__file__).resolve().parent / "app.py"


def register(subparsers) -> None:
    u = subparsers.add_parser("ui", help="open the planner's web page (Streamlit; pip install 'simcore[ui]')")
    u.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    u.add_argument("--host", default="localhost", help="address to bind (default localhost)")
    u.add_argument("--no-browser", action="store_true", help="do not open a browser tab (headless server)")
    u.set_defaults(func=ui_command)


def streamlit_command(port: int = 8501, host: str = "localhost", headless: bool = False) -> list[str]:
    if not 1 <= port <= 65535:
        raise SimcoreError(f"port: {port}: allowed 1 to 65535")
    return [sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(port), "--server.address", host,
            "--server.headless", "true" if headless else "false", "--browser.gatherUsageStats", "false"]


def ui_command(args) -> int:
    if importlib.util.find_spec("streamlit") is None:
        raise SimcoreError("ui: streamlit is not installed; install the page's extra: pip install 'simcore[ui]'")
    cmd = streamlit_command(args.port, args.host, args.no_browser)
    print(f"simcore ui: http://{args.host}:{args.port} (Ctrl-C stops it)", file=sys.stderr)
    try:
        return subprocess.call(cmd, env={**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"})
    except KeyboardInterrupt:
        return 130
