"""The pretrained encoder a fine-tuning run starts from, whatever its origin.

Four origins give the same thing, a :class:`Backbone` (a ``BERTModel`` with the pooler and
without pretraining heads, its vocabulary and its casing):

* the GluonNLP model zoo: ``model`` + ``dataset`` (:func:`gluonbert.get_model`);
* a HuggingFace directory, converted once into a cache directory
  (:func:`~gluonbert.model.convert.convert_hf_to_gluon`);
* a directory already written by ``gluonbert convert``;
* a gluonbert pretraining run (its final ``model.params``, or a ``step-*`` checkpoint).

A checkpoint without pooler weights (e.g. a sentence-embedding model) gets a freshly
initialised pooler; any other missing parameter is an error.
"""
import dataclasses
import json
import os

import mxnet as mx

from ..errors import CheckpointError, ConfigError, WeightsNotFoundError

__all__ = ['Backbone', 'check_source', 'source_config', 'load_backbone', 'from_files',
           'converted_hf_dir']


@dataclasses.dataclass
class Backbone:
    """A pretrained encoder ready for a task head.

    Attributes
    ----------
    bert : BERTModel
        ``use_pooler=True``, no MLM/NSP heads, parameters on the CPU.
    vocab : gluonnlp.vocab.BERTVocab
    lower : bool
        Lower-case text before WordPiece.
    source : str
        Where the weights came from (for logs).
    """
    bert: object
    vocab: object
    lower: bool
    source: str


def _encoder_only(config, dropout, kernels):
    from . import BERTModel
    return BERTModel(config.replace(dropout=dropout), use_pooler=True, use_decoder=False,
                     use_classifier=False, kernels=kernels)


def from_files(params_path, config, vocab_path, lower, dropout, source, kernels=False):
    """Builds the encoder from a ``.params`` file, a BERTConfig and a vocabulary file
    (``kernels``: see :class:`~gluonbert.model.BERTModel`)."""
    from ..data import load_vocab
    from .checkpoint import load_parameters
    from .init import TruncNorm
    if not os.path.isfile(params_path):
        raise WeightsNotFoundError(f'{params_path}: no such parameter file')
    bert = _encoder_only(config, dropout, kernels)
    # CheckpointError naming the file when it is truncated or does not fit
    load_parameters(bert, params_path, allow_missing=True, ignore_extra=True)
    missing = [name for name, p in bert._collect_params_with_prefix().items()
               if p._data is None and p._deferred_init == ()]
    if any(not name.startswith('pooler.') for name in missing):
        raise CheckpointError(f'{params_path} lacks encoder parameters: {missing[:5]}')
    for name in missing:        # no pooler in the file: a fresh one, as for a new head
        bert._collect_params_with_prefix()[name].initialize(
            init=TruncNorm(0.02) if name.endswith('weight') else mx.init.Zero(), ctx=mx.cpu())
    return Backbone(bert, load_vocab(vocab_path), lower, source)


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


def _from_converted(directory, dropout, kernels):
    from ..data import infer_lower_case
    from .convert import CONFIG_FILE, PARAMS_FILE, VOCAB_JSON_FILE, read_config
    config = read_config(os.path.join(directory, CONFIG_FILE))
    vocab = os.path.join(directory, VOCAB_JSON_FILE)
    lower = infer_lower_case(directory)
    return from_files(os.path.join(directory, PARAMS_FILE), config,
                      vocab if os.path.isfile(vocab) else directory,
                      True if lower is None else lower, dropout, directory, kernels)


