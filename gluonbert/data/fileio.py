"""Small file helpers shared by the data pipelines: atomic writes and sha1 sums.

Every file gluonbert writes goes to a temporary file in the destination directory first and is
moved into place with ``os.replace``, so that an interrupted run never leaves a half-written
file under the final name.
"""
import contextlib
import hashlib
import os
import tempfile

__all__ = ['atomic_write', 'sha1_of_file', 'read_text_lines']


@contextlib.contextmanager
def atomic_write(path, mode='w', encoding='utf-8', newline=None):
    """Opens a temporary file next to ``path``; moves it to ``path`` when the block succeeds.

    Parameters
    ----------
    path : str
        Final file name. Its directory must exist.
    mode : {'w', 'wb'}
        Text or binary mode.
    encoding : str
        Text encoding (text mode only).
    newline : str or None
        Passed to ``open`` in text mode (``'\\n'`` writes Unix line ends on every platform).

    Outputs
    -------
    file object
        The open temporary file. If the block raises, the temporary file is removed and
        ``path`` is left as it was.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp',
                               dir=directory)
    try:
        if 'b' in mode:
            fobj = os.fdopen(fd, mode)
        else:
            fobj = os.fdopen(fd, mode, encoding=encoding, newline=newline)
        with fobj:
            yield fobj
            fobj.flush()
            os.fsync(fobj.fileno())
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp's 0600 -> what open() would give
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def _current_umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def sha1_of_file(path, chunk_size=1 << 20):
    """Returns the hex sha1 digest of a file, read in chunks of ``chunk_size`` bytes."""
    digest = hashlib.sha1()
    with open(path, 'rb') as fobj:
        for chunk in iter(lambda: fobj.read(chunk_size), b''):
            digest.update(chunk)
    return digest.hexdigest()


def read_text_lines(path):
    """Reads a UTF-8 text file (an optional BOM is dropped) as lines without line ends.

    Bad UTF-8 raises :class:`~gluonbert.errors.DataFormatError` naming the file and the
    1-based line; ``\\r\\n`` and ``\\n`` line ends are both accepted.

    Parameters
    ----------
    path : str
        The file.

    Outputs
    -------
    list of (int, str)
        ``(line_number, text)`` pairs, line numbers starting at 1.
    """
    from ..errors import DataFormatError
    with open(path, 'rb') as fobj:
        raw = fobj.read()
    if raw.startswith(b'\xef\xbb\xbf'):
        raw = raw[3:]
    lines = raw.split(b'\n')
    if lines and lines[-1] == b'':
        lines.pop()
    out = []
    for number, line in enumerate(lines, 1):
        if line.endswith(b'\r'):
            line = line[:-1]
        try:
            out.append((number, line.decode('utf-8')))
        except UnicodeDecodeError as err:
            raise DataFormatError(path, number, f'invalid UTF-8 at byte {err.start} of the line '
                                  f'({line[max(0, err.start - 10):err.start + 10]!r}); '
                                  'expected UTF-8 text') from None
    return out
