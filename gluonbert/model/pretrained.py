"""Pretrained BERT weights, whatever wrote them: one place that finds the files of a directory
(:func:`locate`) and builds the model from them (:func:`build`, :func:`load_pretrained`).

A directory is one of four kinds:

``huggingface``
    ``config.json``, ``model.safetensors`` (or ``pytorch_model.bin``) and ``vocab.txt``: read
    and renamed in memory (:func:`~gluonbert.model.convert.hf_to_gluon_arrays`), nothing is
    written. ``gluonbert finetune --hf-dir`` converts once into a cache instead
    (:func:`converted_hf_dir`).
``converted``
    Written by ``gluonbert convert --from-hf``: ``model.params``, ``gluonbert_config.json``,
    ``model.vocab``/``vocab.txt``.
``pretraining``
    A ``gluonbert pretrain`` run: ``gluonbert_config.json``, ``vocab.txt``, and
    ``model.params`` or, for a run still going or stopped, ``checkpoints/step-*`` (the newest
    valid one); or one ``step-*`` directory.
``finetuned``
    A ``gluonbert finetune`` run: ``finetune.json``, ``vocab.txt``, and ``model.params`` (the
    best epoch) or ``checkpoints/step-*``; its encoder is the classifier's ``bert.*``.

The model gets the heads asked for: ``True`` requires the head, ``False`` leaves it out,
``None`` takes it when the checkpoint has it. Fine-tuning starts from the encoder with the
pooler; a checkpoint without pooler weights (a sentence-embedding model) then gets a freshly
initialised pooler (``fresh_pooler``). The GluonNLP model zoo is the fifth origin of fine-tuning
(:func:`load_backbone`), by name (:func:`gluonbert.model.get_model`).
"""
import dataclasses
import json
import os

import mxnet as mx

from ..errors import CheckpointError, ConfigError, WeightsNotFoundError
from .config import BERTConfig

__all__ = ['Backbone', 'Checkpoint', 'FINETUNE_INFO', 'read_finetune_info', 'locate', 'build',
           'load_pretrained', 'check_source', 'source_config', 'load_backbone',
           'converted_hf_dir']

#: The description file of a fine-tuned run (written by ``gluonbert finetune``).
FINETUNE_INFO = 'finetune.json'

#: Keys of ``finetune.json`` that are read back, with their JSON types.
_INFO_KEYS = {'bert': dict, 'task': dict, 'lower': bool, 'max_seq_length': int,
              'dropout': (int, float)}

#: What each optional head is, for messages.
_HEAD_NAMES = {'pooler': 'pooler (pooler.*)', 'decoder': 'masked-LM head (decoder.*)',
               'classifier': 'next-sentence head (classifier.*)'}

_KINDS = ('a HuggingFace BERT directory (config.json, model.safetensors or pytorch_model.bin, '
          'vocab.txt), a directory written by gluonbert convert, a gluonbert pretrain or '
          'finetune run directory, or one of their checkpoints/step-* directories')


@dataclasses.dataclass
class Backbone:
    """A pretrained BERT and how to feed it.

    Attributes
    ----------
    bert : BERTModel
        With the heads :func:`build` was asked for.
    vocab : gluonnlp.vocab.BERTVocab
    lower : bool
        Lower-case text before WordPiece.
    source : str
        Where the weights came from (for logs).
    heads : tuple of str
        Heads of ``bert`` among ``'pooler'``, ``'decoder'`` (MLM), ``'classifier'`` (NSP).
    """
    bert: object
    vocab: object
    lower: bool
    source: str
    heads: tuple = ()


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """Where the files of a pretrained BERT are (see :func:`locate`).

    Attributes
    ----------
    kind : str
        ``'huggingface'``, ``'converted'``, ``'pretraining'`` or ``'finetuned'``.
    directory : str
        The directory holding the configuration and the vocabulary.
    weights : str
        The parameter file (a HuggingFace weight file for ``'huggingface'``).
    config : BERTConfig
    vocab : str
        The vocabulary file.
    lower : bool
        Whether the tokenizer lower-cases.
    prefix : str
        Name prefix of the encoder's parameters in ``weights`` (``'bert.'`` for a fine-tuned
        classifier, ``''`` otherwise).
    """
    kind: str
    directory: str
    weights: str
    config: BERTConfig
    vocab: str
    lower: bool
    prefix: str = ''


