"""Where one MiniLM-L6 fine-tuning update of ``gluonbert finetune`` spends its time.

Builds exactly what :func:`gluonbert.train.engine.train` builds for
:class:`~gluonbert.train.finetune.FinetuningTask` (an :class:`~gluonbert.train.engine.Engine`,
the task's ``build``, ``Engine.attach``) on MiniLM-L6-shaped random weights and real MRPC
pairs (``benchmarks.cli_workloads``), then measures on the same sequence of updates, always
through the engine's one public step, :meth:`~gluonbert.train.engine.Engine.step`:

1. ``natural``: the step as the engine calls it, the gradient norm read after each update:
   wall and process CPU time per update, and the data pipeline's ``next_update`` apart;
2. ``profiler``: ``mx.profiler`` aggregate statistics (per operator) over a few updates;
3. shape handling: the same updates with the engine's ``hybridize(static_alloc=True)``
   (bucketed, a new padded length on most updates), plain ``hybridize()``, and every batch
   padded to ``max_len`` with ``hybridize(static_alloc=True, static_shape=True)``; plus the
   cost of the first update at each new padded length.

Usage::

    python benchmarks/profile_finetune.py --mrpc ../shared/data/mrpc/msr_paraphrase_train.txt \\
        --updates 12 --json runs/benchmarks/profile_finetune.json
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

from gluonbert.platform import enable_amx, tune_allocator  # noqa: E402
tune_allocator()  # before MXNet, as the gluonbert command does
enable_amx()
import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402


def _setup(mrpc, tmp, quick):
    from benchmarks import cli_workloads as cw
    from benchmarks.spec import MINILM, TINY, Workload
    from gluonbert.train.engine import Engine
    from gluonbert.train.finetune import FinetuningTask
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
    engine = Engine(config)
    task = FinetuningTask(config)
    os.makedirs(config.out_dir)            # the run directory train() would claim
    net = task.build(engine)
    engine.attach(net, task.loss, task.batches.total_updates)
    engine.cluster.sync_weights(engine.trainer)
    return dict(task=task, net=net, engine=engine, config=config, source=source, shape=shape)


def _natural(s, updates):
    """The engine's step; the gradient norm read after every update (the log reads it at
    every record)."""
    walls, cpus = [], []
    for update in updates:
        c, t = time.process_time(), time.perf_counter()
        s['engine'].step(update).grad_norm.asnumpy()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    return walls, cpus


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
    for batch in update.batches:
        pad = ((0, 0), (0, length - batch.input_ids.shape[1]))
        batches.append(batch._replace(input_ids=np.pad(batch.input_ids, pad,
                                                       constant_values=pad_id),
                                      segment_ids=np.pad(batch.segment_ids, pad)))
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
            updates.append(s['task'].batches.next_update())
            data.append(time.perf_counter() - t)
        out['data_next_update_s'] = {'median': statistics.median(data), 'max': max(data)}
        lengths = [u.batches[0].input_ids.shape[1] for u in updates]
        out['padded_lengths'] = lengths
        warm, timed = updates[:n], updates[n:2 * n]
        # first call at each new length (graph/memory plan), then the natural step
        first = {}
        for update in warm:
            walls, _ = _natural(s, [update])
            first.setdefault(update.batches[0].input_ids.shape[1], walls[0])
        out['warmup_walls_s'] = [round(w, 3) for w in first.values()]
        walls, cpus = _natural(s, timed)
        out['natural'] = {'wall_s': walls, 'cpu_s': cpus, 'T': lengths[n:2 * n]}
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
                           'sequences_per_s': sum(len(u.batches[0].valid_length) for u in seq)
                           / sum(walls)}
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
