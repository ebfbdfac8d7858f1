"""Live progress of the long tests (smoke run, interruption): pytest captures output, so these lines go straight to
the terminal reporter; a newcomer sees which Snakemake job is running instead of minutes of silence."""

from __future__ import annotations

import re
import subprocess
import time

_INTERESTING = re.compile(r"^(rule \S+:|localrule \S+:|\d+ of \d+ steps .* done|    wildcards: .*)$")


def terminal_writer(config):
    """A ``say(message)`` that prints a timestamped line on the terminal while a test runs (no-op without terminal)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")

    def say(message: str) -> None:
        if reporter is not None:
            reporter.write_line(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    return say


def run_streaming(cmd: list[str], say, *, timeout: float, label: str, **kwargs) -> subprocess.CompletedProcess:
    """Run ``cmd`` (Snakemake), forwarding its job headers and step counts to ``say``; stdout and stderr are merged
    into ``stdout`` (``stderr`` is empty)."""
    say(f"{label}: {' '.join(cmd[3:])}")
    t0 = time.monotonic()
    lines: list[str] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            text = line.rstrip("\n")
            if _INTERESTING.match(text):
                say(f"{label}: {text.strip()}")
            if time.monotonic() - t0 > timeout:
                proc.kill()
                raise subprocess.TimeoutExpired(cmd, timeout, output="".join(lines))
        proc.wait()
    out = "".join(lines)
    say(f"{label}: finished with exit code {proc.returncode} after {time.monotonic() - t0:.0f} s")
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout=out, stderr="")
