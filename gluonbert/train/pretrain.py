"""BERT pretraining (masked LM + next sentence prediction), data-parallel over devices.

Reads ``.npz`` shards through :class:`~gluonbert.data.PretrainingBatches` (resumable, each
worker reading its own shards, optional dynamic re-masking), or raw text, which is first
turned into shards under ``out_dir/data`` by :func:`~gluonbert.data.prepare_pretraining_data`.
Writes into ``out_dir``: ``train.log``, ``checkpoints/step-*``, and at the end
``model.params`` (with both heads), ``gluonbert_config.json``, ``vocab.txt``,
``loss_curve.png`` and ``summary.json``. Only rank 0 writes.
"""
import dataclasses
import json
import os
import random
import time

import mxnet as mx
import numpy as np
from mxnet import gluon

from .. import perf
from ..data.fileio import atomic_write
from ..errors import ConfigError
from ..model import BERTModel, get_config
from ..model.convert import CONFIG_FILE
from ..model.init import TruncNorm
from . import checkpoint as ckpt
from .devices import make_cluster, parse_devices
from .loop import ShardedStep
from .losses import PRETRAIN_STATS, pretraining_loss
from .metrics import DeviceSums
from .optim import WarmupLinearSchedule, create_optimizer, exclude_from_weight_decay
from .plot import plot_curves
from .progress import TrainProgress

__all__ = ['pretrain', 'load_pretraining_data', 'build_pretraining_model', 'setup_amp']


def _is_text(data):
    return all(p.endswith('.txt') or p.endswith('.raw') for p in data.split(','))


def load_pretraining_data(config, rank=0, num_workers=1):
    """The batch stream and vocabulary of a run (raw text is prepared into shards first).

    Outputs
    -------
    (PretrainingBatches, gluonnlp.vocab.BERTVocab or None)
    """
    from ..data import (Masker, PretrainingBatches, PretrainingDataConfig, load_vocab,
                        prepare_pretraining_data)
    from ..data.pretraining import MANIFEST_NAME
    vocab = load_vocab(config.vocab) if config.vocab else None
    shards = config.data
    if vocab is None and os.path.isfile(os.path.join(shards, MANIFEST_NAME)):
        with open(os.path.join(shards, MANIFEST_NAME), encoding='utf-8') as f:
            recorded = json.load(f).get('vocab')       # the vocabulary the shards were made with
        if recorded and os.path.exists(recorded):
            vocab = load_vocab(recorded)
    if _is_text(config.data):
        if vocab is None:
            raise ConfigError(f'pretraining on raw text {config.data}: pass --vocab (a '
                              'vocab.txt, GluonNLP .vocab or HuggingFace model directory)')
        shards = os.path.join(config.out_dir, 'data')
        data_config = PretrainingDataConfig(
            max_seq_length=config.max_seq_length, seed=config.seed,
            max_predictions_per_seq=config.max_predictions_per_seq)
        manifest = os.path.join(shards, MANIFEST_NAME)
        if not os.path.isfile(manifest):      # prepared once, reused by a resumed run
            if rank != 0:
                raise ConfigError(f'{manifest}: not found; with several workers, prepare the '
                                  'shards first (gluonbert prepare-pretraining) and pass them')
            prepare_pretraining_data(config.data.split(','), config.vocab, shards, data_config,
                                     lower=config.lower, overwrite=True,
                                     progress=config.progress)
        else:
            with open(manifest, encoding='utf-8') as f:
                previous = json.load(f)['config']
            if previous != dataclasses.asdict(data_config):
                raise ConfigError(f'{manifest}: prepared with {previous}; this run asks for '
                                  f'{dataclasses.asdict(data_config)}. Use another --out-dir')
    masker = None
    if config.dynamic_masking and vocab is not None:
        masker = Masker.from_vocab(vocab, max_predictions_per_seq=config.max_predictions_per_seq)
    batches = PretrainingBatches(shards, config.batch_size, rank=rank, num_workers=num_workers,
                                 shuffle=True, seed=config.seed, drop_last=True, masker=masker)
    if len(batches) == 0:
        raise ConfigError(f'{config.data}: {batches.num_examples} examples for this worker, '
                          f'fewer than batch_size={config.batch_size}; expected at least one '
                          'full batch')
    return batches, vocab


def check_ids_fit(batches, vocab_size):
    """Raises :class:`ConfigError` when the first shard holds ids the model cannot embed."""
    from ..data import load_shard
    arrays = load_shard(batches.files[0])
    largest = int(max(arrays['input_ids'].max(), arrays['masked_ids'].max()))
    if largest >= vocab_size:
        raise ConfigError(f'{batches.files[0]} holds token id {largest} but the model has '
                          f'vocab_size={vocab_size}; pass the --vocab the shards were made with')