def read_finetune_info(path):
    """``finetune.json``, with a :class:`ConfigError` naming the file, the line and what is
    wrong when it is not the JSON ``gluonbert finetune`` writes."""
    try:
        with open(path, encoding='utf-8') as f:
            info = json.load(f)
    except json.JSONDecodeError as err:
        raise ConfigError(f'{path}:{err.lineno}: not valid JSON ({err.msg}, column {err.colno}); '
                          'expected the finetune.json written by gluonbert finetune') from None
    except UnicodeDecodeError as err:
        raise ConfigError(f'{path}: not UTF-8 text ({err.reason} at byte {err.start}); '
                          'expected the finetune.json written by gluonbert finetune') from None
    if not isinstance(info, dict):
        raise ConfigError(f'{path}: holds a JSON {type(info).__name__}; expected an object '
                          f'with the keys {sorted(_INFO_KEYS)}')
    for key, kind in _INFO_KEYS.items():
        if not isinstance(info.get(key), kind):
            raise ConfigError(f'{path}: "{key}" is {info.get(key)!r}; expected a JSON '
                              f'{getattr(kind, "__name__", "number")} (written by gluonbert '
                              'finetune)')
    labels = info['task'].get('labels')
    if not (isinstance(labels, list) and labels and all(isinstance(x, str) for x in labels)):
        raise ConfigError(f'{path}: "task.labels" is {labels!r}; expected a list of label '
                          'strings')
    from ..data.tasks import TaskSpec
    unknown = set(info['task']) - {f.name for f in dataclasses.fields(TaskSpec)}
    if unknown:
        raise ConfigError(f'{path}: "task" has unknown keys {sorted(unknown)}; expected those '
                          'of gluonbert.data.tasks.TaskSpec')
    return info


def _run_task(directory):
    """The task recorded in a run directory's ``run.json`` (None without one)."""
    from ..runs import RUN_FILE
    try:
        with open(os.path.join(directory, RUN_FILE), encoding='utf-8') as f:
            return json.load(f).get('task')
    except (OSError, ValueError, AttributeError):
        return None


def _weights_of(directory):
    """``model.params`` of a run or model directory, else its newest valid checkpoint's."""
    from ..runs import find_latest
    final = os.path.join(directory, 'model.params')
    if os.path.isfile(final):
        return final
    latest = find_latest(os.path.join(directory, 'checkpoints'))
    if latest is None:
        raise WeightsNotFoundError(f'{directory}: neither model.params nor a valid '
                                   'checkpoints/step-* directory; expected ' + _KINDS)
    return os.path.join(latest, 'model.params')


