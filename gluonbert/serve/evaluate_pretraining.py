"""``gluonbert evaluate-pretraining``: held-out masked-LM and next-sentence accuracy of a run.

Held-out text is turned into pretraining examples exactly as for training
(:func:`~gluonbert.data.prepare_pretraining_data`: NSP pairs, 15% of the WordPieces masked with
the 80/10/10 rule) with a fixed seed, so two runs are compared on the same masks. The model of
a pretraining run (see :class:`~gluonbert.serve.pipelines.PretrainedBERT`) then predicts every masked
token and every IsNext/NotNext label.

The examples are scored in batches of similar length, each cut to its longest example and
its most masked positions, in one cached graph with the model (the (b, P, V) scores go through
one softmax cross-entropy pass that also gives the argmax); both the preparation and the
scoring show a progress bar.

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
from ..errors import ConfigError, FileSystemError

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
        Examples per batch at most; batches hold examples of similar length, as many as fit
        16,384 padded tokens and 4,096 masked tokens.
    seed : int
        Seed of the pairs and masks made from raw text.
    output : str or None
        JSON file for the result (written atomically).
    progress : bool
        Progress bars of the data preparation and the scoring (standard error).
    """
    model_dir: str
    data: str
    max_seq_length: int = 128
    max_predictions_per_seq: int = 20
    batch_size: int = 512
    seed: int = 12345
    output: Optional[str] = None
    progress: bool = True

    def __post_init__(self):
        for name in ('max_seq_length', 'max_predictions_per_seq', 'batch_size'):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f'EvaluationConfig.{name}={value!r}: expected an integer >= 1',
                                  field=name, value=value, expected='an integer >= 1')


def _sums_block(net, kernel):
    """:class:`_Sums` around ``net`` (MXNet is imported here, not when the CLI parses)."""
    from mxnet.gluon import HybridBlock

    class _Sums(HybridBlock):
        """The model and the sums of one batch, as one cached graph.

        The encoder runs on the batch; the masked-LM head only on the N real masked tokens of
        the whole batch, packed (no row for a padding prediction). Their (N, V) scores never
        leave the graph: with gluonbert's CPU kernels one ``gluonbert_softmax_ce`` pass gives
        each row's cross-entropy and argmax, without (N, V) log-probabilities; otherwise
        ``log_softmax``, ``pick`` and ``argmax``. With static memory, the buffers of a batch
        shape are reused by the next batch of that shape.

        Inputs
        ------
        input_ids, segment_ids : (b, T') int32
        valid_length : (b,) int32
        masked_index : (2, N) int32
            Example and position of each masked token (padding rows: (0, 0)).
        masked_ids : (N,) int32
        masked_weights : (N,) float32
            1 for a masked token, 0 for a padding row.
        nsp_label : (b,) int32

        Outputs
        -------
        (5,) float32
            Masked-LM loss and hits (weighted), NSP loss and hits, NotNext labels.
        """

        def __init__(self, net, kernel):
            super().__init__()
            self._kernel = kernel
            with self.name_scope():
                self.net = net

        def hybrid_forward(self, F, input_ids, segment_ids, valid_length, masked_index,
                           masked_ids, masked_weights, nsp_label):
            encoded = self.net.encoder(input_ids, segment_ids, valid_length)
            sequence = encoded[0] if isinstance(encoded, (list, tuple)) else encoded
            _, nsp = self.net.nsp(sequence)                                         # (b, 2)
            scores = F.gather_nd(sequence, masked_index)                            # (N, C)
            for block in self.net.decoder._children.values():
                scores = block(scores)                                              # (N, V)
            ids = F.cast(masked_ids, 'float32')
            if self._kernel:
                ce, _, top = F.gluonbert_softmax_ce(scores, ids)                   # (N,)
            else:
                ce = -F.pick(F.log_softmax(scores, axis=-1), ids, axis=-1)
                top = F.argmax(scores, axis=-1)
            labels = F.cast(nsp_label, 'float32')
            nsp_ce = -F.pick(F.log_softmax(nsp, axis=-1), labels, axis=-1)         # (b,)
            hits = F.broadcast_equal(top, ids) * masked_weights
            nsp_hits = F.broadcast_equal(F.argmax(nsp, axis=-1), labels)
            sums = [F.sum(ce * masked_weights), F.sum(hits), F.sum(nsp_ce), F.sum(nsp_hits),
                    F.sum(labels)]
            return F.concat(*[F.reshape(x, shape=(1,)) for x in sums], dim=0)

    return _Sums(net, kernel)


#: Budgets of one evaluation batch: padded tokens (examples x their longest) and masked
#: tokens (the (N, V) scores: 4096 x a 30,522-word vocabulary is 500 MB).
MAX_BATCH_TOKENS = 16384
MAX_BATCH_PREDICTIONS = 4096


