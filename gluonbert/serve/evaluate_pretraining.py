"""``gluonbert evaluate-pretraining``: held-out masked-LM and next-sentence accuracy of a run.

Held-out text is turned into pretraining examples exactly as for training
(:func:`~gluonbert.data.prepare_pretraining_data`: NSP pairs, 15% of the WordPieces masked with
the 80/10/10 rule) with a fixed seed, so two runs are compared on the same masks. The model of
a pretraining run (see :class:`~gluonbert.serve.pipelines.PretrainedBERT`) then predicts every masked
token and every IsNext/NotNext label.

The masked-token accuracy is put beside a baseline: always answering the token that is most
frequent among the held-out masked targets themselves, the best any constant answer can do on
that data. A model that has learned nothing about context is near the baseline; twice the
baseline needs context.
"""
import dataclasses
import json
import os
import tempfile
import time
from typing import Optional

import numpy as np

from ..data.fileio import atomic_write
from ..errors import ConfigError

__all__ = ['EvaluationConfig', 'evaluate_pretraining']


@dataclasses.dataclass
class EvaluationConfig:
    """What :func:`evaluate_pretraining` evaluates.

    Parameters
    ----------
    model_dir : str
        Pretraining run directory or ``step-*`` checkpoint.
    data : str
        Raw text file(s), comma-separated (WikiText or one sentence per line), or a directory
        of ``.npz`` shards made by ``gluonbert prepare-pretraining``.
    max_seq_length, max_predictions_per_seq : int
        Example length T and masked positions P (raw text only; use the training values).
    batch_size : int
    seed : int
        Seed of the pairs and masks made from raw text.
    output : str or None
        JSON file for the result (written atomically).
    """
    model_dir: str
    data: str
    max_seq_length: int = 128
    max_predictions_per_seq: int = 20
    batch_size: int = 64
    seed: int = 12345
    output: Optional[str] = None

    def __post_init__(self):
        for name in ('max_seq_length', 'max_predictions_per_seq', 'batch_size'):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f'EvaluationConfig.{name}={value!r}: expected an integer >= 1',
                                  field=name, value=value, expected='an integer >= 1')


def _score(model, batches):
    """Sums over every batch: MLM loss/correct/count, NSP loss/correct/count, target counts."""
    import mxnet as mx
    sums = dict.fromkeys(('mlm_loss', 'mlm_correct', 'mlm_count', 'nsp_loss', 'nsp_correct',
                          'nsp_count', 'not_next'), 0.0)
    targets = np.zeros(len(model.vocab), dtype=np.int64)
    for batch in batches:
        nd = lambda a: mx.nd.array(a, ctx=model.ctx, dtype=a.dtype)  # noqa: E731
        _, _, nsp, mlm = model.net(nd(batch.input_ids), nd(batch.segment_ids),
                                   nd(batch.valid_length), nd(batch.masked_positions))
        mlm_logp = mx.nd.log_softmax(mlm, axis=-1)                           # (B, P, V)
        ids = nd(batch.masked_ids)
        picked = mx.nd.pick(mlm_logp, ids, axis=-1).asnumpy()               # (B, P)
        predicted = mx.nd.argmax(mlm, axis=-1).asnumpy().astype(np.int64)   # (B, P)
        weights = batch.masked_weights > 0
        sums['mlm_loss'] -= float(picked[weights].sum())
        sums['mlm_correct'] += float((predicted == batch.masked_ids)[weights].sum())
        sums['mlm_count'] += float(weights.sum())
        targets += np.bincount(batch.masked_ids[weights], minlength=len(targets))
        nsp_logp = mx.nd.log_softmax(nsp, axis=-1).asnumpy()                # (B, 2)
        labels = batch.nsp_label.astype(np.int64)
        sums['nsp_loss'] -= float(nsp_logp[np.arange(len(labels)), labels].sum())
        sums['nsp_correct'] += float((nsp_logp.argmax(axis=-1) == labels).sum())
        sums['nsp_count'] += len(labels)
        sums['not_next'] += float(labels.sum())
    return sums, targets


def evaluate_pretraining(config):
    """Masked-LM and next-sentence metrics of a pretrained model on held-out text.

    Parameters
    ----------
    config : EvaluationConfig

    Outputs
    -------
    dict
        ``mlm_loss`` (mean cross-entropy per masked token), ``mlm_accuracy``, ``nsp_loss``,
        ``nsp_accuracy``, ``baseline_token`` and ``baseline_accuracy`` (the most frequent
        masked target), ``accuracy_over_baseline``, ``num_examples``, ``num_predictions``,
        ``not_next_fraction``, ``model`` (the parameter file), ``data``, ``seconds``.
    """
    from ..data import PretrainingBatches, PretrainingDataConfig, prepare_pretraining_data
    from .pipelines import PretrainedBERT
    start = time.time()
    model = PretrainedBERT(config.model_dir)
    for head in ('decoder', 'classifier'):
        model.require(head, 'evaluate-pretraining')
    with tempfile.TemporaryDirectory(prefix='gluonbert-eval-') as scratch:
        shards = config.data
        if not os.path.isdir(config.data):
            shards = os.path.join(scratch, 'shards')
            data_config = PretrainingDataConfig(
                max_seq_length=config.max_seq_length,
                max_predictions_per_seq=config.max_predictions_per_seq, seed=config.seed)
            prepare_pretraining_data([p for p in config.data.split(',') if p], model.vocab,
                                     shards, data_config, lower=model.lower, progress=False)
        batches = PretrainingBatches(shards, config.batch_size, shuffle=False, drop_last=False)
        if batches.num_examples == 0:
            raise ConfigError(f'{config.data}: no pretraining examples; expected text with at '
                              'least one document')
        sums, targets = _score(model, batches)
    most = int(targets.argmax())
    count = max(sums['mlm_count'], 1.0)
    accuracy = sums['mlm_correct'] / count
    baseline = float(targets[most]) / count
    result = {
        'mlm_loss': sums['mlm_loss'] / count, 'mlm_accuracy': accuracy,
        'nsp_loss': sums['nsp_loss'] / sums['nsp_count'],
        'nsp_accuracy': sums['nsp_correct'] / sums['nsp_count'],
        'baseline_token': model.vocab.idx_to_token[most], 'baseline_accuracy': baseline,
        'accuracy_over_baseline': accuracy / baseline if baseline else float('inf'),
        'num_examples': int(sums['nsp_count']), 'num_predictions': int(sums['mlm_count']),
        'not_next_fraction': sums['not_next'] / sums['nsp_count'],
        'model': model.source, 'data': config.data, 'seconds': time.time() - start}
    if config.output:
        directory = os.path.dirname(os.path.abspath(config.output))
        os.makedirs(directory, exist_ok=True)
        with atomic_write(config.output, newline='\n') as f:
            json.dump(result, f, indent=2)
    return result
