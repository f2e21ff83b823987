"""gluonbert rows of ``train_base``, ``pretrain_d2l``, ``finetune_mrpc`` and ``infer_base``:
the code the ``gluonbert`` CLI runs, on the same NumPy batches as the references.

* Configuration: the ``gluonbert finetune`` / ``gluonbert pretrain`` argument parsers
  (:mod:`gluonbert.cli.arguments`) with their defaults, plus the workload's sizes
  (``--max-seq-length``, ``--batch-size``, ``--dropout``...): optimiser ``bertadam``,
  ``--max-grad-norm`` 1.0, warm-up 0.1, seed, one CPU context, kvstore ``device``.
* Model: :meth:`FinetuningTask.build <gluonbert.train.finetune.FinetuningTask.build>` (a
  ``BERTClassifier`` on the encoder of a ``--from-converted`` directory holding random
  weights of the workload's shape, data ``data/paraphrase_sample``) and
  :meth:`PretrainingTask.build <gluonbert.train.pretrain.PretrainingTask.build>` (a shard
  holding the workload's batch, ``--config`` a JSON of its shape): what the tasks build and
  how they hybridize it.
* Step: :meth:`gluonbert.train.engine.Engine.step`, the one step every CLI training run
  takes (the loss normalisers summed over workers, ``split_and_load``, forward and backward
  with the task's loss, all-reduce, global-norm clipping, Adam at the schedule's rate,
  reseeding), on an :class:`~gluonbert.train.engine.Engine` set up as
  :func:`~gluonbert.train.engine.train` sets it up; then ``mx.nd.waitall()`` (the repetition
  ends when the new weights exist). The data pipeline is not timed here (nor for the
  references): ``finetune_minilm_mrpc`` times it.
* Inference: :func:`gluonbert.serve.predict.load_classifier` on a fine-tuned directory
  (random weights) and :func:`~gluonbert.serve.predict.predict_proba`, the functions
  ``gluonbert predict`` runs the model with (length-sorted batches, batchify,
  ``split_and_load``, forward, softmax, copy to the host).
"""
import os
import statistics
import tempfile
import time

import mxnet as mx
import numpy as np

from . import flops as F
from .cli_workloads import _write_converted, _write_finetuned, write_tiny_vocab
from .inputs import bucketed_batches, classifier_batch, pretrain_batch
from .measure import make_result, time_mxnet_steps

__all__ = ['run_model_workload']


def _finetune_config(workload, tmp):
    """``gluonbert finetune --from-converted DIR`` with the CLI's defaults and the workload's
    sizes; the converted directory holds random weights of the workload's shape."""
    from gluonbert.cli import build_parser
    from gluonbert.cli.arguments import finetune_config
    shape = workload.model
    vocab = os.path.join(tmp, 'vocab.txt')
    write_tiny_vocab(vocab, shape.vocab_size)
    converted = _write_converted(os.path.join(tmp, 'converted'), shape, vocab)
    args = build_parser().parse_args([
        'finetune', '--from-converted', converted, '--out-dir', os.path.join(tmp, 'run'),
        '--max-seq-length', str(workload.seq_len), '--batch-size', str(workload.batch_size),
        '--dropout', str(shape.dropout), '--no-progress'])
    return finetune_config(args)


def _pretrain_config(workload, batch, tmp):
    """``gluonbert pretrain --data SHARDS --config MODEL.json`` with the CLI's defaults; the
    one shard holds ``batch`` (so the task's data checks see the very ids timed)."""
    import json

    from gluonbert.cli import build_parser
    from gluonbert.data.shards import write_shard
    from gluonbert.cli.arguments import pretrain_config

    from .cli_workloads import _bert_config
    shards = os.path.join(tmp, 'shards')
    os.makedirs(shards)
    write_shard(os.path.join(shards, 'part-00000.npz'), dict(zip(_SHARD_FIELDS, batch)))
    model_json = os.path.join(tmp, 'model.json')
    with open(model_json, 'w', encoding='utf-8') as f:
        json.dump(_bert_config(workload.model).to_dict(), f)
    args = build_parser().parse_args([
        'pretrain', '--data', shards, '--config', model_json, '--out-dir',
        os.path.join(tmp, 'run'), '--batch-size', str(workload.batch_size),
        '--max-seq-length', str(workload.seq_len), '--max-predictions-per-seq',
        str(workload.num_masked), '--dropout', str(workload.model.dropout), '--no-progress'])
    return pretrain_config(args)


_SHARD_FIELDS = ('input_ids', 'segment_ids', 'valid_length', 'masked_positions', 'masked_ids',
                 'masked_weights', 'nsp_label')


def _pretraining_arrays(model, b, t, p):
    """The workload's MLM+NSP batch in the order of :class:`gluonbert.data.PretrainingBatch`."""
    from gluonbert.data import PretrainingBatch
    x = pretrain_batch(model, b, t, p)
    return PretrainingBatch(x.token_ids, x.segment_ids, x.valid_length, x.masked_positions,
                            x.masked_ids, x.masked_weights, x.labels)


class EngineSteps:
    """:meth:`Engine.step <gluonbert.train.engine.Engine.step>` on fixed batches, one update
    per batch, as :func:`gluonbert.train.engine.train` calls it.

    Parameters
    ----------
    engine : Engine
        Attached to the task's model (``Engine.attach``).
    batches : list of NamedTuple batches
        One update each (``accumulate`` = 1, the CLI's default).
    """

    def __init__(self, engine, batches):
        from gluonbert.train.engine import Update
        self.engine = engine
        self.updates = [Update([batch]) for batch in batches]
        engine.cluster.sync_weights(engine.trainer)
        self.results = []

    def __call__(self):
        for update in self.updates:
            self.results.append(self.engine.step(update))
        mx.nd.waitall()

    def evidence(self):
        """What only the engine's step produces: the task's metrics over every update, the
        gradient norms before clipping, the schedule's rates, the optimiser."""
        engine = self.engine
        norms = [float(r.grad_norm.asnumpy()[0]) for r in self.results
                 if r.grad_norm is not None]
        return {'engine_metrics': engine.loss.metrics(engine.read_interval()),
                'grad_norms': [round(n, 6) for n in norms],
                'learning_rates': [r.lr for r in self.results], 'updates': engine.done,
                'optimizer': type(engine.trainer.optimizer).__name__,
                'max_grad_norm': engine.config.optimizer.max_grad_norm}