def _round_up(value, step):
    return int(max(step, -(-int(value) // step) * step))


def _length_batches(arrays, max_examples):
    """Batches of one shard's examples sorted by length: as many as the budgets
    (:data:`MAX_BATCH_TOKENS`, :data:`MAX_BATCH_PREDICTIONS`) and ``max_examples`` allow, each
    cut to its longest example, its masked tokens packed. An example's scores do not depend
    on the padding it is given; the work does, and under a busy CPU so does the number of
    operator launches per example.

    Outputs
    -------
    iterator of (dict of np.ndarray, int)
        The inputs of :class:`_Sums` by name (``masked_index`` (2, N) and the other (N,)
        arrays padded to a multiple of 64 rows) and the number of masked tokens.
    """
    width = arrays['input_ids'].shape[1]
    valid = arrays['valid_length'].astype(np.int64)
    real = arrays['masked_weights'] > 0                                              # (n, P)
    counts = real.sum(axis=1)
    order = np.argsort(valid, kind='stable')
    start = 0
    while start < len(order):
        end, predictions = start, 0
        while end < len(order) and end - start < max_examples:
            longest = min(width, _round_up(valid[order[end]], 8))
            if end > start and ((end + 1 - start) * longest > MAX_BATCH_TOKENS or
                                predictions + counts[order[end]] > MAX_BATCH_PREDICTIONS):
                break
            predictions += counts[order[end]]
            end += 1
        rows = order[start:end]
        start = end
        t = min(width, _round_up(valid[rows].max(), 8))
        example, slot = np.nonzero(real[rows])                                      # (N,)
        padded = _round_up(len(example), 64)
        index = np.zeros((2, padded), dtype=np.int32)
        index[0, :len(example)] = example
        index[1, :len(example)] = arrays['masked_positions'][rows][example, slot]
        ids = np.zeros(padded, dtype=np.int32)
        ids[:len(example)] = arrays['masked_ids'][rows][example, slot]
        weights = np.zeros(padded, dtype=np.float32)
        weights[:len(example)] = 1.0
        yield {'input_ids': arrays['input_ids'][rows, :t],
               'segment_ids': arrays['segment_ids'][rows, :t],
               'valid_length': arrays['valid_length'][rows], 'masked_index': index,
               'masked_ids': ids, 'masked_weights': weights,
               'nsp_label': arrays['nsp_label'][rows]}, len(example)


_INPUTS = ('input_ids', 'segment_ids', 'valid_length', 'masked_index', 'masked_ids',
           'masked_weights', 'nsp_label')


def _score(model, files, batch_size, progress):
    """Sums over every example of ``files``: MLM loss/correct/count, NSP loss/correct/count,
    NotNext labels, and the masked targets' counts."""
    import mxnet as mx
    from tqdm import tqdm
    from .. import kernels
    from ..data.shards import load_shard, shard_size
    from ..errors import DataFormatError
    from ..model.inputs import check_inputs
    scorer = _sums_block(model.net, model.ctx.device_type == 'cpu' and kernels.available())
    scorer.hybridize(static_alloc=True)
    totals = np.zeros(5)
    counts = {'mlm_count': 0.0, 'nsp_count': 0}
    vocab_size = model.config.vocab_size
    targets = np.zeros(vocab_size, dtype=np.int64)
    examples = sum(shard_size(path) for path in files)
    with tqdm(total=examples, unit='ex', desc='evaluating', disable=not progress,
              mininterval=1.0) as bar:
        for path in files:
            arrays = load_shard(path)
            real = arrays['masked_weights'] > 0
            largest = int(max(arrays['input_ids'].max(initial=0),
                              arrays['masked_ids'][real].max(initial=0)))
            if largest >= vocab_size:
                raise DataFormatError(path, None, f'holds token id {largest}; the model has '
                                      f'vocab_size={vocab_size}: shards made with another '
                                      'vocabulary')
            for batch, masked in _length_batches(arrays, batch_size):
                inputs = [mx.nd.array(batch[key], ctx=model.ctx, dtype=batch[key].dtype)
                          for key in _INPUTS]
                check_inputs(model.config, *inputs[:3])       # what the cached graph skips
                totals += scorer(*inputs).asnumpy().astype(np.float64)
                counts['mlm_count'] += float(masked)
                counts['nsp_count'] += len(batch['nsp_label'])
                targets += np.bincount(batch['masked_ids'][:masked], minlength=vocab_size)
                bar.update(len(batch['nsp_label']))
    sums = dict(zip(('mlm_loss', 'mlm_correct', 'nsp_loss', 'nsp_correct', 'not_next'),
                    totals.tolist()))
    sums.update(counts)
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
    from ..data import PretrainingDataConfig, list_shards, prepare_pretraining_data
    from .pipelines import PretrainedBERT
    start = time.time()
    if config.output:
        _check_output(config.output)
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
                                     shards, data_config, lower=model.lower,
                                     progress=config.progress)
        sums, targets = _score(model, list_shards(shards), config.batch_size, config.progress)
        if sums['nsp_count'] == 0:
            raise ConfigError(f'{config.data}: no pretraining examples; expected text with at '
                              'least one document')
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


def _check_output(path):
    """``--output`` must be a file that can be written, checked before the work."""
    if os.path.isdir(path):
        raise ConfigError(f'--output {path} is a directory; expected the path of a JSON file')
    existing = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing) or not os.access(existing, os.W_OK | os.X_OK):
        raise FileSystemError(path, 'write the result', f'{existing} is not a writable '
                              'directory')
