"""``gluonbert download mrpc``: fetch the MSR Paraphrase Corpus and build GLUE's MRPC files.

Sources are the ones GluonNLP 0.10's ``GlueMRPC`` uses (and GLUE's own download script): the
two MSR files from SentEval's mirror and GLUE's list of dev pair ids, each checked against a
known sha1. Files are written to a temporary name in the target directory and moved into place
only after their sha1 matched, so an interrupted or corrupted download never leaves a file
under its final name.

With ``dev_ids.tsv`` the GLUE split is rebuilt exactly: ``train.tsv`` (3,668 pairs), ``dev.tsv``
(408) and the unlabelled ``test.tsv`` (1,725). When the dev ids cannot be fetched (the host is
unreachable), the MSR files are kept and :func:`~gluonbert.data.glue.load_mrpc` falls back to
a seeded split.
"""
import dataclasses
import logging
import os
import socket
import urllib.error
import urllib.request

from ..errors import ChecksumError, WeightsNotFoundError
from .fileio import atomic_write, sha1_of_file
from .glue import read_dev_ids, read_msr_paraphrase, split_by_dev_ids, write_mrpc_tsv

__all__ = ['RemoteFile', 'MRPC_SOURCES', 'MRPC_DEV_IDS', 'download_file', 'download_mrpc',
           'mrpc_sources']

_LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """A file to download: its local ``name``, ``url`` and expected ``sha1`` (hex)."""
    name: str
    url: str
    sha1: str


_SENTEVAL = 'https://dl.fbaipublicfiles.com/senteval/senteval_data/'

#: The MSR files, with the URLs and sha1s of GluonNLP 0.10's ``GlueMRPC``.
MRPC_SOURCES = (
    RemoteFile('msr_paraphrase_train.txt', _SENTEVAL + 'msr_paraphrase_train.txt',
               '716e0f67af962f08220b7e97d229b293077ef41f'),
    RemoteFile('msr_paraphrase_test.txt', _SENTEVAL + 'msr_paraphrase_test.txt',
               '4265196c15cf75620b0b592b8b921f543bda7e6c'),
)

#: GLUE's list of MRPC dev pair ids (same URL and sha1 as GluonNLP's ``GlueMRPC``).
MRPC_DEV_IDS = RemoteFile(
    'dev_ids.tsv',
    'https://firebasestorage.googleapis.com/v0/b/mtl-sentence-representations.appspot.com/o/'
    'data%2Fmrpc_dev_ids.tsv?alt=media&token=ec5c0836-31d5-48f4-b431-7480817f1adc',
    '506c7a1a5e0dd551ceec2f84070fa1a8c2bc4b41')


def mrpc_sources(base_url=None):
    """The MRPC files to fetch; ``base_url`` (a mirror) replaces every URL's directory.

    Parameters
    ----------
    base_url : str or None
        E.g. ``'http://mirror.example/mrpc/'``: files are then fetched as ``base_url + name``
        with the official sha1s.

    Outputs
    -------
    (tuple of RemoteFile, RemoteFile)
        The MSR files and the dev-ids file.
    """
    if base_url is None:
        return MRPC_SOURCES, MRPC_DEV_IDS
    base = base_url if base_url.endswith('/') else base_url + '/'
    return (tuple(dataclasses.replace(f, url=base + f.name) for f in MRPC_SOURCES),
            dataclasses.replace(MRPC_DEV_IDS, url=base + MRPC_DEV_IDS.name))