def _engine(task, config, total_updates):
    """An Engine set up as :func:`gluonbert.train.engine.train` sets it up (no run
    directory), with ``task``'s model and loss."""
    from gluonbert.train.engine import Engine
    engine = Engine(config)
    os.makedirs(config.out_dir)            # the run directory train() would claim
    net = task.build(engine)
    engine.attach(net, task.loss, total_updates)
    return engine, net


def _train_batches(workload, context):
    """(batches, items, padded tokens, FLOPs, extra) of a ``train`` or ``finetune``
    repetition, the references' batches."""
    from gluonbert.train.finetune import ClassificationBatch
    model, b, t = workload.model, workload.batch_size, workload.seq_len
    if workload.kind == 'train':
        x = classifier_batch(model, b, t)
        batches = [ClassificationBatch(x.token_ids, x.segment_ids, x.valid_length, x.labels)]
        return batches, b, b * t, F.TRAIN_FACTOR * F.classifier_forward(model, b, t), {}
    shapes = bucketed_batches(context['mrpc_lengths'], b, context['num_batches'], max_length=t)
    batches = []
    for i, (padded, valid) in enumerate(shapes):
        x = classifier_batch(model, b, padded, valid, seed=i)
        batches.append(ClassificationBatch(x.token_ids, x.segment_ids, x.valid_length,
                                           x.labels))
    flops = sum(F.TRAIN_FACTOR * F.classifier_forward(model, b, padded) for padded, _ in shapes)
    real = sum(sum(valid) for _, valid in shapes)
    extra = {'padded_lengths': [p for p, _ in shapes], 'real_tokens_per_rep': real,
             'length_source': context['length_source']}
    return batches, b * len(shapes), sum(b * p for p, _ in shapes), flops, extra


def run_model_workload(workload, impl, context):
    """Builds what the CLI builds and times the workload (one result row)."""
    from gluonbert.train.finetune import FinetuningTask
    from gluonbert.train.pretrain import PretrainingTask
    model, b, t = workload.model, workload.batch_size, workload.seq_len
    steps = workload.warmup + workload.repeat
    extra = {}
    with tempfile.TemporaryDirectory(prefix='gluonbert-bench-') as tmp:
        start = time.perf_counter()
        if workload.kind in ('train', 'finetune'):
            batches, items, tokens, flops, extra = _train_batches(workload, context)
            config = _finetune_config(workload, tmp)
            task = FinetuningTask(config)
            engine, net = _engine(task, config, steps * len(batches))
            step = EngineSteps(engine, batches)
            note = ('FinetuningTask.build, Engine.step (ClassificationLoss; clip, BERTAdamW), '
                    'CLI defaults')
        elif workload.kind == 'pretrain':
            batch = _pretraining_arrays(model, b, t, workload.num_masked)
            config = _pretrain_config(workload, batch, tmp)
            task = PretrainingTask(config)
            engine, net = _engine(task, config, steps)
            step = EngineSteps(engine, [batch])
            flops = F.TRAIN_FACTOR * F.pretrain_forward(model, b, t, workload.num_masked)
            items, tokens = b, b * t
            note = ('PretrainingTask.build, Engine.step (PretrainingLoss; clip, BERTAdamW), '
                    'CLI defaults')
        elif workload.kind == 'infer':
            from gluonbert.serve.predict import load_classifier, predict_proba
            x = classifier_batch(model, b, t)
            samples = list(zip(x.token_ids, x.segment_ids, x.valid_length))
            vocab = os.path.join(tmp, 'vocab.txt')
            write_tiny_vocab(vocab, model.vocab_size)
            model_dir = _write_finetuned(os.path.join(tmp, 'model'), model, vocab, t)
            contexts = [mx.cpu()]
            net, transform, _ = load_classifier(model_dir, contexts)
            probs = []

            def step():
                probs[:] = [predict_proba(net, samples, b, contexts, transform.pad_id)]
            # the same FLOP count as the references' encoder + pooler (the 2-way head and
            # the softmax are negligible)
            flops, items, tokens = F.classifier_forward(model, b, t, num_classes=0), b, b * t
            note = ('serve.predict.load_classifier + predict_proba (what gluonbert predict '
                    'runs): classifier probabilities, copied to the host')
        else:
            raise ValueError(f'unknown workload kind {workload.kind!r}')
        setup, rss, setup_peak, times, warm = time_mxnet_steps(step, workload, start)
        if workload.kind == 'infer':
            extra = {'probabilities_shape': list(probs[0].shape),
                     'probability_sum_error': float(np.abs(probs[0].sum(axis=1) - 1).max()),
                     'net': type(net).__name__}
        else:
            extra.update(step.evidence())
            if 'real_tokens_per_rep' in extra:
                extra['real_tokens_per_s_median'] = (extra['real_tokens_per_rep']
                                                     / statistics.median(times))
    return [make_result(workload, impl, times, items, tokens, flops, setup_seconds=setup,
                        warmup_seconds=warm, rss_before_mb=rss, setup_peak_mb=setup_peak,
                        note=note, **extra)]
