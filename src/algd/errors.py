"""Errors the user can act on. Each is reported as one line (no traceback) with a non-zero exit code."""

from __future__ import annotations

import argparse
import sys


class AlgdError(Exception):
    """Base class; ``code`` is the process exit code of a single run that stops with it."""

    code = 2


class ConfigError(AlgdError, ValueError):
    """A bad command-line or config value (names the key, the value and what is allowed)."""


class CheckpointError(AlgdError, RuntimeError):
    """A checkpoint that cannot be used to resume: missing, unreadable, or built for another config."""


class TrainingStopped(AlgdError, RuntimeError):
    """Training stopped early for a reason the user can act on, e.g. a non-finite loss (exit code 3)."""

    code = 3


class Interrupted(AlgdError, RuntimeError):
    """Training stopped on a signal (SIGTERM, SIGINT, SIGUSR1) after saving a resumable checkpoint (exit code 4)."""

    code = 4

    def __init__(self, message: str, frame: int, signal_name: str, requeue: bool = False, release=None):
        super().__init__(message)
        self.frame, self.signal_name, self.requeue = int(frame), signal_name, bool(requeue)
        self.release = release or (lambda: None)  # gives the signals back to their handlers (after the status)


class SaveFailed(AlgdError, RuntimeError):
    """A checkpoint could not be written (full disk, I/O or permission error); the previous one is intact (exit
    code 5)."""

    code = 5

    def __init__(self, message: str, path):
        super().__init__(message)
        self.path = path


class RunBusy(AlgdError, RuntimeError):
    """The run directory is in use by another live process (exit code 6)."""

    code = 6


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line naming its ``usage`` (a :class:`ConfigError`, exit code 2) where
    argparse would print its usage block."""

    def error(self, message):
        raise ConfigError(f"{message} (usage: {self.usage})")


def exit_on_error(call) -> None:
    """``call()``, an :class:`AlgdError` reported as one line on stderr with its exit code (a tool's ``main``)."""
    try:
        call()
    except AlgdError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(err.code) from None