def _describe(directory, weights):
    """The :class:`Checkpoint` of a gluonbert directory whose parameter file is ``weights``."""
    from ..data import infer_lower_case
    from .convert import CONFIG_FILE, VOCAB_JSON_FILE, VOCAB_TXT_FILE, read_config
    info_path = os.path.join(directory, FINETUNE_INFO)
    vocab_txt = os.path.join(directory, VOCAB_TXT_FILE)
    if os.path.isfile(info_path):
        info = read_finetune_info(info_path)
        if not os.path.isfile(vocab_txt):
            raise WeightsNotFoundError(f'{vocab_txt}: not found; expected the vocabulary '
                                       'beside finetune.json (written by gluonbert finetune)')
        return Checkpoint('finetuned', directory, weights,
                          BERTConfig.from_dict(info['bert'], source=info_path), vocab_txt,
                          info['lower'], prefix='bert.')
    if _run_task(directory) == 'finetune':
        raise WeightsNotFoundError(f'{info_path}: not found; expected the description of this '
                                   'fine-tuning run (gluonbert finetune writes it when the run '
                                   'starts; a run made by an older gluonbert has it only after '
                                   'its first epoch)')
    config_path = os.path.join(directory, CONFIG_FILE)
    if not os.path.isfile(config_path):
        raise WeightsNotFoundError(f'{directory}: no {CONFIG_FILE} or {FINETUNE_INFO}; '
                                   'expected ' + _KINDS)
    vocab = os.path.join(directory, VOCAB_JSON_FILE)
    if not os.path.isfile(vocab):
        vocab = vocab_txt
    if not os.path.isfile(vocab):
        raise WeightsNotFoundError(f'{vocab_txt}: not found; expected the vocabulary beside '
                                   f'{config_path}')
    run = _run_task(directory) or os.path.isdir(os.path.join(directory, 'checkpoints'))
    return Checkpoint('pretraining' if run else 'converted', directory, weights,
                      read_config(config_path), vocab, infer_lower_case(directory) is not False)


def _describe_hf(directory):
    from ..data import infer_lower_case
    from .convert_hf import find_weights_file
    config = BERTConfig.from_hf_config(os.path.join(directory, 'config.json'))
    vocab = os.path.join(directory, 'vocab.txt')
    if not os.path.isfile(vocab):
        raise WeightsNotFoundError(f'{vocab}: no such file; expected the WordPiece vocabulary '
                                   'of the HuggingFace model')
    return Checkpoint('huggingface', directory, find_weights_file(directory), config, vocab,
                      infer_lower_case(directory) is not False)


def locate(path):
    """Finds the configuration, vocabulary and weights of a pretrained BERT directory.

    Parameters
    ----------
    path : str
        A HuggingFace directory, a ``gluonbert convert`` output, a pretraining or fine-tuning
        run directory (its ``model.params``, else its newest valid checkpoint), or one
        ``checkpoints/step-*`` directory of such a run.

    Outputs
    -------
    Checkpoint
    """
    from .convert import CONFIG_FILE
    path = os.path.abspath(os.fspath(path))
    if not os.path.isdir(path):
        raise WeightsNotFoundError(f'{path}: no such directory; expected ' + _KINDS)
    if os.path.isfile(os.path.join(path, 'meta.json')):               # one step-* checkpoint
        return _describe(os.path.dirname(os.path.dirname(path)),
                         os.path.join(path, 'model.params'))
    ours = any(os.path.isfile(os.path.join(path, name)) for name in (CONFIG_FILE, FINETUNE_INFO))
    if os.path.isfile(os.path.join(path, 'config.json')) and not ours:
        return _describe_hf(path)
    return _describe(path, _weights_of(path))


def _read_arrays(checkpoint):
    """The encoder's arrays of a checkpoint, keyed by gluonbert/GluonNLP names."""
    from . import checkpoint as params_io
    if checkpoint.kind == 'huggingface':
        from .convert import hf_to_gluon_arrays
        from .convert_hf import read_hf_weights
        arrays = hf_to_gluon_arrays(read_hf_weights(checkpoint.weights), checkpoint.config,
                                    source=checkpoint.weights, ignore_extra=True)
        return {name: mx.nd.array(value) for name, value in arrays.items()}
    arrays = params_io.read_params(checkpoint.weights)
    if checkpoint.prefix:
        arrays = {name[len(checkpoint.prefix):]: value for name, value in arrays.items()
                  if name.startswith(checkpoint.prefix)}
        if not arrays:
            raise CheckpointError(f'{checkpoint.weights}: no {checkpoint.prefix}* parameters; '
                                  'expected the BERTClassifier that gluonbert finetune saves')
    return arrays