def _pretraining_files(path):
    """``(params, gluonbert_config.json, vocab.txt, run directory)`` of a pretraining run
    directory or one of its ``step-*`` checkpoints; a missing one is an error."""
    from ..runs import find_latest
    path = os.path.abspath(path)
    if os.path.isfile(os.path.join(path, 'meta.json')):           # a step-* checkpoint
        params, run_dir = os.path.join(path, 'model.params'), os.path.dirname(
            os.path.dirname(path))
    elif os.path.isfile(os.path.join(path, 'model.params')):      # a finished run
        params, run_dir = os.path.join(path, 'model.params'), path
    else:
        latest = find_latest(os.path.join(path, 'checkpoints'))
        if latest is None:
            raise WeightsNotFoundError(f'{path}: neither model.params nor a valid checkpoint; '
                                       'expected a gluonbert pretraining run directory')
        params, run_dir = os.path.join(latest, 'model.params'), path
    config_path = os.path.join(run_dir, 'gluonbert_config.json')
    vocab_path = os.path.join(run_dir, 'vocab.txt')
    for needed in (config_path, vocab_path):
        if not os.path.isfile(needed):
            raise WeightsNotFoundError(f'{needed}: not found; expected the pretraining run '
                                       'directory to hold its config and vocabulary')
    return params, config_path, vocab_path, run_dir


def _from_pretraining(path, dropout, kernels):
    """A pretraining run directory or one of its ``step-*`` checkpoint directories."""
    from .convert import read_config
    params, config_path, vocab_path, run_dir = _pretraining_files(path)
    from ..data import infer_lower_case
    lower = infer_lower_case(run_dir)
    return from_files(params, read_config(config_path), vocab_path, lower is not False, dropout,
                      params, kernels)


def source_config(config):
    """The :class:`~gluonbert.model.BERTConfig` of the starting point a
    :class:`~gluonbert.train.config.FinetuneConfig` names, read without loading or converting
    any weights (fine-tuning checks its sizes before it writes anything); a missing directory
    or file is an error naming it."""
    from .convert import CONFIG_FILE, PARAMS_FILE, read_config
    check_source(config)
    if config.model:
        from .config import get_config
        return get_config(config.model)
    if config.hf_dir:
        from .config import BERTConfig
        from .convert_hf import find_weights_file
        if not os.path.isdir(config.hf_dir):
            raise WeightsNotFoundError(f'--hf-dir {config.hf_dir}: no such directory; expected '
                                       'a HuggingFace BERT directory (config.json and its '
                                       'weights)')
        find_weights_file(config.hf_dir)
        return BERTConfig.from_hf_config(config.hf_dir)
    if config.from_converted:
        for name in (CONFIG_FILE, PARAMS_FILE):
            path = os.path.join(config.from_converted, name)
            if not os.path.isfile(path):
                raise WeightsNotFoundError(f'--from-converted {path}: not found; expected a '
                                           'directory written by gluonbert convert')
        return read_config(os.path.join(config.from_converted, CONFIG_FILE))
    return read_config(_pretraining_files(config.pretrained_checkpoint)[1])


def check_source(config):
    """Raises :class:`ConfigError` unless ``config`` names a starting point."""
    if not (config.model or config.hf_dir or config.from_converted
            or config.pretrained_checkpoint):
        raise ConfigError('fine-tuning needs a starting point: --model NAME --dataset NAME, '
                          '--hf-dir DIR, --from-converted DIR or --pretrained-checkpoint PATH')


def load_backbone(config, kernels=False):
    """The encoder named by a :class:`~gluonbert.train.config.FinetuneConfig`, built with
    ``kernels`` (see :class:`~gluonbert.model.BERTModel`).

    Outputs
    -------
    Backbone
    """
    if config.model:
        from .zoo import get_model
        bert, vocab = get_model(config.model, dataset_name=config.dataset, use_pooler=True,
                                use_decoder=False, use_classifier=False, kernels=kernels,
                                dropout=config.dropout)
        return Backbone(bert, vocab, 'uncased' in config.dataset,
                        f'{config.model}/{config.dataset}')
    if config.hf_dir:
        cache = config.cache_dir or os.path.join(config.out_dir, 'converted')
        return _from_converted(converted_hf_dir(config.hf_dir, cache), config.dropout, kernels)
    if config.from_converted:
        return _from_converted(config.from_converted, config.dropout, kernels)
    if config.pretrained_checkpoint:
        return _from_pretraining(config.pretrained_checkpoint, config.dropout, kernels)
    check_source(config)
