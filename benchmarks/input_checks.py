"""What the input checks cost: a checked forward pass against the same graph without them.

gluonbert's blocks check their NDArray inputs in Python before the cached graph runs
(:mod:`gluonbert.model.inputs`). This script times a hybridized ``BERTClassifier`` (static
memory, the shape ``finetune`` and ``predict`` run) called normally (checked) and through
``HybridBlock.forward`` directly, which runs the identical cached graph without the check
(unchecked). Three figures per model:

* ``check_us``: the check alone (median of many calls), in microseconds;
  ``check_us_while_queued``: the same while two forward passes are still running (a check
  that waited for the device would take a forward pass's time here);
* ``sync``: one forward pass waited for, checked vs unchecked (interleaved pairs; median and
  minimum wall-clock time);
* ``cpu``: the same passes in CPU time of the process (all threads): less disturbed than wall
  time when other jobs share the cores;
* ``pipelined``: ``--queue`` forward passes queued back to back and waited for once, checked
  vs unchecked: whether the check's host copy of the ids stalls MXNet's asynchronous queue.

Usage::

    python benchmarks/input_checks.py                        # bert_tiny_test, bert_6_384_12
    python benchmarks/input_checks.py --quick --out /tmp/checks.json

Results: a table on stdout and JSON (default ``runs/benchmarks/input_checks.json``) with the
CPU model and instruction-set flags from ``/proc/cpuinfo``.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

def write_results(path, meta, rows):
    """Writes ``{'meta': meta, 'rows': rows}`` as JSON to ``path`` (atomically) and says so."""
    from gluonbert.data.fileio import atomic_write
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_write(path, newline='\n') as f:
        json.dump({'meta': meta, 'rows': rows}, f, indent=2)
        f.write('\n')
    print(f'wrote {path}')


def _classifier(name, length):
    import mxnet as mx

    from gluonbert.model import BERTClassifier, BERTModel, get_config
    config = get_config(name, dropout=0.0)
    if config.max_length < length:      # bert_tiny_test has 64 positions
        config = config.replace(max_length=length)
    mx.random.seed(0)
    net = BERTClassifier(BERTModel(config, use_decoder=False, use_classifier=False),
                         num_classes=2)
    net.initialize(mx.init.Normal(0.02))
    net.hybridize(static_alloc=True, static_shape=True)
    return net, config


def _inputs(config, batch, length):
    import mxnet as mx
    import numpy as np
    rng = np.random.RandomState(0)
    ids = rng.randint(0, config.vocab_size, size=(batch, length))
    segments = np.zeros_like(ids)
    segments[:, length // 2:] = 1
    valid = rng.randint(length // 2, length + 1, size=(batch,))
    return [mx.nd.array(a, dtype='int32') for a in (ids, segments, valid)]


def measure(name, batch, length, repeat, queue, check_calls):
    """Timings of one model; see the module docstring."""
    import mxnet as mx

    from gluonbert.model.inputs import check_inputs
    net, config = _classifier(name, length)
    args = _inputs(config, batch, length)

    def checked():
        return net(*args)

    def unchecked():
        return mx.gluon.HybridBlock.forward(net, *args)

    for run in (checked, unchecked, checked, unchecked):       # graph build, warm-up
        run().wait_to_read()
    times = {'checked': [], 'unchecked': []}
    cpu = {'checked': [], 'unchecked': []}
    for i in range(repeat):     # interleaved, alternating order: both see the same load
        order = (('checked', checked), ('unchecked', unchecked))
        for label, run in (order if i % 2 == 0 else order[::-1]):
            start, start_cpu = time.perf_counter(), time.process_time()
            run().wait_to_read()
            times[label].append(time.perf_counter() - start)
            cpu[label].append(time.process_time() - start_cpu)
    piped = {'checked': [], 'unchecked': []}
    for i in range(max(3, repeat // queue)):
        order = (('checked', checked), ('unchecked', unchecked))
        for label, run in (order if i % 2 == 0 else order[::-1]):
            mx.nd.waitall()
            start = time.perf_counter()
            outs = [run() for _ in range(queue)]
            mx.nd.waitall()
            piped[label].append((time.perf_counter() - start) / queue)
            del outs
    check_times = []
    for _ in range(check_calls):
        start = time.perf_counter()
        check_inputs(config, *args)
        check_times.append(time.perf_counter() - start)
    # The check while forward passes are still queued: it reads the ids, which the queued
    # passes only read, so it must not wait for them.
    busy_times = []
    for _ in range(max(3, queue)):
        mx.nd.waitall()
        outs = [unchecked() for _ in range(2)]
        start = time.perf_counter()
        check_inputs(config, *args)
        busy_times.append(time.perf_counter() - start)
        mx.nd.waitall()
        del outs

    # What the two timed paths are: the same outputs, and only the checked one refuses an id
    # outside the vocabulary (the unchecked graph quietly clips it).
    from gluonbert.errors import InputError
    same = bool((checked().asnumpy() == unchecked().asnumpy()).all())
    bad = [args[0].copy(), *args[1:]]
    bad[0][0, 0] = config.vocab_size
    try:
        net(*bad)
        refused = False
    except InputError:
        refused = True
    mx.gluon.HybridBlock.forward(net, *bad).wait_to_read()

    def summary(values):
        return {'median_ms': round(statistics.median(values) * 1e3, 3),
                'min_ms': round(min(values) * 1e3, 3), 'n': len(values)}
    row = {'model': name, 'batch': batch, 'length': length,
           'max_length': config.max_length,
           'check_us': round(statistics.median(check_times) * 1e6, 1),
           'check_us_while_queued': round(statistics.median(busy_times) * 1e6, 1),
           'sync': {k: summary(v) for k, v in times.items()},
           'cpu': {k: summary(v) for k, v in cpu.items()},
           'pipelined': {k: summary(v) for k, v in piped.items()},
           'same_outputs': same, 'checked_refuses_bad_id': refused}
    for key in ('sync', 'cpu', 'pipelined'):
        for stat in ('median', 'min'):
            c = row[key]['checked'][f'{stat}_ms']
            u = row[key]['unchecked'][f'{stat}_ms']
            row[key][f'overhead_{stat}_pct'] = round(100.0 * (c - u) / u, 2)
    row['check_pct_of_forward'] = round(
        100.0 * row['check_us'] / 1e3 / row['sync']['unchecked']['min_ms'], 3)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--models', default='bert_tiny_test,bert_6_384_12')
    parser.add_argument('--batch', type=int, default=32)
    parser.add_argument('--length', type=int, default=128)
    parser.add_argument('--repeat', type=int, default=40,
                        help='timed (checked, unchecked) pairs per model')
    parser.add_argument('--queue', type=int, default=8,
                        help='forward passes queued before one wait (pipelined figure)')
    parser.add_argument('--check-calls', type=int, default=500)
    parser.add_argument('--quick', action='store_true',
                        help='bert_tiny_test only, B=4, T=32, few repetitions (CI)')
    parser.add_argument('--out', default=os.path.join(ROOT, 'runs', 'benchmarks',
                                                      'input_checks.json'))
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.batch, args.length = 'bert_tiny_test', 4, 32
        args.repeat, args.queue, args.check_calls = 4, 2, 20
    from gluonbert.platform import enable_amx, tune_allocator
    tune_allocator()  # before MXNet's first use, as the gluonbert command does
    enable_amx()
    import mxnet as mx

    from benchmarks.run import cpu_info, cpu_line
    meta = {'cpu': cpu_info(), 'python': platform.python_version(), 'mxnet': mx.__version__,
            'omp_num_threads': os.environ.get('OMP_NUM_THREADS'),
            'load_before': os.getloadavg(), 'quick': args.quick,
            'time_utc': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}
    rows = [measure(name, args.batch, args.length, args.repeat, args.queue, args.check_calls)
            for name in args.models.split(',')]
    meta['load_after'] = os.getloadavg()
    print(f'{cpu_line(meta["cpu"])}; '
          f'load {meta["load_before"][0]:.2f} -> {meta["load_after"][0]:.2f}')
    for r in rows:
        print(f'{r["model"]}: check {r["check_us"]:.0f} us idle, '
              f'{r["check_us_while_queued"]:.0f} us with forward passes queued')
    print(f'{"model":<16}{"B x T":<10}{"check":>8}{"check/fwd":>10}  {"timing":<10}'
          f'{"checked med/min ms":>20}{"unchecked med/min ms":>22}{"overhead med/min":>18}')
    for r in rows:
        for key in ('sync', 'cpu', 'pipelined'):
            c, u = r[key]['checked'], r[key]['unchecked']
            first = (f'{r["model"]:<16}{r["batch"]} x {r["length"]:<4}{r["check_us"]:>6.0f}us'
                     f'{r["check_pct_of_forward"]:>9.3f}%' if key == 'sync' else ' ' * 44)
            print(f'{first}  {key:<10}{c["median_ms"]:>11.2f} /{c["min_ms"]:>7.2f}'
                  f'{u["median_ms"]:>13.2f} /{u["min_ms"]:>7.2f}'
                  f'{r[key]["overhead_median_pct"]:>+9.1f}% /{r[key]["overhead_min_pct"]:>+6.1f}%')
    write_results(args.out, meta, rows)
    return 0


if __name__ == '__main__':
    sys.exit(main())