def build_pretraining_model(config, vocab_size, contexts):
    """A :class:`BERTModel` with MLM and NSP heads, initialised on ``contexts``."""
    if config.model_config:
        from ..model.convert import read_config
        bert_config = read_config(config.model_config)
    else:
        bert_config = get_config(config.model)
    changes = {'vocab_size': vocab_size} if vocab_size else {}
    if config.dropout is not None:
        changes['dropout'] = config.dropout
    bert_config = bert_config.replace(**changes)
    net = BERTModel(bert_config, use_pooler=True, use_decoder=True, use_classifier=True)
    net.initialize(TruncNorm(0.02), ctx=contexts)
    # Static memory; narrow models (d2l's size) get the fast LayerNorm backward. Not
    # static_shape: the last batch of an epoch (and a resumed run's first) may differ in shape.
    perf.optimize(net, training=True, static_shape=False)
    return net


def setup_amp(contexts, dtype):
    """Turns on MXNet AMP (float16 + dynamic loss scaling) for GPU training.

    Outputs
    -------
    bool
        Whether AMP is on. float16 on a CPU context raises :class:`ConfigError`.
    """
    if dtype != 'float16':
        return False
    cpus = [c for c in contexts if c.device_type == 'cpu']
    if cpus:
        raise ConfigError(f'--dtype float16 needs GPUs (MXNet AMP loss scaling is GPU-only); '
                          f'got {cpus}. Use --gpus, or --dtype float32 on CPU')
    from mxnet.contrib import amp
    amp.init(target_dtype='float16')
    return True


def _summarise(sums, seconds, sentences, tokens, step, lr, norm):
    mlm_w, nsp_n = max(sums['mlm_weight'], 1e-12), max(sums['nsp_count'], 1)
    return {'step': step, 'mlm_loss': sums['mlm_loss_sum'] / mlm_w,
            'mlm_acc': sums['mlm_correct'] / mlm_w, 'nsp_loss': sums['nsp_loss_sum'] / nsp_n,
            'nsp_acc': sums['nsp_correct'] / nsp_n, 'lr': lr,
            'grad_norm': float(norm.asnumpy()[0]) if norm is not None else 0.0,
            'pairs_per_s': sentences / max(seconds, 1e-9),
            'tokens_per_s': tokens / max(seconds, 1e-9)}


def _forever(batches):
    while True:
        yield from batches


