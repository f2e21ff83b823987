"""Pretrained weights and vocabularies of the GluonNLP 0.10 model zoo: :func:`get_model`.

``gluonbert.get_model('bert_12_768_12', dataset_name='book_corpus_wiki_en_uncased')`` is called
like ``gluonnlp.model.get_model`` and reads the same files from the same place:

* parameters ``<model>_<dataset>-<sha1[:8]>.params`` and vocabulary
  ``<dataset>-<sha1[:8]>.vocab`` in ``root`` (default ``$MXNET_HOME/models``, i.e.
  ``~/.mxnet/models``, the directory GluonNLP downloads to);
* the sha1 sums come from the tables of the installed GluonNLP
  (``mxnet.gluon.model_zoo.model_store._model_sha1``, which ``gluonnlp.model.bert`` fills, and
  ``gluonnlp.data.utils._vocab_sha1``), so a file GluonNLP accepts is accepted here.

A file that is present is checked (full sha1) and refused with :class:`ChecksumError` when it
differs. A file that is absent is downloaded with GluonNLP's downloader (the zip archive from the
Apache MXNet repository, ``$MXNET_GLUON_REPO`` when set); when that fails (offline), a
:class:`WeightsNotFoundError` names the file, the directory to put it in and its URL.
"""
import dataclasses
import os
import shutil
import tempfile
import warnings
import zipfile

import mxnet as mx

from ..errors import ChecksumError, ConfigError, WeightsNotFoundError
from .bert import BERTModel
from .config import get_config

__all__ = ['ZooFile', 'default_root', 'params_file', 'vocab_file', 'fetch', 'gluonnlp_downloader',
           'get_model']


@dataclasses.dataclass(frozen=True)
class ZooFile:
    """One file of the GluonNLP model zoo.

    Parameters
    ----------
    file_name : str
        Name in the local root, e.g. ``bert_12_768_12_book_corpus_wiki_en_uncased-75cc780f.params``.
    sha1 : str
        Full hex sha1 of the file.
    url : str
        The zip archive holding ``file_name``.
    entry : str
        The key of GluonNLP's sha1 table (for messages).
    """
    file_name: str
    sha1: str
    url: str
    entry: str


def default_root():
    """GluonNLP's download directory for models: ``$MXNET_HOME/models`` (``~/.mxnet/models``)."""
    from gluonnlp.base import get_home_dir
    return os.path.join(get_home_dir(), 'models')


def _repo_url():
    from mxnet.gluon.utils import _get_repo_url
    url = _get_repo_url()
    return url if url.endswith('/') else url + '/'


def _model_sha1_table():
    import gluonnlp.model.bert  # noqa: F401  (registers the BERT entries in model_store)
    from mxnet.gluon.model_zoo import model_store
    return model_store._model_sha1


def _vocab_sha1_table():
    from gluonnlp.data import utils as gluonnlp_data_utils
    return gluonnlp_data_utils._vocab_sha1


def params_file(model_name, dataset_name):
    """The zoo's parameter file of ``model_name`` pretrained on ``dataset_name``.

    Parameters
    ----------
    model_name : str
        E.g. ``'bert_12_768_12'``.
    dataset_name : str
        E.g. ``'book_corpus_wiki_en_uncased'``.

    Outputs
    -------
    ZooFile
    """
    table = _model_sha1_table()
    entry = f'{model_name}_{dataset_name}'
    if entry not in table:
        datasets = sorted(k[len(model_name) + 1:] for k in table
                          if k.startswith(model_name + '_'))
        raise ConfigError(f'no pretrained {model_name!r} for dataset_name={dataset_name!r} in '
                          f'the GluonNLP model zoo; expected one of {datasets}')
    sha1 = table[entry]
    stem = f'{entry}-{sha1[:8]}'
    return ZooFile(stem + '.params', sha1, f'{_repo_url()}gluon/models/{stem}.zip', entry)


def vocab_file(dataset_name):
    """The zoo's vocabulary file of ``dataset_name`` (GluonNLP ``BERTVocab`` JSON).

    Outputs
    -------
    ZooFile
    """
    table = _vocab_sha1_table()
    if dataset_name not in table:
        raise ConfigError(f'no vocabulary for dataset_name={dataset_name!r} in the GluonNLP '
                          f'model zoo; expected one of {sorted(table)}')
    sha1, ext = table[dataset_name][0], table[dataset_name][1]
    if ext != '.vocab':
        raise ConfigError(f'dataset_name={dataset_name!r} uses a {ext} (SentencePiece) '
                          'vocabulary; gluonbert reads WordPiece .vocab files only')
    stem = f'{dataset_name}-{sha1[:8]}'
    return ZooFile(stem + ext, sha1, f'{_repo_url()}gluon/dataset/vocab/{stem}.zip',
                   dataset_name)


