"""Atomic writes: an error inside the block leaves the old file and no temporary file."""
import hashlib
import os
import stat

import pytest

from gluonbert.data.fileio import atomic_write, read_text_lines, sha1_of_file


def test_atomic_write_replaces_only_on_success(tmp_path):
    path = tmp_path / 'out.txt'
    path.write_text('old', encoding='utf-8')
    with pytest.raises(RuntimeError):
        with atomic_write(str(path)) as fobj:
            fobj.write('half')
            raise RuntimeError('interrupted')
    assert path.read_text(encoding='utf-8') == 'old'
    assert os.listdir(tmp_path) == ['out.txt']
    with atomic_write(str(path), 'wb') as fobj:
        fobj.write(b'new')
    assert path.read_bytes() == b'new' and os.listdir(tmp_path) == ['out.txt']
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~mask
    assert sha1_of_file(str(path), chunk_size=2) == hashlib.sha1(b'new').hexdigest()


def test_read_text_lines_handles_bom_and_crlf(tmp_path):
    path = tmp_path / 'x.txt'
    path.write_bytes(b'\xef\xbb\xbfa\r\nb\n\nc')
    assert read_text_lines(str(path)) == [(1, 'a'), (2, 'b'), (3, ''), (4, 'c')]
