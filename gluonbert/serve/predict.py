"""Predictions of a fine-tuned classifier: class probabilities in input order, and the
``gluonbert predict`` function that writes them to a TSV file (atomically).

A fine-tuned model directory (written by :func:`gluonbert.train.finetune.finetune`) holds
``model.params`` (a BERTClassifier), ``finetune.json`` (BERT config, task, casing, max length)
and ``vocab.txt``.
"""
import os

import mxnet as mx
import numpy as np

from ..data.fileio import atomic_write
from ..errors import ConfigError, DataFormatError, FileSystemError, InputError
from .classifier import finetuned_transform, load_finetuned
from ..dist.cluster import split_batch

__all__ = ['predict_proba', 'batches_by_length', 'load_classifier', 'predict', 'DEFAULT_BATCH_SIZE']


def batches_by_length(samples, batch_size=None, max_batch_tokens=None, describe=None):
    """Index lists of similar-length samples (less padding), covering every sample once.

    The samples are sorted by length (stable: ties keep their order) and cut greedily into
    consecutive batches of at most ``batch_size`` rows and at most ``max_batch_tokens`` padded
    tokens (rows x the longest row of the batch); either limit may be None (not both).

    Parameters
    ----------
    samples : list of tuple
        Transformed samples; ``len(sample[0])`` is the length a batch pads to.
    batch_size : int or None
    max_batch_tokens : int or None
    describe : callable, optional
        ``describe(i)`` names sample ``i`` in the error (e.g. its file and line).

    Outputs
    -------
    list of (n_b,) int np.ndarray

    Raises
    ------
    ConfigError
        A limit below 1, or a sample longer than ``max_batch_tokens`` (it fits no batch).
    """
    if batch_size is None and max_batch_tokens is None:
        raise ConfigError('batch_size and max_batch_tokens are both None; expected at least one')
    for name, value in (('batch_size', batch_size), ('max_batch_tokens', max_batch_tokens)):
        if value is not None and value < 1:
            raise ConfigError(f'{name}={value}: expected >= 1')
    lengths = np.array([len(s[0]) for s in samples], dtype=np.int64)
    order = np.argsort(lengths, kind='stable')
    if max_batch_tokens is None:
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if len(order) and lengths[order[-1]] > max_batch_tokens:
        longest = int(order[-1])
        where = describe(longest) if describe else f'sample {longest}'
        raise ConfigError(f'{where}: {int(lengths[longest])} tokens, more than max_batch_tokens='
                          f'{max_batch_tokens}; expected a budget of at least the longest '
                          'input (the maximum sequence length always fits)')
    rows = batch_size or len(order)
    batches, start = [], 0
    for end in range(1, len(order) + 1):
        # sorted: order[end - 1] is the longest of the batch [start, end)
        if end - start > rows or (end - start) * lengths[order[end - 1]] > max_batch_tokens:
            batches.append(order[start:end - 1])
            start = end - 1
    if start < len(order):
        batches.append(order[start:])
    return batches


def predict_proba(net, samples, batch_size, contexts, pad_id=0, max_batch_tokens=None,
                  describe=None):
    """Class probabilities of transformed samples, in the order of ``samples``.

    Parameters
    ----------
    net : BERTClassifier
        Parameters on ``contexts`` (or the graph of a deployment directory).
    samples : list of tuple
        :class:`~gluonbert.data.BERTDatasetTransform` outputs (labels, if any, are ignored).
    batch_size : int or None
        At most this many samples per batch, split over ``contexts`` (None: no row limit,
        only with ``max_batch_tokens``).
    contexts : list of mx.Context
    pad_id : int
    max_batch_tokens : int, optional
        At most this many padded tokens (rows x longest row) per batch: short inputs go in
        larger batches, long ones in smaller; must be at least the longest sample's length.
    describe : callable, optional
        ``describe(i)`` names sample ``i`` in errors.

    Outputs
    -------
    probs : (N, K) float32 np.ndarray
    """
    from ..data import ClassificationBatchify
    batchify = ClassificationBatchify(pad_id=pad_id, as_numpy=True)
    out = None
    for index in batches_by_length(samples, batch_size, max_batch_tokens, describe):
        arrays = batchify([samples[i][:3] for i in index])
        shards = split_batch(arrays, contexts)
        scores = [mx.nd.softmax(net(*shard), axis=-1) for shard in shards]
        probs = np.concatenate([s.asnumpy() for s in scores])
        if out is None:
            out = np.zeros((len(samples), probs.shape[1]), dtype=np.float32)
        out[index] = probs
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def _check_output_path(path, input_path=None):
    """``--output`` must be a new file or one that may be replaced, never the input, in a
    directory that exists or can be made and is writable (checked before any work)."""
    if os.path.isdir(path):
        example = os.path.join(path, 'predictions.tsv')
        raise ConfigError(f'--output {path} is a directory; expected the path of the '
                          f'predictions file to write (e.g. {example})')
    if input_path is not None and os.path.exists(path) and os.path.exists(input_path) \
            and os.path.samefile(path, input_path):
        raise ConfigError(f'--output {path} is the --input file; expected another path (the '
                          'predictions would replace the data they were made from)')
    existing = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise FileSystemError(path, 'write the predictions', f'{existing} is a file, not a '
                              'directory')
    if not os.access(existing, os.W_OK | os.X_OK):
        raise FileSystemError(path, 'write the predictions', f'{existing} is not writable')


