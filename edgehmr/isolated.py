"""Crash-prone vendor steps in a child process: a segfault or abort there fails one step with a clear message.

coremltools' converter and TensorRT's builder are native code that can crash outright on a graph they do not
expect (a segmentation fault, an abort in a C++ assertion). In the converting process that would end the command
with no message and no cleanup; in a child it is one failed step. The child is ``python -m <worker> request.json``:
it reads its request, does the step and prints one JSON line, ``{"ok": ...}`` or ``{"error": "..."}``, as its last
line of output.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from edgehmr.errors import ConversionError

RESULT_PREFIX = '{"edgehmr_worker": '


class WorkerError(ConversionError):
    """The worker ran to its end and reported an error; ``text`` is the vendor's whole message."""

    def __init__(self, message: str, text: str):
        super().__init__(message)
        self.text = text


def run_worker(module: str, request: dict, request_path: Path, what: str) -> dict:
    """Run ``python -m module request_path`` (after writing ``request`` there) and return its result dict.

    Raises WorkerError with the worker's own error, or ConversionError naming the signal when it crashed."""
    request_path.write_text(json.dumps(request))
    return run_isolated([sys.executable, "-m", module, str(request_path)], what)


def run_isolated(argv: list[str], what: str) -> dict:
    """Run ``argv``; its last output line starting with :data:`RESULT_PREFIX` is the result."""
    done = subprocess.run(argv, capture_output=True, text=True)
    result = _result(done.stdout)
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        raise ConversionError(f"{what} crashed ({name}) in its own process; nothing else was affected. Try another "
                              f"precision or target, and report the model to the vendor's tracker.")
    if result is None:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConversionError(f"{what} failed (exit code {done.returncode}): {tail}")
    if "error" in result:
        text = str(result["error"])
        raise WorkerError(f"{what} failed: {(text.splitlines() or [''])[0]}", text)
    return result


def _result(stdout: str) -> dict | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line)["edgehmr_worker"]
    return None


def serve(argv: list[str], step: Callable[[dict], object]) -> int:
    """A worker's main: ``step(request)`` on the request file ``argv[1]``; prints ``{"ok": what it returned}``
    or ``{"error": message}`` as its last line and returns the exit code."""
    request = json.loads(Path(argv[1]).read_text())
    try:
        result = {"ok": step(request)}
    except Exception as e:  # vendor code raises many types; the parent turns the text into one clear line
        result = {"error": str(e) or type(e).__name__}
    sys.stdout.flush()
    print(RESULT_PREFIX + json.dumps(result) + "}", flush=True)
    return 1 if "error" in result else 0