def gluonnlp_downloader(url, member, path):
    """Downloads the zip archive ``url`` with GluonNLP's downloader and extracts ``member``.

    Parameters
    ----------
    url : str
        Zip archive of the GluonNLP model zoo.
    member : str
        File name inside the archive.
    path : str
        Where to write ``member`` (its directory exists).

    Raises ``OSError`` (``requests`` connection errors are ``OSError``) or ``RuntimeError``
    when the download fails.
    """
    from gluonnlp.data.utils import download  # GluonNLP's (MXNet's) downloader
    work = tempfile.mkdtemp(prefix='.download-', dir=os.path.dirname(os.path.abspath(path)))
    try:
        archive = download(url, path=os.path.join(work, member + '.zip'), overwrite=True,
                           retries=1)
        with zipfile.ZipFile(archive) as zf:
            if member not in zf.namelist():
                raise RuntimeError(f'{url} does not contain {member}')
            zf.extract(member, work)
        os.replace(os.path.join(work, member), path)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _remove(path):
    if os.path.isfile(path):
        os.remove(path)


def _check_sha1(path, zoo_file, downloaded=False):
    from ..data.fileio import sha1_of_file
    actual = sha1_of_file(path)
    if actual == zoo_file.sha1:
        return
    where = f'{zoo_file.url}, downloaded for {path},' if downloaded else path
    advice = ('the download was damaged or the archive changed: retry' if downloaded else
              f'the file is corrupt or a different version: delete it to download it again '
              f'from {zoo_file.url}')
    raise ChecksumError(f'{where} has sha1 {actual}, expected {zoo_file.sha1} (GluonNLP model '
                        f'zoo entry {zoo_file.entry!r}); {advice}')


def fetch(zoo_file, root=None, downloader=None):
    """The local path of a zoo file, downloaded first if absent; its sha1 is always checked.

    Parameters
    ----------
    zoo_file : ZooFile
        See :func:`params_file`, :func:`vocab_file`.
    root : str, optional
        Local directory (default :func:`default_root`).
    downloader : callable, optional
        ``downloader(url, member, path)`` writes ``member`` of the zip archive ``url`` to
        ``path``, raising ``OSError``/``RuntimeError`` on failure (default
        :func:`gluonnlp_downloader`). Tests inject their own.

    Outputs
    -------
    str
        ``root/zoo_file.file_name``, whose sha1 is ``zoo_file.sha1``.
    """
    root = os.path.abspath(os.path.expanduser(root if root is not None else default_root()))
    path = os.path.join(root, zoo_file.file_name)
    if os.path.isfile(path):
        _check_sha1(path, zoo_file)
        return path
    downloader = downloader or gluonnlp_downloader
    tmp = os.path.join(root, f'.{zoo_file.file_name}.part{os.getpid()}')
    try:
        os.makedirs(root, exist_ok=True)
        downloader(zoo_file.url, zoo_file.file_name, tmp)
        if not os.path.isfile(tmp):
            raise RuntimeError('the downloader wrote no file')
    except (OSError, RuntimeError, zipfile.BadZipFile) as err:
        _remove(tmp)
        raise WeightsNotFoundError(
            f'{zoo_file.file_name} is not in {root} and could not be downloaded from '
            f'{zoo_file.url} ({type(err).__name__}: {err}). Download that zip archive, extract '
            f'{zoo_file.file_name} into {root} (or pass root=...), then retry') from None
    try:
        _check_sha1(tmp, zoo_file, downloaded=True)
        os.replace(tmp, path)
    finally:
        _remove(tmp)
    return path


def _also_needed(weights, root):
    """The sentence naming the weights file too, when it is not in ``root`` either."""
    if weights is None:
        return ''
    root = os.path.abspath(os.path.expanduser(root if root is not None else default_root()))
    if os.path.isfile(os.path.join(root, weights.file_name)):
        return ''
    return (f'. The weights are not there either: pretrained=True also needs '
            f'{weights.file_name} (from {weights.url}) in {root}')


