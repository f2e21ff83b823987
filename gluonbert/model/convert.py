"""Conversion between HuggingFace BERT directories and gluonbert (GluonNLP 0.10) checkpoints.

``convert_hf_to_gluon(hf_dir, out_dir)`` reads a HuggingFace directory (``config.json``,
``model.safetensors`` or ``pytorch_model.bin``, ``vocab.txt``) and writes::

    out_dir/model.params            MXNet parameters under GluonNLP 0.10 names
    out_dir/model.vocab             the vocabulary as GluonNLP BERTVocab JSON
    out_dir/vocab.txt               the same vocabulary, one token per line (id = line - 1)
    out_dir/gluonbert_config.json   BERTConfig fields
    out_dir/tokenizer_config.json   do_lower_case, when the source says

``convert_gluon_to_hf(params, vocab, out_dir)`` writes the reverse: ``config.json``,
``model.safetensors`` and ``vocab.txt`` that ``transformers.BertModel.from_pretrained`` loads.

Embedding rows follow token ids. When the target vocabulary numbers tokens differently (e.g. a
GluonNLP zoo vocabulary against Google's ``vocab.txt``), :func:`remap_vocab_rows` moves every
vocabulary-sized row to the id of the same token string in the target vocabulary; a token the
source lacks is an error listing such tokens (no invented rows).

Every file is written to a temporary name in ``out_dir`` and moved into place with
``os.replace``; ``config.json`` (HF) / ``gluonbert_config.json`` are written last, so a directory
without them is incomplete.
"""
import dataclasses
import json
import logging
import os

import mxnet as mx
import numpy as np

from ..errors import CheckpointError, ConfigError, InputError, WeightsNotFoundError
from . import checkpoint
from .bert import BERTClassifier, BERTModel
from .config import BERTConfig
from .convert_hf import (HEAD_PREFIXES, TIED_DECODER_BIAS, TIED_DECODER_WEIGHT,
                         find_weights_file, hf_name_map, normalize_hf_name, read_hf_weights,
                         write_safetensors)

__all__ = ['ConvertedModel', 'convert_hf_to_gluon', 'convert_gluon_to_hf', 'load_converted',
           'hf_to_gluon_arrays', 'gluon_to_hf_arrays', 'remap_vocab_rows', 'read_config',
           'PARAMS_FILE', 'VOCAB_JSON_FILE', 'VOCAB_TXT_FILE', 'CONFIG_FILE']

log = logging.getLogger(__name__)

PARAMS_FILE = 'model.params'
VOCAB_JSON_FILE = 'model.vocab'
VOCAB_TXT_FILE = 'vocab.txt'
CONFIG_FILE = 'gluonbert_config.json'

#: gluonbert parameters with one row per vocabulary token.
VOCAB_ROWS = ('word_embed.0.weight', 'decoder.3.weight', 'decoder.3.bias')


@dataclasses.dataclass(frozen=True)
class ConvertedModel:
    """What :func:`convert_hf_to_gluon` wrote.

    Parameters
    ----------
    directory, params, vocab_json, vocab_txt, config_file : str
        The output directory and its files.
    config : BERTConfig
    heads : tuple of str
        Heads the checkpoint holds, among ``'pooler'``, ``'decoder'`` (MLM), ``'classifier'``
        (NSP); build the :class:`BERTModel` with the same (or load with ``ignore_extra``).
    """
    directory: str
    params: str
    vocab_json: str
    vocab_txt: str
    config_file: str
    config: BERTConfig
    heads: tuple


# --------------------------------------------------------------------------- helpers

def _atomic_text(path, text):
    from ..data.fileio import atomic_write
    with atomic_write(path, 'w', newline='\n') as f:
        f.write(text)


def read_config(path):
    """Reads a gluonbert config JSON (BERTConfig fields) or a HuggingFace ``config.json``.

    Parameters
    ----------
    path : str
        The file; a HuggingFace config is recognised by its ``hidden_size`` key.

    Outputs
    -------
    BERTConfig
    """
    path = os.fspath(path)
    try:
        with open(path, encoding='utf-8') as f:
            values = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f'{path}: no such config file; expected {CONFIG_FILE} written by '
                          'gluonbert or a HuggingFace config.json') from None
    except json.JSONDecodeError as err:
        raise ConfigError(f'{path}:{err.lineno}: not valid JSON ({err.msg})') from None
    if not isinstance(values, dict):
        raise ConfigError(f'{path}: holds a JSON {type(values).__name__}; expected an object')
    if 'model_type' in values or ('hidden_size' in values and 'units' not in values):
        return BERTConfig.from_hf_config(path)
    return BERTConfig.from_dict(values, source=path)