def download_file(remote, directory, timeout=30.0, progress=True):
    """Downloads one file into ``directory``, checks its sha1 and moves it into place.

    A file already there with the right sha1 is kept without downloading.

    Parameters
    ----------
    remote : RemoteFile
        What to fetch.
    directory : str
        Target directory (created if missing).
    timeout : float
        Socket timeout in seconds.
    progress : bool
        Show a tqdm progress bar.

    Outputs
    -------
    str
        The local path.

    Raises
    ------
    WeightsNotFoundError
        The URL cannot be reached (offline, host down, HTTP error).
    ChecksumError
        The downloaded bytes do not have the expected sha1; nothing is left behind.
    """
    from tqdm import tqdm
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, remote.name)
    if os.path.isfile(path) and sha1_of_file(path) == remote.sha1:
        _LOG.info('%s: present with the expected sha1, not downloaded again', path)
        return path
    _LOG.info('downloading %s -> %s', remote.url, path)
    try:
        response = urllib.request.urlopen(remote.url, timeout=timeout)  # noqa: S310
    except (urllib.error.URLError, socket.timeout, OSError) as err:
        reason = getattr(err, 'reason', err)
        raise WeightsNotFoundError(
            f'cannot download {remote.url} ({reason}); are you offline? Put {remote.name} '
            f'(sha1 {remote.sha1}) into {directory} by hand, or pass a mirror with '
            '--base-url') from None
    import hashlib
    digest = hashlib.sha1()
    total = response.headers.get('Content-Length')
    with response, atomic_write(path, 'wb') as fobj, \
            tqdm(total=int(total) if total else None, unit='B', unit_scale=True,
                 desc=remote.name, disable=not progress) as bar:
        try:
            for chunk in iter(lambda: response.read(1 << 16), b''):
                digest.update(chunk)
                fobj.write(chunk)
                bar.update(len(chunk))
        except (socket.timeout, OSError) as err:
            raise WeightsNotFoundError(f'download of {remote.url} broke off ({err}); nothing '
                                       f'was written to {path}') from None
        if digest.hexdigest() != remote.sha1:
            raise ChecksumError(f'{remote.url}: sha1 {digest.hexdigest()}, expected '
                                f'{remote.sha1}; the file was not written to {path}')
    return path


def download_mrpc(directory, base_url=None, sources=None, dev_ids=None, timeout=30.0,
                  progress=True):
    """Downloads MRPC into ``directory`` and builds GLUE's ``train.tsv``/``dev.tsv``/``test.tsv``.

    Parameters
    ----------
    directory : str
        Target directory (created if missing).
    base_url : str or None
        A mirror holding the files under their names (checked against the official sha1s).
    sources : sequence of RemoteFile or None
        Overrides the MSR files (tests serve fixtures from a local server with their own sha1s).
    dev_ids : RemoteFile or None or False
        Overrides the dev-ids file; False skips it.
    timeout : float
        Socket timeout in seconds.
    progress : bool
        Show progress bars.

    Outputs
    -------
    dict
        ``{'files': [local paths], 'split': description of the train/dev split}``.
    """
    default_sources, default_dev = mrpc_sources(base_url)
    sources = default_sources if sources is None else tuple(sources)
    dev_remote = default_dev if dev_ids is None else dev_ids
    paths = {f.name: download_file(f, directory, timeout, progress) for f in sources}
    dev_path = None
    if dev_remote:
        try:
            dev_path = download_file(dev_remote, directory, timeout, progress)
        except WeightsNotFoundError as err:
            _LOG.warning('GLUE dev ids unavailable (%s); load_mrpc will use a seeded split', err)
    train_raw = paths.get('msr_paraphrase_train.txt')
    test_raw = paths.get('msr_paraphrase_test.txt')
    written = list(paths.values()) + ([dev_path] if dev_path else [])
    split = 'seeded split by pair id at load time (GLUE dev ids not downloaded)'
    if train_raw and dev_path:
        train, dev = split_by_dev_ids(read_msr_paraphrase(train_raw), read_dev_ids(dev_path))
        write_mrpc_tsv(os.path.join(directory, 'train.tsv'), train)
        write_mrpc_tsv(os.path.join(directory, 'dev.tsv'), dev)
        written += [os.path.join(directory, 'train.tsv'), os.path.join(directory, 'dev.tsv')]
        split = f'GLUE split by dev_ids.tsv: {len(train)} train / {len(dev)} dev pairs'
    if test_raw:
        write_mrpc_tsv(os.path.join(directory, 'test.tsv'), read_msr_paraphrase(test_raw),
                       test=True)
        written.append(os.path.join(directory, 'test.tsv'))
    _LOG.info('MRPC in %s: %s', directory, split)
    return {'files': written, 'split': split}
