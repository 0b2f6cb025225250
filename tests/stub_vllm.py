"""A stand-in for ``python -m vllm.entrypoints.openai.api_server`` in process tests (no vLLM).

Run as ``python stub_vllm.py [any vLLM args]``; it takes the last ``--port``/``--host``, waits
``STUB_DELAY_S``, then serves ``GET /health`` (200) and logs like vLLM. Behaviour switches (env):

- ``STUB_EXIT_CODE`` + ``STUB_EXIT_LINES``: print the lines (``\\n``-separated) and exit with the code;
- ``STUB_CHILD=1``: start a child process first (same process group, like EngineCore);
- ``STUB_IGNORE_TERM=1``: ignore SIGTERM (parent and child), so only SIGKILL ends them;
- ``STUB_RECORD=path``: write ``{"argv", "env", "cwd"}`` as JSON at startup.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import time


def _last(argv: list[str], flag: str, default: str) -> str:
    value = default
    for i, a in enumerate(argv):
        if a.startswith(flag + "="):
            value = a.split("=", 1)[1]
        elif a == flag and i + 1 < len(argv):
            value = argv[i + 1]
    return value


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = 200 if self.path == "/health" else 404
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        print(f"INFO:     {self.address_string()} - {format % args}", flush=True)


def main() -> None:
    argv = sys.argv[1:]
    if os.environ.get("STUB_RECORD"):
        with open(os.environ["STUB_RECORD"], "w") as f:
            json.dump({"argv": argv, "env": dict(os.environ), "cwd": os.getcwd()}, f)
    if os.environ.get("STUB_IGNORE_TERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if os.environ.get("STUB_CHILD"):
        subprocess.Popen([sys.executable, "-c", "import time\nwhile True: time.sleep(1)"])
    print(f"(APIServer pid={os.getpid()}) INFO non-default args: {argv}", flush=True)
    time.sleep(float(os.environ.get("STUB_DELAY_S", "0.3")))
    if os.environ.get("STUB_EXIT_CODE"):
        print(os.environ.get("STUB_EXIT_LINES", "").replace("\\n", "\n"), flush=True)
        sys.exit(int(os.environ["STUB_EXIT_CODE"]))

    def _term(signum: int, frame: object) -> None:
        print("INFO:     Application shutdown complete.", flush=True)
        os._exit(0)

    if not os.environ.get("STUB_IGNORE_TERM"):
        signal.signal(signal.SIGTERM, _term)
    server = http.server.HTTPServer((_last(argv, "--host", "0.0.0.0"), int(_last(argv, "--port", "8080"))),
                                    _Handler)
    print("INFO:     Application startup complete.", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
