"""Run the poolserve CLI in-process against a real API server (the envtest cluster).

Everything goes through the CLI's own code path: option parsing, the target factory's
``ClusterTarget(KubeCluster(--context, --kubeconfig))``, the error boundary and exit codes. Only
the status poll interval is shortened (0.5 s instead of 5 s) so waits end soon after the cluster
changes; ``poll_s=None`` keeps the CLI's own target factory untouched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from poolserve.cli.app import create_app, default_target_factory

runner = CliRunner()


def cli(*args: str, kubeconfig: Path, config: Path, poll_s: float | None = 0.5) -> Result:
    """``poolserve ARGS -c CONFIG --kubeconfig KUBECONFIG``; returns the click Result (exit_code, stdout, stderr)."""
    from poolserve.targets.cluster.kube import KubeCluster
    from poolserve.targets.cluster.target import ClusterTarget

    def factory(name: Any, options: Any) -> Any:
        if name != "cluster" or poll_s is None:
            return default_target_factory(name, options)
        return ClusterTarget(KubeCluster(context=options.context, kubeconfig=options.kubeconfig), poll_s=poll_s)

    app = create_app(target_factory=factory)
    return runner.invoke(app, [*args, "-c", str(config), "--kubeconfig", str(kubeconfig)])


def error_line(r: Result) -> str:
    """The one ``error:`` line of a failed command (and no traceback)."""
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr
    return lines[0]