def _check_input_path(path):
    if os.path.isdir(path):
        raise DataFormatError(path, None, 'is a directory; expected a TSV file in the task\'s '
                              'format')
    if not os.path.isfile(path):
        raise DataFormatError(path, None, 'no such input file; expected a TSV file in the '
                              'task\'s format')


def load_classifier(model_dir, contexts):
    """The classifier of a fine-tuned model directory (:func:`~gluonbert.serve.classifier.
    load_finetuned`, on gluonbert's CPU kernels on CPU contexts), or the exported graph of a
    deployment directory (``gluonbert quantize``, fp32 or INT8), with its input transform.

    Outputs
    -------
    (BERTClassifier or ExportedBERT, BERTDatasetTransform, TaskSpec)
    """
    from .deploy import DEPLOY_INFO, load_exported
    if os.path.isfile(os.path.join(model_dir, DEPLOY_INFO)):  # gluonbert quantize's output
        _, spec, transform = finetuned_transform(model_dir)
        return load_exported(model_dir, contexts), transform, spec
    return load_finetuned(model_dir, contexts)


#: Rows per batch of :func:`predict` when neither limit is given.
DEFAULT_BATCH_SIZE = 64


def predict(model_dir, input_path, output_path, batch_size=None, gpus=None, cpus=None,
            max_batch_tokens=None, text_a=None, text_b=None, header=True):
    """Writes ``index, prediction, prob_<label>...`` (and ``label`` when known) as TSV.

    Parameters
    ----------
    model_dir : str
        A fine-tuned model directory (``model.params``, or the newest checkpoint of a run
        stopped before its first epoch ended), one of its ``step-*`` checkpoints, or a
        deployment directory of ``gluonbert quantize``.
    input_path : str
        A file in the task's format (MRPC: GLUE train/dev/test.tsv or an MSR file), or any
        TSV whose columns ``text_a``/``text_b`` name.
    output_path : str
        Output TSV, written to a temporary file and renamed.
    batch_size : int, optional
        At most this many rows per batch (default :data:`DEFAULT_BATCH_SIZE` without
        ``max_batch_tokens``; no row limit with it).
    gpus, cpus
        Devices, as for training.
    max_batch_tokens : int, optional
        At most this many padded tokens (rows x longest row) per batch: the inputs are sorted
        by length and cut into batches under this budget (short inputs in larger batches).
        Must be at least the longest input's token count (``max_seq_length`` always is).
        The output is in input order either way, with the same labels and probabilities
        (to float rounding).
    text_a, text_b : str or None
        Columns of the texts (header names, or 0-based indices as digit strings) instead of the
        task's format (:func:`gluonbert.data.tasks.read_columns`).
    header : bool
        With ``text_a``: the file starts with a header line.

    Outputs
    -------
    dict
        ``{'count': N, 'output': path, 'accuracy': ..., 'f1': ...}`` (metrics only when the
        input has labels).
    """
    from ..dist.cluster import parse_devices
    from .metrics import classification_report
    from ..data.tasks import read_columns, read_examples
    if batch_size is None and max_batch_tokens is None:
        batch_size = DEFAULT_BATCH_SIZE
    for name, value in (('batch_size', batch_size), ('max_batch_tokens', max_batch_tokens)):
        if value is not None and value < 1:
            raise ConfigError(f'{name}={value}: expected >= 1')
    _check_input_path(input_path)        # before any work
    _check_output_path(output_path, input_path)
    contexts = parse_devices(gpus, cpus)
    net, transform, spec = load_classifier(model_dir, contexts)
    if text_a is None and text_b is None:
        if not header:
            raise ConfigError('--no-header needs --text-a (and --text-b for pairs) as column '
                              "indices; the task's own format has a header")
        records = read_examples(input_path, spec)
    else:
        records = read_columns(input_path, spec, text_a, text_b, header)
    texts = [(r.text_a, r.text_b) if spec.pair else (r.text_a,) for r in records]
    try:
        probs = predict_proba(net, [transform(t) for t in texts], batch_size, contexts,
                              transform.pad_id, max_batch_tokens,
                              describe=lambda i: f'{input_path}:{records[i].line}')
    except InputError as err:       # the model's input check: say which files
        raise InputError(f'{input_path} with the model in {model_dir}: {err}') from None
    predicted = probs.argmax(axis=1) if len(records) else np.zeros(0, dtype=int)
    known = bool(records) and records[0].label is not None
    header = ['index', 'prediction'] + [f'prob_{label}' for label in spec.labels]
    header += ['label'] if known else []
    out_dir = os.path.dirname(os.path.abspath(output_path))
    os.makedirs(out_dir, exist_ok=True)
    with atomic_write(output_path, newline='\n') as f:
        f.write('\t'.join(header) + '\n')
        for i, record in enumerate(records):
            row = [str(i), spec.labels[predicted[i]]] + [f'{p:.6f}' for p in probs[i]]
            f.write('\t'.join(row + ([record.label] if known else [])) + '\n')
    result = {'count': len(records), 'output': output_path}
    if known:
        gold = np.array([spec.labels.index(r.label) for r in records])
        result.update(classification_report(predicted, gold))
    return result
