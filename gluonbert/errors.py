"""Errors raised by gluonbert.

Every error names what was wrong (file, line, parameter or value) and what was expected, so
that a user can fix the input without reading a traceback from deep inside MXNet.
"""

__all__ = ['GluonBERTError', 'ConfigError', 'InputError', 'CheckpointError',
           'WeightsNotFoundError', 'ChecksumError', 'DataFormatError', 'FileSystemError',
           'Interrupted']


class GluonBERTError(Exception):
    """Base class of every error gluonbert raises on purpose."""


class ConfigError(GluonBERTError, ValueError):
    """A model or training configuration value is invalid.

    ``field``, ``value`` and ``expected`` (given by the config dataclasses) let the command
    line name its flag (``--batch-size 0``) instead of the field (``FinetuneConfig.batch_size``).
    """

    def __init__(self, message, field=None, value=None, expected=None):
        super().__init__(message)
        self.field, self.value, self.expected = field, value, expected


class InputError(GluonBERTError, ValueError):
    """Arrays given to a model do not fit its configuration (ids out of range, bad shapes)."""


class CheckpointError(GluonBERTError, ValueError):
    """A parameter file does not fit the model (missing, extra, or wrongly shaped parameters)."""


class WeightsNotFoundError(GluonBERTError, FileNotFoundError):
    """A pretrained weight or vocabulary file is not in the local root and cannot be downloaded."""


class ChecksumError(GluonBERTError, ValueError):
    """A file's sha1 does not match the expected one."""


class DataFormatError(GluonBERTError, ValueError):
    """A data file is malformed; the message names the file and the line."""

    def __init__(self, path, line, message):
        self.path, self.line = path, line
        where = f'{path}:{line}' if line is not None else f'{path}'
        super().__init__(f'{where}: {message}')


class FileSystemError(GluonBERTError, OSError):
    """A file or directory cannot be read, created or written (missing, not a directory, no
    permission, disk full); the message names the path, what was being done and why."""

    def __init__(self, path, doing, reason):
        self.path = path
        super().__init__(f'{path}: cannot {doing} ({reason})')

    @classmethod
    def from_os_error(cls, err, doing='read or write it'):
        """The named error of an ``OSError`` raised by the standard library."""
        path = err.filename if err.filename is not None else '?'
        if err.filename2 is not None:
            path = f'{path} -> {err.filename2}'
        return cls(path, doing, err.strerror or str(err))


class Interrupted(GluonBERTError):
    """SIGINT or SIGTERM stopped a command; ``exit_code`` is 128 + the signal number (130,
    143). The message says what was kept (a checkpoint) and how to continue."""

    def __init__(self, message, signum):
        super().__init__(message)
        self.signum = int(signum)
        self.exit_code = 128 + int(signum)