def pretrain(config):
    """Runs (or resumes) a pretraining run.

    Parameters
    ----------
    config : PretrainConfig

    Outputs
    -------
    dict
        Summary: ``first`` and ``last`` logged records, ``steps``, ``seconds``, ``history``
        and the output paths.
    """
    random.seed(config.seed)
    np.random.seed(config.seed)
    mx.random.seed(config.seed, ctx='all')
    contexts = parse_devices(config.devices.gpus, config.devices.cpus)
    use_amp = setup_amp(contexts, config.devices.dtype)
    cluster = make_cluster(contexts, config.devices.kvstore, config.devices.comm_backend)
    batches, vocab = load_pretraining_data(config, cluster.rank, cluster.num_workers)
    net = build_pretraining_model(config, len(vocab) if vocab is not None else None, contexts)
    check_ids_fit(batches, net.config.vocab_size)
    exclude_from_weight_decay(net)
    trainer = cluster.make_trainer(net.collect_params(), create_optimizer(config.optimizer))
    if use_amp:
        from mxnet.contrib import amp
        amp.init_trainer(trainer)
    out = config.out_dir
    os.makedirs(out, exist_ok=True)
    if cluster.is_main:
        _write_run_files(out, net.config, vocab, config.lower)
    workers = cluster.num_workers
    step = ShardedStep(net.collect_params(), trainer, contexts,
                       lambda *a, **k: pretraining_loss(net, *a, **k),
                       config.optimizer.max_grad_norm, config.optimizer.accumulate, use_amp)
    ckpt_dir = os.path.join(out, 'checkpoints')
    run_config = {'pretrain': dataclasses.asdict(config), 'bert': net.config.to_dict()}
    start, history, resumed = 0, [], 'a fresh start'
    sums = DeviceSums(PRETRAIN_STATS, contexts)
    if config.resume:
        latest = ckpt.find_latest(ckpt_dir)
        if latest is not None:
            meta = ckpt.load_checkpoint(latest, net, trainer)
            start, history, resumed = meta['step'], meta['history'], f'resumed from {latest}'
            if cluster.rank == meta['data_position']['loader'].get('rank', 0):
                batches.load_state_dict(meta['data_position']['loader'])
            else:   # rank 0 saved its own position; every rank read as many batches
                batches.seek(meta['step'] * config.optimizer.accumulate)
            pending = meta['data_position']['pending']      # sums since the last log line
            sums.add(0, mx.nd.array([pending[k] for k in PRETRAIN_STATS], ctx=contexts[0]))
    if not trainer._kv_initialized:
        # Gluon initialises the kvstore lazily, inside the first step, where it broadcasts
        # rank 0's parameters into every worker's arrays while that step is in flight. Do it
        # now, so that every worker starts (or resumes) from the same weights.
        trainer._init_kvstore()
        mx.nd.waitall()
    schedule = WarmupLinearSchedule(config.optimizer.lr, config.num_steps,
                                    config.optimizer.warmup_ratio)
    stream = _forever(batches)
    log_name = 'train.log' if cluster.is_main else f'train.rank{cluster.rank}.log'
    progress = TrainProgress(os.path.join(out, log_name), config.num_steps, start,
                             desc='pretrain', bar=config.progress and cluster.is_main,
                             console=cluster.is_main)
    progress.message(f'pretrain: {net.config} on {contexts} (rank {cluster.rank}/{workers}), '
                     f'{batches.num_examples} examples, batch {config.batch_size} x '
                     f'{config.optimizer.accumulate}, steps {start}..{config.num_steps} '
                     f'({resumed})')
    begin = tick = time.time()
    sentences = tokens = 0
    norm, lr = None, 0.0
    end = config.stop_at_step or config.num_steps
    for index in range(start, end):
        for _ in range(config.optimizer.accumulate):
            batch = next(stream)
            # Normalisers of the global batch (all devices, all workers): sharding is exact.
            weight, pairs = cluster.sum_over_workers(
                [batch.masked_weights.sum(), len(batch.nsp_label)])
            stats = step.forward_backward(batch, mlm_denominator=max(weight, 1.0),
                                          num_sentences=pairs)
            for device, values in stats:
                sums.add(device, values)
            sentences += len(batch.nsp_label)
            tokens += int(batch.valid_length.sum())
        lr = schedule(index)
        norm = step.update(lr)
        done = index + 1
        progress.advance()
        if done % config.log_interval == 0 or done == config.num_steps:
            record = _summarise(sums.read(), time.time() - tick, sentences, tokens, done, lr,
                                norm)
            history.append(record)
            progress.log(record)
            tick, sentences, tokens = time.time(), 0, 0
        if done % config.checkpoint_interval == 0 or done == end:
            if cluster.is_main:
                position = {'loader': batches.state_dict(), 'pending': sums.read(reset=False)}
                ckpt.save_checkpoint(ckpt_dir, net, trainer, done, position, config.seed,
                                     run_config, history, config.keep_checkpoints)
            else:
                ckpt.reseed_mxnet(config.seed, done)
    seconds = time.time() - begin
    progress.close()
    summary = {'steps': end, 'resumed_from': start, 'seconds': seconds,
               'first': history[0] if history else None,
               'last': history[-1] if history else None, 'history': history,
               'finished': end == config.num_steps}
    if summary['finished'] and config.save_all_ranks and not cluster.is_main:
        net.save_parameters(os.path.join(out, f'model.rank{cluster.rank}.params'))
    if cluster.is_main and summary['finished']:
        net.save_parameters(os.path.join(out, 'model.params'))
        summary['plot'] = plot_curves(history, os.path.join(out, 'loss_curve.png'),
                                      ('mlm_loss', 'nsp_loss', 'mlm_acc', 'nsp_acc'),
                                      title=f'pretraining {config.model}')
        with atomic_write(os.path.join(out, 'summary.json')) as f:
            json.dump({k: v for k, v in summary.items() if k != 'history'}, f, indent=2)
    summary['out_dir'] = out
    return summary


def _write_run_files(out, bert_config, vocab, lower):
    """Config, vocabulary and casing beside the checkpoints: fine-tuning starts from them."""
    with atomic_write(os.path.join(out, CONFIG_FILE), newline='\n') as f:
        json.dump(bert_config.to_dict(), f, indent=2)
    with atomic_write(os.path.join(out, 'tokenizer_config.json'), newline='\n') as f:
        json.dump({'do_lower_case': bool(lower)}, f)
    if vocab is not None:
        from ..data import write_hf_vocab_txt
        write_hf_vocab_txt(vocab, os.path.join(out, 'vocab.txt'))