def _expected_shapes(config):
    model = BERTModel(config, use_pooler=True, use_decoder=True, use_classifier=True)
    return {name: tuple(p.shape) for name, p in model._collect_params_with_prefix().items()}


def _heads_of(names):
    return tuple(head for head, prefix in HEAD_PREFIXES.items()
                 if any(n.startswith(prefix) for n in names))


def _model_with_heads(config, heads):
    if 'classifier' in heads and 'pooler' not in heads:
        raise CheckpointError('the checkpoint has the next-sentence head (classifier.*) but no '
                              'pooler (pooler.*); the NSP head reads the pooled vector')
    return BERTModel(config, use_pooler='pooler' in heads, use_decoder='decoder' in heads,
                     use_classifier='classifier' in heads)


def _problem_report(source, problems):
    shown = '\n  '.join(problems[:20])
    more = f'\n  ... and {len(problems) - 20} more' if len(problems) > 20 else ''
    return f'{source}:\n  {shown}{more}'


# --------------------------------------------------------------------------- name mapping

def hf_to_gluon_arrays(hf_arrays, config, source='<dict>', ignore_extra=False):
    """Renames a HuggingFace BERT state dict to gluonbert names and checks every shape.

    Accepts ``bert.``-prefixed and bare names, ``LayerNorm.weight/bias`` and ``.gamma/beta``;
    skips ``position_ids``; maps ``cls.predictions.*`` to the MLM head (``decoder.*``) and
    ``cls.seq_relationship.*`` to the NSP head (``classifier.*``). The MLM output weight
    (``cls.predictions.decoder.weight``) must be the word embedding's copy unless
    ``config.tie_word_embeddings`` is False, where it is the head's own ``decoder.3.weight``.

    Parameters
    ----------
    hf_arrays : dict of str -> numpy.ndarray
    config : BERTConfig
        Expected sizes.
    source : str
        File name for messages.
    ignore_extra : bool
        Skip names that are not BERT parameters (e.g. a task head) instead of failing.

    Outputs
    -------
    dict of str -> numpy.ndarray
        gluonbert names (``decoder.3.weight`` omitted when tied: it is the word embedding).
    """
    canonical = {}
    for raw, value in hf_arrays.items():
        name = normalize_hf_name(raw)
        if name is None:
            continue
        if name in canonical:
            raise CheckpointError(f'{source}: {raw} and {canonical[name][0]} are the same '
                                  'parameter; expected only one of them')
        canonical[name] = (raw, np.asarray(value))
    if TIED_DECODER_BIAS in canonical:
        raw, bias = canonical.pop(TIED_DECODER_BIAS)
        own = canonical.setdefault('cls.predictions.bias', (raw, bias))[1]
        if own.shape != bias.shape or not np.array_equal(own, bias):
            raise CheckpointError(f'{source}: {raw} differs from cls.predictions.bias; expected '
                                  'the tied copy of the MLM output bias')
    untied = {}
    if TIED_DECODER_WEIGHT in canonical:
        raw, weight = canonical.pop(TIED_DECODER_WEIGHT)
        embed = canonical.get('embeddings.word_embeddings.weight', (None, None))[1]
        if not config.tie_word_embeddings:          # the head's own weight
            if tuple(weight.shape) != (config.vocab_size, config.units):
                raise CheckpointError(f'{source}: {raw} has shape {tuple(weight.shape)}; the '
                                      f'config expects ({config.vocab_size}, {config.units})')
            untied['decoder.3.weight'] = weight.astype(np.float32, copy=False)
        elif embed is not None and (embed.shape != weight.shape or
                                    not np.array_equal(embed, weight)):
            raise CheckpointError(f'{source}: {raw} differs from the word embedding; gluonbert '
                                  'ties the MLM output weight to the word embedding')
    names = hf_name_map(config.num_layers)
    unknown = sorted(canonical[n][0] for n in set(canonical) - set(names))
    if unknown and not ignore_extra:
        raise CheckpointError(f'{source}: {len(unknown)} names are not parameters of a BERT '
                              f'with {config.num_layers} layers (first: {", ".join(unknown[:8])});'
                              ' expected BertModel/BertForPreTraining names (pass ignore_extra '
                              'to skip them)')
    expected = _expected_shapes(config)
    arrays, problems = {}, []
    for hf, ours in names.items():
        if hf not in canonical:
            continue
        raw, value = canonical[hf]
        if tuple(value.shape) != expected[ours]:
            problems.append(f'parameter {raw} (gluonbert {ours}): the file has shape '
                            f'{tuple(value.shape)}, the config expects {expected[ours]}')
        arrays[ours] = value.astype(np.float32, copy=False)
    # The encoder must be complete; each head is either absent or complete.
    groups = {'the encoder': [v for v in names.values() if not _heads_of([v])]}
    groups.update({f'the {head} head': [v for v in names.values() if v.startswith(prefix)]
                   for head, prefix in HEAD_PREFIXES.items()})
    to_hf = {v: k for k, v in names.items()}
    for what, group in groups.items():
        missing = [n for n in group if n not in arrays]
        if missing and (what == 'the encoder' or len(missing) < len(group)):
            problems += [f'missing parameter {to_hf[n]} of {what} (gluonbert {n}, shape '
                         f'{expected[n]})' for n in missing]
    if not config.tie_word_embeddings and 'decoder.3.bias' in arrays and not untied:
        problems.append(f'missing parameter {TIED_DECODER_WEIGHT} of the decoder head: the '
                        'config has tie_word_embeddings=false')
    if problems:
        raise CheckpointError(_problem_report(f'{source} does not fit the config', problems))
    arrays.update(untied)
    return arrays