def get_model(name, dataset_name=None, vocab=None, pretrained=True, root=None, ctx=mx.cpu(),
              use_pooler=True, use_decoder=True, use_classifier=True,
              output_all_encodings=False, output_attention=False, kernels=False,
              inference=False, pretrained_allow_missing=False, ignore_extra=False,
              hparam_allow_override=None, downloader=None, **config_overrides):
    """A BERT model and its vocabulary, called like ``gluonnlp.model.get_model``.

    Parameters
    ----------
    name : str
        Configuration name (``'bert_12_768_12'``, ``'bert_24_1024_16'``, or any name of
        :func:`gluonbert.model.list_configs`).
    dataset_name : str, optional
        GluonNLP pretraining corpus (``'book_corpus_wiki_en_uncased'``, ...): selects the
        vocabulary and, with ``pretrained``, the weights. When given, ``vocab`` is ignored
        (with a warning), as in GluonNLP.
    vocab : gluonnlp.vocab.BERTVocab or str, optional
        Vocabulary (or its ``.vocab``/``vocab.txt`` path) when ``dataset_name`` is None.
    pretrained : bool
        Load the zoo weights (needs ``dataset_name``). Otherwise the parameters are left
        uninitialised, as in GluonNLP: call ``model.initialize()``.
    root : str, optional
        Directory of the zoo files (default ``$MXNET_HOME/models``).
    ctx : Context
        Where the pretrained weights go.
    use_pooler, use_decoder, use_classifier, output_all_encodings, output_attention : bool
    kernels, inference : bool
        See :class:`gluonbert.model.BERTModel`.
    pretrained_allow_missing : bool
        Leave parameters that the file lacks uninitialised instead of failing.
    ignore_extra : bool
        Ignore parameters of the file the model does not have (implied when a head is off).
    hparam_allow_override : bool, optional
        Accepted for GluonNLP call compatibility; overrides are always allowed here.
    downloader : callable, optional
        See :func:`fetch`.
    **config_overrides
        :class:`BERTConfig` fields to change (``dropout=0.0``, ...). ``vocab_size`` always
        comes from the vocabulary. GluonNLP's own hyper-parameters are taken where they mean
        what gluonbert's BERT does: ``embed_size`` (must equal ``units``) and
        ``word_embed=None``.

    Outputs
    -------
    (BERTModel, gluonnlp.vocab.BERTVocab)
    """
    del hparam_allow_override
    get_config(name)        # an unknown model name is the first thing to report
    embed_size = config_overrides.pop('embed_size', None)
    if config_overrides.pop('word_embed', None) is not None:
        raise ConfigError('get_model: word_embed (a GluonNLP embedding block to share) is not '
                          'supported; expected None (the model owns its word embedding)')
    if dataset_name is not None:
        if vocab is not None:
            warnings.warn('get_model: both dataset_name and vocab were given; using the '
                          f'vocabulary of dataset_name={dataset_name!r}', stacklevel=2)
        from ..data.tokenizer import vocab_from_json
        weights = params_file(name, dataset_name) if pretrained else None
        try:
            vocab_path = fetch(vocab_file(dataset_name), root, downloader)
        except WeightsNotFoundError as err:
            raise WeightsNotFoundError(f'{err}{_also_needed(weights, root)}') from None
        vocab = vocab_from_json(vocab_path)
    elif vocab is None:
        raise ConfigError('get_model: pass dataset_name (a GluonNLP pretraining corpus) or '
                          'vocab (a BERTVocab or a vocabulary file)')
    elif pretrained:
        raise ConfigError('get_model: pretrained=True needs dataset_name to select the '
                          'weights; pass pretrained=False to build an untrained model')
    from ..data.tokenizer import as_vocab
    vocab = as_vocab(vocab)
    if config_overrides.get('vocab_size', len(vocab)) != len(vocab):
        raise ConfigError(f"get_model: vocab_size={config_overrides['vocab_size']} but the "
                          f'vocabulary has {len(vocab)} tokens; vocab_size comes from the '
                          'vocabulary')
    config_overrides['vocab_size'] = len(vocab)
    try:
        config = get_config(name, **config_overrides)
    except TypeError:
        fields = sorted(f.name for f in dataclasses.fields(get_config(name)))
        unknown = sorted(set(config_overrides) - set(fields))
        raise ConfigError(f'get_model: unknown arguments {unknown}; expected BERTConfig '
                          f'fields {fields}') from None
    if embed_size is not None and embed_size != config.units:
        raise ConfigError(f'get_model: embed_size={embed_size} but units={config.units}; '
                          'expected embed_size == units (BERT embeds at its own width)')
    params_path = None
    if pretrained:
        params_path = fetch(params_file(name, dataset_name), root, downloader)
    model = BERTModel(config, use_pooler=use_pooler, use_decoder=use_decoder,
                      use_classifier=use_classifier, output_all_encodings=output_all_encodings,
                      output_attention=output_attention, kernels=kernels, inference=inference)
    if params_path is not None:
        all_heads = use_pooler and use_decoder and use_classifier
        model.load_parameters(params_path, ctx=ctx, allow_missing=pretrained_allow_missing,
                              ignore_extra=ignore_extra or not all_heads)
    return model, vocab
