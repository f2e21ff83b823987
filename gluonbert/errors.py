"""Errors raised by gluonbert.

Every error names what was wrong (file, line, parameter or value) and what was expected, so
that a user can fix the input without reading a traceback from deep inside MXNet.
"""

__all__ = ['GluonBERTError', 'ConfigError', 'InputError', 'CheckpointError',
           'WeightsNotFoundError', 'ChecksumError', 'DataFormatError']


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
