"""gluonbert's CPU kernels against the MXNet operators they replace, block by block.

Each case builds the gluonbert block that training uses (``LayerNorm``, ``ResidualLayerNorm``,
``Dropout``, ``SelfAttention``, and the masked-LM loss ``PretrainingSums``) twice, with
``kernels`` off (MXNet's operators, what GluonNLP runs too) and on (what ``gluonbert finetune``
and ``gluonbert pretrain`` run on CPU), hybridized with static memory, and times one forward
and backward pass of each, the two taking turns. The two ``inference`` cases time the forward
pass alone in inference mode, as ``gluonbert predict`` runs it (the attention on its
forward-only kernel). Two shapes: MiniLM-L6 fine-tuning (B=32,
T=64, C=384, 12 heads) and BERT-base (B=8, T=128, C=768, 12 heads); sequence lengths are
uniform in [T/2, T] (the padding the attention kernel skips).

Usage::

    python benchmarks/cpu_kernels.py                  # both shapes, table + JSON
    python benchmarks/cpu_kernels.py --quick          # tiny shapes, 2 repetitions (CI)

JSON (default ``runs/benchmarks/cpu_kernels.json``): per case the wall-clock median and
minimum and the process CPU time (all threads; less disturbed by other jobs) of both
variants, with the CPU model and instruction-set flags.
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

from benchmarks.input_checks import write_results  # noqa: E402
from benchmarks.run import cpu_info, cpu_line  # noqa: E402

#: (name, batch, length, width, heads, masked predictions per sequence, vocabulary)
SHAPES = (('minilm', 32, 64, 384, 12, 20, 30522), ('bert_base', 8, 128, 768, 12, 20, 30522))
QUICK_SHAPES = (('tiny', 4, 16, 32, 4, 3, 100),)


def _cases(batch, length, width, heads, predictions, vocab):
    """name -> (build(kernel) -> block, inputs, head gradients) for one shape."""
    import mxnet as mx
    import numpy as np
    from gluonbert.model.attention import SelfAttention
    from gluonbert.model.dropout import Dropout
    from gluonbert.model.encoder import attention_bias
    from gluonbert.model.layer_norm import LayerNorm, ResidualLayerNorm
    from gluonbert.train.pretrain import PretrainingSums

    rng = np.random.RandomState(0)

    def array(*shape, scale=1.0):
        return mx.nd.array(rng.normal(size=shape) * scale)

    lengths = mx.nd.array(rng.randint(length // 2, length + 1, batch))
    x = array(length, batch, width)
    def norm(kernel):
        return LayerNorm(1e-12, width, kernels=kernel)

    def residual(kernel):
        return ResidualLayerNorm(1e-12, width, 0.1, kernels=kernel)

    def dropout(kernel):
        return Dropout(0.1, kernels=kernel)

    def attention(kernel):
        return SelfAttention(width, heads, dropout=0.1, kernels=kernel)

    def attention_inference(kernel):     # what predict runs: no dropout, weights unread
        return SelfAttention(width, heads, dropout=0.1, kernels=kernel, inference=kernel,
                             return_weights=False)

    def mlm_loss(kernel):
        return PretrainingSums(kernel)

    attention_inputs = [x, mx.nd.repeat(lengths, repeats=heads),
                        attention_bias(mx.nd, lengths, x, heads)]

    return {
        'layer_norm': (norm, [x], [array(length, batch, width)]),
        'residual_dropout_layer_norm': (residual, [x, array(length, batch, width)],
                                        [array(length, batch, width)]),
        'dropout (attention weights)': (dropout, [array(batch * heads, length, length)],
                                        [array(batch * heads, length, length)]),
        'self_attention': (attention, attention_inputs,
                           [array(length, batch, width), array(batch, heads, length, length)]),
        'residual_layer_norm, inference': (residual, [x, array(length, batch, width)], None),
        'self_attention, inference': (attention_inference, attention_inputs, None),
        'mlm_cross_entropy': (mlm_loss, [array(batch, 2), array(batch, predictions, vocab, scale=3),
                                         mx.nd.array(rng.randint(0, vocab, (batch, predictions))),
                                         mx.nd.ones((batch, predictions)),
                                         mx.nd.array(rng.randint(0, 2, batch))],
                              [mx.nd.ones((1,)), mx.nd.ones((1,))]),
    }


def _time_pair(build, inputs, heads, repeat, warmup):
    """Interleaved forward + backward timings of ``build(False)`` and ``build(True)``
    (forward only, in inference mode, when ``heads`` is None)."""
    import mxnet as mx
    from mxnet import autograd

    blocks = {}
    for kernel in (False, True):
        block = build(kernel)
        block.initialize()
        block.hybridize(static_alloc=True)
        blocks[kernel] = block
    grads = [x.copy() for x in inputs]
    for x in grads:
        x.attach_grad()
    wall = {False: [], True: []}
    cpu = {False: [], True: []}
    for i in range(warmup + repeat):
        for kernel in (False, True):
            mx.nd.waitall()
            start, start_cpu = time.perf_counter(), time.process_time()
            if heads is None:
                blocks[kernel](*inputs)
            else:
                with autograd.record():
                    outputs = blocks[kernel](*grads)
                outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
                autograd.backward(list(outputs[:len(heads)]), head_grads=heads)
            mx.nd.waitall()
            if i >= warmup:
                wall[kernel].append(time.perf_counter() - start)
                cpu[kernel].append(time.process_time() - start_cpu)
    summary = {}
    for kernel, name in ((False, 'mxnet'), (True, 'kernel')):
        graph = json.loads(blocks[kernel]._cached_graph[1].tojson())
        summary[name] = {'median_ms': 1e3 * statistics.median(wall[kernel]),
                         'min_ms': 1e3 * min(wall[kernel]),
                         'cpu_median_ms': 1e3 * statistics.median(cpu[kernel]),
                         'gluonbert_ops': sorted({n['op'] for n in graph['nodes']
                                                  if n['op'].startswith('gluonbert_')})}
    summary['speedup_median'] = summary['mxnet']['median_ms'] / summary['kernel']['median_ms']
    summary['speedup_cpu'] = summary['mxnet']['cpu_median_ms'] / summary['kernel']['cpu_median_ms']
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--repeat', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--threads', type=int, default=2, help='OpenMP threads (as run.py)')
    parser.add_argument('--quick', action='store_true', help='tiny shapes, 2 repetitions (CI)')
    parser.add_argument('--out', default=os.path.join(ROOT, 'runs', 'benchmarks',
                                                      'cpu_kernels.json'))
    args = parser.parse_args(argv)
    shapes = QUICK_SHAPES if args.quick else SHAPES
    if args.quick:
        args.repeat, args.warmup = 2, 1
    from gluonbert.platform import recommended_env
    os.environ.update(recommended_env(args.threads))    # before MXNet's OpenMP starts
    from gluonbert.platform import enable_amx, tune_allocator
    tune_allocator()  # before MXNet's first use, as the gluonbert command does
    enable_amx()
    import mxnet as mx
    from gluonbert import kernels as cpu_kernels
    if not cpu_kernels.available():
        print('gluonbert CPU kernels unavailable (no C++ compiler?): nothing to compare')
        return 1
    meta = {'cpu': cpu_info(), 'python': platform.python_version(), 'mxnet': mx.__version__,
            'compiler_flags': list(cpu_kernels.FLAGS), 'quick': args.quick,
            'omp_num_threads': os.environ.get('OMP_NUM_THREADS'),
            'load_before': os.getloadavg(),
            'time_utc': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}
    rows = []
    for shape, *sizes in shapes:
        for case, (build, inputs, heads) in _cases(*sizes).items():
            rows.append({'shape': shape, 'case': case,
                         **_time_pair(build, inputs, heads, args.repeat, args.warmup)})
    meta['load_after'] = os.getloadavg()
    print(f'{cpu_line(meta["cpu"])}; '
          f'load {meta["load_before"][0]:.2f} -> {meta["load_after"][0]:.2f}')
    print(f'{"shape":<10}{"case (forward + backward)":<34}{"MXNet ms":>10}{"kernel ms":>11}'
          f'{"speed-up":>10}{"CPU ms MXNet / kernel":>24}')
    for r in rows:
        print(f'{r["shape"]:<10}{r["case"]:<34}{r["mxnet"]["median_ms"]:>10.2f}'
              f'{r["kernel"]["median_ms"]:>11.2f}{r["speedup_median"]:>9.2f}x'
              f'{r["mxnet"]["cpu_median_ms"]:>14.1f} / {r["kernel"]["cpu_median_ms"]:.1f}')
    write_results(args.out, meta, rows)
    return 0


if __name__ == '__main__':
    sys.exit(main())