def build(checkpoint, use_pooler=None, use_decoder=None, use_classifier=None, dropout=None,
          ctx=None, fresh_pooler=False, kernels=False, inference=False):
    """Builds the BERTModel of a :class:`Checkpoint` and loads its weights.

    Parameters
    ----------
    checkpoint : Checkpoint or str
        What :func:`locate` found, or a path for it.
    use_pooler, use_decoder, use_classifier : bool or None
        True: the head is required (an error names the file when it lacks it); False: left
        out; None: included when the checkpoint has it.
    dropout : float or None
        Overrides the configuration's dropout (for fine-tuning).
    ctx : Context or list of Context
        Where the parameters go (default CPU).
    fresh_pooler : bool
        With ``use_pooler=True``, a checkpoint without pooler weights gets a freshly
        initialised pooler instead of an error.
    kernels, inference : bool
        See :class:`~gluonbert.model.BERTModel` (gluonbert's CPU kernels; forward only).

    Outputs
    -------
    Backbone
    """
    from ..data import load_vocab
    from .bert import BERTModel
    from .checkpoint import load_parameters
    from .convert import _heads_of
    from .init import TruncNorm
    if not isinstance(checkpoint, Checkpoint):
        checkpoint = locate(checkpoint)
    arrays = _read_arrays(checkpoint)
    available = _heads_of(arrays)
    heads = []
    for head, wanted in (('pooler', use_pooler), ('decoder', use_decoder),
                         ('classifier', use_classifier)):
        missing_ok = head == 'pooler' and fresh_pooler
        if wanted and head not in available and not missing_ok:
            raise CheckpointError(f'{checkpoint.weights} has no {_HEAD_NAMES[head]}; expected '
                                  f'a checkpoint with it, or a model built without it '
                                  f'(use_{head}=False)')
        if wanted or (wanted is None and head in available):
            heads.append(head)
    if 'classifier' in heads and 'pooler' not in heads:
        heads.insert(0, 'pooler')          # the NSP head reads the pooled vector
    config = checkpoint.config
    if dropout is not None:
        config = config.replace(dropout=dropout)
    bert = BERTModel(config, use_pooler='pooler' in heads, use_decoder='decoder' in heads,
                     use_classifier='classifier' in heads, kernels=kernels, inference=inference)
    load_parameters(bert, arrays, ctx=ctx, allow_missing=fresh_pooler, ignore_extra=True,
                    source=checkpoint.weights)
    names = bert._collect_params_with_prefix()
    missing = [name for name, p in names.items() if p._data is None and p._deferred_init == ()]
    if any(not name.startswith('pooler.') for name in missing):
        raise CheckpointError(f'{checkpoint.weights} lacks encoder parameters: {missing[:5]}')
    for name in missing:        # no pooler in the file: a fresh one, as for a new head
        names[name].initialize(init=TruncNorm(0.02) if name.endswith('weight')
                               else mx.init.Zero(), ctx=ctx or mx.cpu())
    vocab = load_vocab(checkpoint.vocab)
    # More tokens than embedding rows: ids the model cannot embed. (Fewer is allowed for
    # gluonbert's files, e.g. a table padded to a multiple of 8; the HF reader demands the
    # equality gluonbert convert demands.)
    if len(vocab) > config.vocab_size or (checkpoint.kind == 'huggingface'
                                          and len(vocab) != config.vocab_size):
        raise CheckpointError(f'{checkpoint.vocab} has {len(vocab)} tokens but the model has '
                              f'vocab_size={config.vocab_size}; expected the vocabulary it was '
                              'trained with')
    return Backbone(bert, vocab, checkpoint.lower, checkpoint.weights, tuple(heads))


