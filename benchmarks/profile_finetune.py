"""Where one MiniLM-L6 fine-tuning update of ``gluonbert finetune`` spends its time.

Builds exactly what :func:`gluonbert.train.engine.train` builds for
:class:`~gluonbert.train.finetune.FinetuningTask` (the task's ``build``, the engine's
``make_trainer`` and :class:`~gluonbert.train.loop.ShardedStep`) on MiniLM-L6-shaped random
weights and real MRPC pairs (``benchmarks.cli_workloads``), then measures on the same
sequence of updates:

1. ``natural``: the engine's step as the engine calls it (no waits but the grad-norm read
   every 10 updates, as logging does): wall and process CPU time per update;
2. ``phases``: the same step cut into phases with ``mx.nd.waitall()`` between them: data
   (``next_update``: sampler + batchify, and the host-side counts), ``split_and_load``,
   forward+backward (dispatch = until the Python calls return; the rest is waiting for the
   worker threads), all-reduce + clip + update (``ShardedStep.update``), and the engine's
   per-update reseeding; the main thread's CPU time per phase (``time.thread_time``) is the
   Python side;
3. ``profiler``: ``mx.profiler`` aggregate statistics (per operator) over a few updates;
4. shape handling: the same updates with the engine's ``hybridize(static_alloc=True)``
   (bucketed, a new padded length on most updates), plain ``hybridize()``, and every batch
   padded to ``max_len`` with ``hybridize(static_alloc=True, static_shape=True)``; plus the
   cost of the first update at each new padded length.

Usage::

    python benchmarks/profile_finetune.py --mrpc ../shared/data/mrpc/msr_paraphrase_train.txt \\
        --updates 12 --json runs/benchmarks/profile_finetune.json

Nothing here changes the engine; the phase split re-issues :meth:`ShardedStep.forward_backward`'s
calls one by one (``split_batch``, the loss under ``autograd.record``, ``backward``).
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

if __package__ in (None, ''):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gluonbert.platform import tune_allocator  # noqa: E402
tune_allocator()  # before MXNet, as the gluonbert command does
import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402


def _setup(mrpc, tmp, quick):
    from benchmarks import cli_workloads as cw
    from benchmarks.spec import MINILM, TINY, Workload
    from gluonbert.train.checkpoint import reseed_mxnet
    from gluonbert.dist.cluster import make_cluster, parse_devices
    from gluonbert.train.engine import _Run, make_trainer, seed_everything
    from gluonbert.train.finetune import FinetuningTask
    from gluonbert.train.loop import ShardedStep
    shape = TINY if quick else MINILM
    workload = Workload('profile', 'cli_finetune', '', model=shape, batch_size=4 if quick else 32,
                        seq_len=64 if quick else 128, impls=('gluonbert',))
    context = {'quick': quick, 'cli_mrpc': mrpc, 'quick_pairs': 80}
    data_dir, vocab, source = cw._inputs(workload, context, tmp)
    if data_dir is None:
        raise SystemExit(f'skipped: {source}')
    converted = cw._write_converted(os.path.join(tmp, 'converted'), shape, vocab)
    config = cw._finetune_config(workload, data_dir, converted, os.path.join(tmp, 'run'), 1,
                                 None)
    seed_everything(config.seed)
    contexts = parse_devices(config.devices.gpus, config.devices.cpus)
    cluster = make_cluster(contexts, config.devices.kvstore, config.devices.comm_backend)
    task = FinetuningTask(config)
    net = task.build(_Run(config, contexts, cluster))
    trainer = make_trainer(net, config.optimizer, cluster)
    step = ShardedStep(net.collect_params(), trainer, contexts,
                       lambda *a: task.loss(net, *a), config.optimizer.max_grad_norm,
                       config.optimizer.accumulate)
    return dict(task=task, net=net, trainer=trainer, step=step, contexts=contexts,
                cluster=cluster, config=config, reseed=reseed_mxnet, source=source,
                shape=shape)


def _totals(s, update):
    local = np.sum([s['task'].counts(b) for b in update.batches], axis=0)
    return s['cluster'].sum_over_workers([*local, 0.0])[:-1]


def _natural(s, updates, lr=1e-5):
    """The engine's calls without extra waits; the norm read every 10 updates (logging)."""
    walls, cpus = [], []
    for i, update in enumerate(updates):
        c, t = time.process_time(), time.perf_counter()
        totals = _totals(s, update)
        for batch in update.batches:
            s['step'].forward_backward(batch, totals)
        norm = s['step'].update(lr)
        s['reseed'](s['config'].seed, i + 1)
        norm.asnumpy()      # the engine reads it at every log record; here: every update
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return walls, cpus