def gluon_to_hf_arrays(arrays, num_layers, prefix='', tie_word_embeddings=True):
    """Renames gluonbert arrays to HuggingFace names (the inverse of :func:`hf_to_gluon_arrays`).

    Parameters
    ----------
    arrays : dict of str -> numpy.ndarray
        gluonbert names.
    num_layers : int
    prefix : str
        ``'bert.'`` for BertForPreTraining-style names (encoder under ``bert.``, heads under
        ``cls.``), ``''`` for BertModel names.
    tie_word_embeddings : bool
        The model's ``BERTConfig.tie_word_embeddings``: ``decoder.3.weight`` is the word
        embedding's copy and dropped (True), or the head's own weight, written as
        ``cls.predictions.decoder.weight`` (False).

    Outputs
    -------
    dict of str -> numpy.ndarray
    """
    to_hf = {ours: hf for hf, ours in hf_name_map(num_layers).items()}
    out = {}
    for name, value in arrays.items():
        if name == 'decoder.3.weight':
            if not tie_word_embeddings:
                out[TIED_DECODER_WEIGHT] = value
            continue
        if name not in to_hf:
            raise CheckpointError(f'parameter {name} has no HuggingFace BERT counterpart')
        hf = to_hf[name]
        out[hf if hf.startswith('cls.') else prefix + hf] = value
    return out


def remap_vocab_rows(arrays, source_vocab, target_vocab, target_name='the target vocabulary'):
    """Reorders vocabulary-sized rows from ``source_vocab`` ids to ``target_vocab`` ids.

    Row ``i`` of the result is the source row of token ``target_vocab.idx_to_token[i]``
    (matched by string). Source tokens absent from the target are dropped.

    Parameters
    ----------
    arrays : dict of str -> numpy.ndarray
        gluonbert names; :data:`VOCAB_ROWS` entries have ``len(source_vocab)`` rows.
    source_vocab, target_vocab : gluonnlp.Vocab
    target_name : str
        For the error message.

    Outputs
    -------
    dict of str -> numpy.ndarray
        With ``len(target_vocab)`` rows in the vocabulary-sized arrays.
    """
    source_ids = {token: i for i, token in enumerate(source_vocab.idx_to_token)}
    missing = [t for t in target_vocab.idx_to_token if t not in source_ids]
    if missing:
        raise CheckpointError(f'{target_name}: {len(missing)} tokens have no row in the source '
                              f'vocabulary (first: {missing[:20]}); expected every target token '
                              'in the source vocabulary')
    rows = np.array([source_ids[t] for t in target_vocab.idx_to_token], dtype=np.int64)
    out = dict(arrays)
    for name in VOCAB_ROWS:
        if name in out:
            if out[name].shape[0] != len(source_vocab):
                raise CheckpointError(f'parameter {name} has {out[name].shape[0]} rows; the '
                                      f'source vocabulary has {len(source_vocab)} tokens')
            out[name] = out[name][rows]
    return out


# --------------------------------------------------------------------------- HF -> gluonbert