def load_pretrained(path, use_pooler=None, use_decoder=None, use_classifier=None, ctx=None,
                    kernels=False, inference=False):
    """A pretrained BERT and its vocabulary from a directory, as :func:`get_model` returns
    them from the model zoo.

    Parameters
    ----------
    path : str
        A HuggingFace BERT directory (read in memory), a ``gluonbert convert`` output, or a
        gluonbert pretraining or fine-tuning run (or one of its ``step-*`` checkpoints).
    use_pooler, use_decoder, use_classifier : bool or None
        Heads, as for :func:`build` (None: those the checkpoint has).
    ctx : Context or list of Context
    kernels, inference : bool
        See :class:`~gluonbert.model.BERTModel`.

    Outputs
    -------
    (BERTModel, gluonnlp.vocab.BERTVocab)

    Example
    -------
    >>> net, vocab = load_pretrained('all-MiniLM-L6-v2/', use_decoder=False)  # doctest: +SKIP
    """
    backbone = build(locate(path), use_pooler, use_decoder, use_classifier, ctx=ctx,
                     kernels=kernels, inference=inference)
    return backbone.bert, backbone.vocab


def converted_hf_dir(hf_dir, cache_dir):
    """Converts a HuggingFace directory into ``cache_dir`` unless an up-to-date copy is there.

    Outputs
    -------
    str
        ``cache_dir``, holding ``model.params``, ``model.vocab``, ``vocab.txt`` and
        ``gluonbert_config.json``.
    """
    from ..data.fileio import atomic_write
    from .convert import CONFIG_FILE, convert_hf_to_gluon
    from .convert_hf import find_weights_file
    weights = find_weights_file(hf_dir)
    stamp = {'hf_dir': os.path.abspath(hf_dir), 'weights': os.path.basename(weights),
             'bytes': os.path.getsize(weights), 'mtime': int(os.path.getmtime(weights))}
    stamp_path = os.path.join(cache_dir, 'source.json')
    if os.path.isfile(stamp_path) and os.path.isfile(os.path.join(cache_dir, CONFIG_FILE)):
        with open(stamp_path, encoding='utf-8') as f:
            if json.load(f) == stamp:
                return cache_dir
    convert_hf_to_gluon(hf_dir, cache_dir, ignore_extra=True)
    with atomic_write(stamp_path) as f:
        json.dump(stamp, f)
    return cache_dir


def check_source(config):
    """Raises :class:`ConfigError` unless ``config`` names a starting point."""
    if not (config.model or config.hf_dir or config.from_converted
            or config.pretrained_checkpoint):
        raise ConfigError('fine-tuning needs a starting point: --model NAME (--dataset NAME), '
                          '--hf-dir DIR, --from-converted DIR or --pretrained-checkpoint PATH')


def source_config(config):
    """The :class:`~gluonbert.model.BERTConfig` of the starting point a
    :class:`~gluonbert.train.config.FinetuneConfig` names, read without loading or converting
    any weights (fine-tuning checks its sizes before it writes anything); a missing directory
    or file is an error naming it."""
    check_source(config)
    if config.model:
        from .config import get_config
        return get_config(config.model)
    return locate(config.hf_dir or config.from_converted or config.pretrained_checkpoint).config


def load_backbone(config, kernels=False):
    """The encoder (with the pooler, without pretraining heads) named by a
    :class:`~gluonbert.train.config.FinetuneConfig`, built with ``kernels`` (see
    :class:`~gluonbert.model.BERTModel`).

    Outputs
    -------
    Backbone
    """
    check_source(config)
    if config.model:
        from .zoo import get_model
        bert, vocab = get_model(config.model, dataset_name=config.dataset, use_pooler=True,
                                use_decoder=False, use_classifier=False, kernels=kernels,
                                dropout=config.dropout)
        return Backbone(bert, vocab, 'uncased' in config.dataset,
                        f'{config.model}/{config.dataset}', ('pooler',))
    if config.hf_dir:
        cache = config.cache_dir or os.path.join(config.out_dir, 'converted')
        path = converted_hf_dir(config.hf_dir, cache)
    else:
        path = config.from_converted or config.pretrained_checkpoint
    return build(locate(path), use_pooler=True, use_decoder=False, use_classifier=False,
                 dropout=config.dropout, fresh_pooler=True, kernels=kernels)