def _phases(s, updates, lr=1e-5):
    """Per-update wall and main-thread CPU seconds of each phase, waits between phases."""
    from mxnet import autograd

    from gluonbert.train.loop import split_batch
    step, rows = s['step'], []
    for i, update in enumerate(updates):
        row = {}

        def mark(name, t0, c0):
            row[name] = time.perf_counter() - t0
            row[name + '_cpu'] = time.thread_time() - c0
        t, c = time.perf_counter(), time.thread_time()
        totals = _totals(s, update)
        mark('host_counts', t, c)
        for batch in update.batches:
            t, c = time.perf_counter(), time.thread_time()
            shards = split_batch(batch, step.contexts)
            mx.nd.waitall()
            mark('split_and_load', t, c)
            t, c = time.perf_counter(), time.thread_time()
            with autograd.record():
                losses = [step.loss_fn(*shard, totals)[0] for shard in shards]
            autograd.backward(losses)
            row['fwd_bwd_dispatch'] = time.perf_counter() - t
            mx.nd.waitall()
            mark('forward_backward', t, c)
            step._pending += 1
            step._used.update(range(len(shards)))
        t, c = time.perf_counter(), time.thread_time()
        norm = step.update(lr)
        mx.nd.waitall()
        mark('allreduce_clip_update', t, c)
        t, c = time.perf_counter(), time.thread_time()
        s['reseed'](s['config'].seed, i + 1)
        norm.asnumpy()
        mark('reseed_and_norm_read', t, c)
        row['T'] = int(update.batches[0][0].shape[1])
        rows.append(row)
    return rows


def _profile(s, updates, path):
    mx.profiler.set_config(profile_all=True, aggregate_stats=True, continuous_dump=False,
                           filename=path)
    mx.nd.waitall()
    mx.profiler.set_state('run')
    _natural(s, updates)
    mx.nd.waitall()
    mx.profiler.set_state('stop')
    text = mx.profiler.dumps(reset=True)
    ops, section, previous = [], None, ''
    for line in text.splitlines():
        if line.startswith('====='):
            section = previous.strip()
            continue
        previous = line
        parts = line.split()
        # operator sections: "<name> <count> <total ms> <min ms> <max ms> <avg ms>"
        if section in ('operator', 'MXNET_C_API') and len(parts) >= 6:
            try:
                count, total = int(parts[-5]), float(parts[-4])
            except ValueError:
                continue
            ops.append({'section': section, 'name': ' '.join(parts[:-5]), 'count': count,
                        'total_ms': total})
    return text, ops


def _pad_to(update, length, pad_id=0):
    from gluonbert.train.engine import Update
    batches = []
    for token_ids, segment_ids, valid, label in update.batches:
        extra = length - token_ids.shape[1]
        pad = ((0, 0), (0, extra))
        batches.append((np.pad(token_ids, pad, constant_values=pad_id),
                        np.pad(segment_ids, pad), valid, label))
    return Update(batches, update.epoch, update.epoch_end)