def convert_hf_to_gluon(hf_dir, out_dir, target_vocab=None, ignore_extra=False):
    """Converts a HuggingFace BERT directory to gluonbert files (see the module docstring).

    Parameters
    ----------
    hf_dir : str
        Holds ``config.json``, ``vocab.txt`` and ``model.safetensors`` (or a sharded
        ``model.safetensors.index.json``, or ``pytorch_model.bin`` read with torch's
        ``weights_only=True``). Names may carry the ``bert.`` prefix; heads of
        ``BertForPreTraining`` are kept.
    out_dir : str
        Output directory (created); must differ from ``hf_dir``.
    target_vocab : str or gluonnlp.vocab.BERTVocab, optional
        Vocabulary whose ids the converted model should use (e.g. a GluonNLP ``.vocab``):
        rows are permuted by token string (:func:`remap_vocab_rows`).
    ignore_extra : bool
        Skip non-BERT names (task heads) of the checkpoint.

    Outputs
    -------
    ConvertedModel
    """
    from ..data.tokenizer import as_vocab, infer_lower_case, load_vocab, write_hf_vocab_txt
    hf_dir, out_dir = os.fspath(hf_dir), os.fspath(out_dir)
    if not os.path.isdir(hf_dir):
        raise WeightsNotFoundError(f'{hf_dir}: no such directory; expected a HuggingFace model '
                                   'directory with config.json, model.safetensors, vocab.txt')
    if os.path.realpath(hf_dir) == os.path.realpath(out_dir):
        raise InputError(f'{out_dir}: the output directory is the HuggingFace directory; '
                         'expected a different one (its vocab.txt would be replaced)')
    config_path = os.path.join(hf_dir, 'config.json')
    if not os.path.isfile(config_path):
        raise ConfigError(f'{config_path}: no such file; expected the HuggingFace config.json '
                          'of the model')
    config = BERTConfig.from_hf_config(config_path)
    vocab_path = os.path.join(hf_dir, 'vocab.txt')
    if not os.path.isfile(vocab_path):
        raise WeightsNotFoundError(f'{vocab_path}: no such file; expected the WordPiece '
                                   'vocabulary of the model')
    vocab = load_vocab(vocab_path)
    if len(vocab) != config.vocab_size:
        raise CheckpointError(f'{vocab_path} has {len(vocab)} tokens but {config_path} says '
                              f'vocab_size={config.vocab_size}; expected the same number')
    weights_path = find_weights_file(hf_dir)
    log.info('reading %s', weights_path)
    arrays = hf_to_gluon_arrays(read_hf_weights(weights_path), config, source=weights_path,
                                ignore_extra=ignore_extra)
    if target_vocab is not None:
        name = os.fspath(target_vocab) if isinstance(target_vocab, (str, os.PathLike)) \
            else 'the target vocabulary'
        target = as_vocab(target_vocab)
        arrays = remap_vocab_rows(arrays, vocab, target, target_name=name)
        vocab, config = target, config.replace(vocab_size=len(target))
    heads = _heads_of(arrays)
    model = _model_with_heads(config, heads)
    checkpoint.load_parameters(model, {k: mx.nd.array(v) for k, v in arrays.items()},
                               ignore_extra=False)
    os.makedirs(out_dir, exist_ok=True)
    paths = {key: os.path.join(out_dir, name) for key, name in (
        ('params', PARAMS_FILE), ('vocab_json', VOCAB_JSON_FILE), ('vocab_txt', VOCAB_TXT_FILE),
        ('config_file', CONFIG_FILE))}
    checkpoint.save_parameters(model, paths['params'])
    write_hf_vocab_txt(vocab, paths['vocab_txt'])
    _atomic_text(paths['vocab_json'], vocab.to_json())
    lower = infer_lower_case(hf_dir)
    if lower is not None:
        _atomic_text(os.path.join(out_dir, 'tokenizer_config.json'),
                     json.dumps({'do_lower_case': lower}) + '\n')
    _atomic_text(paths['config_file'], json.dumps(config.to_dict(), indent=2) + '\n')
    log.info('wrote %s (heads: %s)', out_dir, ', '.join(heads) or 'none')
    return ConvertedModel(directory=out_dir, config=config, heads=heads, **paths)


def load_converted(directory, ctx=mx.cpu()):
    """Loads a directory written by :func:`convert_hf_to_gluon`.

    Parameters
    ----------
    directory : str
    ctx : Context

    Outputs
    -------
    (BERTModel, gluonnlp.vocab.BERTVocab)
        The model has exactly the heads the checkpoint holds.
    """
    from ..data.tokenizer import load_vocab
    config = read_config(os.path.join(directory, CONFIG_FILE))
    params = os.path.join(directory, PARAMS_FILE)
    if not os.path.isfile(params):
        raise WeightsNotFoundError(f'{params}: no such file; expected gluonbert parameters')
    arrays = checkpoint.read_params(params)
    model = _model_with_heads(config, _heads_of(arrays))
    checkpoint.load_parameters(model, arrays, ctx=ctx, source=params)
    return model, load_vocab(os.path.join(directory, VOCAB_JSON_FILE))


