"""A stand-in for ``python -m vllm.entrypoints.openai.api_server`` in process tests (no vLLM).

Run as ``python stub_vllm.py [any vLLM args]``; it takes the last ``--port``/``--host``, waits
``STUB_DELAY_S``, then serves ``GET /health`` (200) and ``POST /slow`` (200 after ``STUB_SLOW_S``) and logs
like vLLM. On SIGTERM it stops accepting, finishes the requests in flight (as uvicorn does) and exits 0.
Behaviour switches (env):

- ``STUB_EXIT_CODE`` + ``STUB_EXIT_LINES``: print the lines (``\\n``-separated) and exit with the code;
- ``STUB_CHILD=1``: start a child process first (same process group, like EngineCore);
- ``STUB_ENGINE=1``: the child is the engine: when it dies, log vLLM's EngineDeadError and exit 0, as vLLM 0.32 does;
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
import threading
import time

ENGINE_DEAD = (
    "(APIServer pid={pid}) WARNING [core_client.py:817] [shutdown] MPClient: engine core exited unexpectedly; "
    "starting cleanup\n"
    "(APIServer pid={pid}) ERROR [async_llm.py:906] AsyncLLM output_handler failed.\n"
    "(APIServer pid={pid}) ERROR [async_llm.py:906] vllm.v1.engine.exceptions.EngineDeadError: EngineCore "
    "encountered an issue. See stack trace (above) for the root cause.\n"
    "INFO:     Shutting down\nINFO:     Application shutdown complete.\nINFO:     Finished server process [{pid}]"
)


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

    def do_POST(self) -> None:
        if self.path == "/slow":
            time.sleep(float(os.environ.get("STUB_SLOW_S", "2")))
        body = json.dumps({"path": self.path, "pid": os.getpid()}).encode()
        self.send_response(200 if self.path == "/slow" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        print(f"INFO:     {self.address_string()} - {format % args}", flush=True)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for the requests in flight
    block_on_close = True


def main() -> None:
    argv = sys.argv[1:]
    if os.environ.get("STUB_RECORD"):
        with open(os.environ["STUB_RECORD"], "w") as f:
            json.dump({"argv": argv, "env": dict(os.environ), "cwd": os.getcwd()}, f)
    if os.environ.get("STUB_IGNORE_TERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = None
    if os.environ.get("STUB_CHILD") or os.environ.get("STUB_ENGINE"):
        child = subprocess.Popen([sys.executable, "-c", "import time\nwhile True: time.sleep(1)"])
    print(f"(APIServer pid={os.getpid()}) INFO non-default args: {argv}", flush=True)
    time.sleep(float(os.environ.get("STUB_DELAY_S", "0.3")))
    if os.environ.get("STUB_EXIT_CODE"):
        print(os.environ.get("STUB_EXIT_LINES", "").replace("\\n", "\n"), flush=True)
        sys.exit(int(os.environ["STUB_EXIT_CODE"]))
    server = _Server((_last(argv, "--host", "0.0.0.0"), int(_last(argv, "--port", "8080"))), _Handler)

    def _term(signum: int, frame: object) -> None:
        # Stop accepting; serve_forever returns, then server_close() waits for the requests in flight.
        threading.Thread(target=server.shutdown, daemon=True).start()

    if not os.environ.get("STUB_IGNORE_TERM"):
        signal.signal(signal.SIGTERM, _term)
    if child is not None and os.environ.get("STUB_ENGINE"):
        def watch(proc: subprocess.Popen[bytes]) -> None:
            proc.wait()
            print(ENGINE_DEAD.format(pid=os.getpid()), flush=True)
            os._exit(0)

        threading.Thread(target=watch, args=(child,), daemon=True).start()
    print("INFO:     Application startup complete.", flush=True)
    server.serve_forever()
    server.server_close()
    print("INFO:     Application shutdown complete.", flush=True)
    if child is not None:
        child.terminate()
    os._exit(0)


if __name__ == "__main__":
    main()
