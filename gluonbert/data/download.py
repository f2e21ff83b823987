"""``gluonbert download mrpc|wikitext-2``: fetch a data set, check its sha1s, lay it out.

``wikitext-2``: GluonNLP 0.10's ``WikiText2`` archive (``wikitext-2-v1.zip``, Salesforce's
word-level release, mirrored on MXNet's S3), sha1-checked, then its ``wiki.train/valid/test.tokens``
are extracted as ``train.txt``/``valid.txt``/``test.txt`` (each checked against GluonNLP's sha1),
the layout :func:`~gluonbert.data.corpus.iter_documents` and ``gluonbert pretrain`` read.

``mrpc``: the MSR Paraphrase Corpus and GLUE's MRPC files.

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
import zipfile

from ..errors import ChecksumError, DataFormatError, WeightsNotFoundError
from .fileio import atomic_write, sha1_of_file
from .glue import read_dev_ids, read_msr_paraphrase, split_by_dev_ids, write_mrpc_tsv

__all__ = ['RemoteFile', 'MRPC_SOURCES', 'MRPC_DEV_IDS', 'WIKITEXT2_ARCHIVE', 'WIKITEXT2_FILES',
           'download_file', 'download_mrpc', 'mrpc_sources', 'download_wikitext2']

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
    stale = ''
    if os.path.isfile(path):
        present = sha1_of_file(path)
        if present == remote.sha1:
            _LOG.info('%s: present with the expected sha1, not downloaded again', path)
            return path
        stale = (f'{path} is in place but its sha1 {present} differs from the expected '
                 f'{remote.sha1}')
        _LOG.warning('%s; downloading it again', stale)
        stale = f' ({stale}: replace it)'
    _LOG.info('downloading %s -> %s', remote.url, path)
    try:
        response = urllib.request.urlopen(remote.url, timeout=timeout)  # noqa: S310
    except (urllib.error.URLError, socket.timeout, OSError) as err:
        reason = getattr(err, 'reason', err)
        raise WeightsNotFoundError(
            f'cannot download {remote.url} ({reason}); are you offline? Put {remote.name} '
            f'(sha1 {remote.sha1}) into {directory} by hand, or pass a mirror with '
            f'--base-url{stale}') from None
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
                                f'{remote.sha1}; the file was not written to {path}{stale}')
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


#: WikiText-2 (word level, ``<unk>`` kept): the archive GluonNLP 0.10's ``WikiText2`` fetches,
#: with its URL and sha1. The original release is Salesforce's
#: ``https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip``.
WIKITEXT2_ARCHIVE = RemoteFile(
    'wikitext-2-v1.zip',
    'https://apache-mxnet.s3-accelerate.dualstack.amazonaws.com/gluon/dataset/wikitext-2/'
    'wikitext-2-v1.zip',
    '3c914d17d80b1459be871a5039ac23e752a53cbe')

#: Archive member (base name) -> (local file name, sha1), GluonNLP's sha1s of the splits.
WIKITEXT2_FILES = {
    'wiki.train.tokens': ('train.txt', '863f29c46ef9d167fff4940ec821195882fe29d1'),
    'wiki.valid.tokens': ('valid.txt', '0418625c8b4da6e4b5c7a0b9e78d4ae8f7ee5422'),
    'wiki.test.tokens': ('test.txt', 'c7b8ce0aa086fb34dab808c5c49224211eb2b172'),
}


def _extract_checked(zip_path, member, target, sha1):
    """Copies one archive member (found by base name) to ``target`` if its sha1 matches."""
    import hashlib
    with zipfile.ZipFile(zip_path) as archive:
        names = [n for n in archive.namelist() if os.path.basename(n) == member]
        if not names:
            raise DataFormatError(zip_path, None, f'no member named {member}; expected the '
                                  f'WikiText-2 archive with {sorted(WIKITEXT2_FILES)}')
        digest = hashlib.sha1()
        with archive.open(names[0]) as source, atomic_write(target, 'wb') as fobj:
            for chunk in iter(lambda: source.read(1 << 20), b''):
                digest.update(chunk)
                fobj.write(chunk)
            if digest.hexdigest() != sha1:
                raise ChecksumError(f'{zip_path}: member {names[0]} has sha1 '
                                    f'{digest.hexdigest()}, expected {sha1}; {target} was not '
                                    'written')
    return target


def download_wikitext2(directory, base_url=None, archive=None, files=None, timeout=30.0,
                       progress=True):
    """Downloads WikiText-2 into ``directory`` as ``train.txt``, ``valid.txt``, ``test.txt``.

    Split files already in place with the expected sha1 are kept and nothing is fetched; the
    archive is kept beside them (a second call, or a copy put there by hand when offline,
    only extracts).

    Parameters
    ----------
    directory : str
        Target directory (created if missing).
    base_url : str or None
        A mirror holding ``wikitext-2-v1.zip`` (checked against the official sha1).
    archive : RemoteFile or None
        Overrides the archive (tests serve a fixture with its own sha1).
    files : dict or None
        Overrides :data:`WIKITEXT2_FILES` (member -> (local name, sha1)).
    timeout : float
        Socket timeout in seconds.
    progress : bool
        Show a progress bar.

    Outputs
    -------
    dict
        ``{'files': [split paths], 'archive': path of the zip or None when not needed}``.

    Raises
    ------
    WeightsNotFoundError
        Offline: the message names the archive, its sha1 and the directory to put it in.
    ChecksumError
        The archive or a member has another sha1 than expected; nothing is written under the
        final name.
    """
    files = WIKITEXT2_FILES if files is None else files
    remote = archive or WIKITEXT2_ARCHIVE
    if archive is None and base_url is not None:
        base = base_url if base_url.endswith('/') else base_url + '/'
        remote = dataclasses.replace(remote, url=base + remote.name)
    targets = {member: os.path.join(directory, name) for member, (name, _) in files.items()}
    wrong = {}
    for member, target in targets.items():
        if os.path.isfile(target):
            present = sha1_of_file(target)
            if present != files[member][1]:
                wrong[member] = present
                _LOG.warning('%s is in place but its sha1 %s differs from the expected %s; '
                             'it will be replaced from %s', target, present, files[member][1],
                             remote.name)
    if all(os.path.isfile(t) for t in targets.values()) and not wrong:
        _LOG.info('WikiText-2 in %s: every split present with the expected sha1', directory)
        return {'files': list(targets.values()), 'archive': None}
    zip_path = download_file(remote, directory, timeout, progress)
    for member, target in targets.items():
        _extract_checked(zip_path, member, target, files[member][1])
    _LOG.info('WikiText-2 in %s: %s', directory, ', '.join(sorted(targets.values())))
    return {'files': list(targets.values()), 'archive': zip_path}