# --------------------------------------------------------------------------- gluonbert -> HF

def _model_from_params(path, config):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsNotFoundError(f'{path}: no such parameter file')
    arrays = checkpoint.read_params(path)
    names = list(arrays)
    if any(n.startswith('bert.') for n in names):
        raise CheckpointError(f'{path} holds a BERTClassifier (names bert.*); export its '
                              'encoder instead: classifier.bert, or a file saved from it')
    if config is None:
        beside = os.path.join(os.path.dirname(os.path.abspath(path)), CONFIG_FILE)
        if not os.path.isfile(beside):
            raise ConfigError(f'{path}: no config given and no {CONFIG_FILE} beside it; '
                              'expected the BERTConfig of these parameters')
        config = beside
    if not isinstance(config, BERTConfig):
        config = read_config(config)
    model = _model_with_heads(config, _heads_of(names))
    checkpoint.load_parameters(model, arrays, source=path)
    return model


def convert_gluon_to_hf(params, vocab, out_dir, config=None, do_lower_case=None):
    """Writes a HuggingFace BERT directory from a gluonbert model or ``.params`` file.

    Parameters
    ----------
    params : BERTModel or str
        A model, or a ``.params`` file (gluonbert or GluonNLP 0.10 BERTModel names).
    vocab : gluonnlp.vocab.BERTVocab or str
        Its vocabulary; ``vocab.txt`` is written in id order, so ids do not change.
    out_dir : str
        Output directory (created).
    config : BERTConfig or str, optional
        For a ``.params`` file: its config (gluonbert JSON or HF ``config.json``); default the
        ``gluonbert_config.json`` beside it.
    do_lower_case : bool, optional
        Written to ``tokenizer_config.json``; inferred from the vocabulary path when None.

    Outputs
    -------
    str
        ``out_dir``. Keys are BertModel names when the model has no pretraining head, else
        BertForPreTraining names (``bert.*``, ``cls.*``).
    """
    from ..data.tokenizer import as_vocab, infer_lower_case, write_hf_vocab_txt
    if isinstance(params, BERTClassifier):
        raise InputError('convert_gluon_to_hf exports a BERTModel; pass classifier.bert')
    if isinstance(params, BERTModel):
        model = params
        if config is not None and (config if isinstance(config, BERTConfig)
                                   else read_config(config)) != model.config:
            raise ConfigError('config differs from the model\'s own config; omit it')
    else:
        model = _model_from_params(params, config)
    config = model.config
    if do_lower_case is None and isinstance(vocab, (str, os.PathLike)):
        do_lower_case = infer_lower_case(os.fspath(vocab))
    vocab = as_vocab(vocab)
    if len(vocab) != config.vocab_size:
        raise InputError(f'the vocabulary has {len(vocab)} tokens but the model has '
                         f'vocab_size={config.vocab_size}; expected the vocabulary it was '
                         'trained with')
    arrays = {name: p._reduce().asnumpy()
              for name, p in model._collect_params_with_prefix().items()}
    heads = _heads_of(arrays)
    with_heads = 'decoder' in heads or 'classifier' in heads
    hf_arrays = gluon_to_hf_arrays(arrays, config.num_layers, 'bert.' if with_heads else '',
                                   config.tie_word_embeddings)
    hf_config = config.to_hf_config()
    hf_config['architectures'] = [{(True, True): 'BertForPreTraining',
                                   (True, False): 'BertForMaskedLM',
                                   (False, True): 'BertForNextSentencePrediction',
                                   (False, False): 'BertModel'}[
        ('decoder' in heads, 'classifier' in heads)]]
    hf_config['pad_token_id'] = vocab.token_to_idx[vocab.padding_token]
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    write_safetensors(hf_arrays, os.path.join(out_dir, 'model.safetensors'))
    write_hf_vocab_txt(vocab, os.path.join(out_dir, 'vocab.txt'))
    if do_lower_case is not None:
        _atomic_text(os.path.join(out_dir, 'tokenizer_config.json'), json.dumps(
            {'do_lower_case': bool(do_lower_case), 'tokenizer_class': 'BertTokenizer',
             'model_max_length': config.max_length}, indent=2) + '\n')
    _atomic_text(os.path.join(out_dir, 'config.json'), json.dumps(hf_config, indent=2) + '\n')
    log.info('wrote %s (%s)', out_dir, hf_config['architectures'][0])
    return out_dir