def _rehybridize(net, **kwargs):
    net.hybridize(active=False)
    net.hybridize(**kwargs)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--mrpc', default=os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        'shared', 'data', 'mrpc', 'msr_paraphrase_train.txt'))
    parser.add_argument('--updates', type=int, default=12, help='timed updates per measurement')
    parser.add_argument('--profile-updates', type=int, default=4)
    parser.add_argument('--quick', action='store_true', help='tiny model, synthetic pairs')
    parser.add_argument('--json', default=os.path.join('runs', 'benchmarks',
                                                       'profile_finetune.json'))
    args = parser.parse_args(argv)
    from benchmarks.run import cpu_info
    out = {'cpu': cpu_info(), 'load_start': os.getloadavg(), 'threads':
           os.environ.get('OMP_NUM_THREADS'), 'updates': args.updates}
    with tempfile.TemporaryDirectory(prefix='gluonbert-profile-') as tmp:
        s = _setup(args.mrpc, tmp, args.quick)
        out['source'] = s['source']
        n = args.updates
        # One fixed sequence of updates (epoch 1's first ones), replayed in every measurement.
        data, updates = [], []
        for _ in range(3 * n + args.profile_updates):
            t = time.perf_counter()
            updates.append(s['task'].next_update())
            data.append(time.perf_counter() - t)
        out['data_next_update_s'] = {'median': statistics.median(data), 'max': max(data)}
        lengths = [u.batches[0][0].shape[1] for u in updates]
        out['padded_lengths'] = lengths
        warm, timed = updates[:n], updates[n:2 * n]
        # first call at each new length (graph/memory plan), then the natural step
        first = {}
        for update in warm:
            walls, _ = _natural(s, [update])
            first.setdefault(update.batches[0][0].shape[1], walls[0])
        out['warmup_walls_s'] = [round(w, 3) for w in first.values()]
        walls, cpus = _natural(s, timed)
        out['natural'] = {'wall_s': walls, 'cpu_s': cpus, 'T': lengths[n:2 * n]}
        out['phases'] = _phases(s, timed)
        text, ops = _profile(s, updates[2 * n:2 * n + args.profile_updates],
                             os.path.join(tmp, 'profile.json'))
        out['profiler_updates'] = args.profile_updates
        out['profiler_ops'] = sorted(ops, key=lambda o: -o['total_ms'])
        out['profiler_text'] = text
        # shape handling: the same timed updates under three graph settings
        net = s['net']
        modes = {}
        for name, kwargs, pad in (
                ('plain hybridize()', dict(), None),
                ('static_alloc, bucketed (engine)', dict(static_alloc=True), None),
                ('static_alloc+static_shape, all padded to max_len',
                 dict(static_alloc=True, static_shape=True), s['config'].max_seq_length)):
            _rehybridize(net, **kwargs)
            seq = [(_pad_to(u, pad) if pad else u) for u in timed]
            w0, _ = _natural(s, seq[:1] if pad else seq)       # warm-up (every length once)
            walls, cpus = _natural(s, seq)
            modes[name] = {'warmup_s': sum(w0), 'wall_s': walls, 'cpu_s': cpus,
                           'median_s': statistics.median(walls),
                           'sequences_per_s': sum(len(u.batches[0][0]) for u in seq) / sum(walls)}
        out['modes'] = modes
    out['load_end'] = os.getloadavg()
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json + '.tmp', 'w', encoding='utf-8') as f:
        json.dump(out, f, indent=1)
    os.replace(args.json + '.tmp', args.json)
    _print(out)
    return 0


def _print(out):
    print(f'CPU {out["cpu"]["model"]}, ISA {[k for k, v in out["cpu"]["isa"].items() if v]}; '
          f'load {out["load_start"][0]:.2f} -> {out["load_end"][0]:.2f}')
    nat = out['natural']
    print(f'natural step: median {statistics.median(nat["wall_s"]):.3f} s wall, '
          f'{statistics.median(nat["cpu_s"]):.3f} s CPU (T {nat["T"]})')
    keys = [k for k in out['phases'][0] if not k.endswith('_cpu') and k != 'T']
    for key in keys:
        values = [p[key] for p in out['phases']]
        cpu = [p.get(key + '_cpu') for p in out['phases']]
        cpu_text = f', main-thread CPU {statistics.median(cpu):.4f}' if cpu[0] is not None else ''
        print(f'  {key:<24} median {statistics.median(values):.4f} s{cpu_text}')
    print(f'data next_update: median {out["data_next_update_s"]["median"]:.4f} s')
    print(f'first update at each new length: {out["warmup_walls_s"]}')
    operators = [o for o in out['profiler_ops'] if o['section'] == 'operator']
    total = sum(o['total_ms'] for o in operators)
    print(f'profiler, {out["profiler_updates"]} updates, top operators:')
    for op in operators[:20]:
        print(f'  {op["name"]:<48} {op["count"]:>6} {op["total_ms"]:>10.1f} ms')
    print(f'  (sum of all operators {total:.0f} ms)')
    for name, mode in out['modes'].items():
        print(f'{name:<50} median {mode["median_s"]:.3f} s/update, '
              f'{mode["sequences_per_s"]:.2f} seq/s, warm-up {mode["warmup_s"]:.1f} s')


if __name__ == '__main__':
    sys.exit(main())
