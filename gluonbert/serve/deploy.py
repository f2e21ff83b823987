"""Serving exports of a fine-tuned classifier: fp32, and INT8 calibrated with oneDNN.

:func:`quantize` turns the directory written by ``gluonbert finetune`` (``model.params``,
``finetune.json``, ``vocab.txt``) into a deployment directory::

    model-symbol.json     the graph (fp32, or INT8 with oneDNN fused operators)
    model-0000.params     its parameters
    model-gluonbert.json  the BERT config, for gluonbert's input checks (import_exported)
    deploy.json           inputs, outputs, precision and quantization settings
    finetune.json         copied: task, labels, casing, max length (for ``gluonbert predict``)
    vocab.txt             copied

The graph loads with plain MXNet, without gluonbert::

    net = mx.gluon.SymbolBlock.imports('model-symbol.json', ['data0', 'data1', 'data2'],
                                       'model-0000.params')
    logits = net(token_ids, segment_ids, valid_length)       # (B, T), (B, T), (B,) -> (B, K)

``gluonbert predict --model-dir DIR`` serves the directory like the fine-tuned one (same TSV).

INT8 runs the matrix products in 8-bit integers. Calibration feeds a few batches of task
inputs through the fp32 graph and records the range of every quantized layer's output, from
which the scales are fixed ('naive': the observed min and max; 'entropy': the threshold that
keeps the KL divergence to the fp32 histogram smallest, see :class:`EntropyCollector`;
'clip': min and max, except for the GELU and LayerNorm outputs whose rare outliers would
waste most of the 256 levels, which get a range from quantiles of each batch, see
:class:`ClippingCollector`).

What is quantized: MXNet's 'smart' mode with the oneDNN backend fuses and quantizes the
FullyConnected layers (the GELU fused into the first feed-forward one) and the two attention
matrix products; the embeddings, LayerNorm, softmax, residual additions, the addition of the
attention mask and the pooler's tanh stay fp32. Before quantization, and in the fp32 export
alike, the parts of the graph that depend on parameters alone are computed once
(:func:`fold_constants`); the last layer runs on the [CLS] position alone after its
attention, as in every ``BERTClassifier`` graph (``BERTEncoder.cls_rows_only``).

CPUs without VNNI. oneDNN multiplies u8 by s8 with VNNI's ``vpdpbusd`` (exact int32 sums) when
the CPU has ``avx512_vnni`` or ``avx_vnni``; otherwise (e.g. AVX2 only, or AVX-512 without VNNI)
with ``vpmaddubsw``, which adds two neighbouring products into a saturating int16. A signed
input is shifted to u8 (0..255) first, so two products of 255 x 127 overflow, and with 8-bit
weights a share of a layer's outputs comes out wrong. Weights of at most 7 bits ([-63, 63])
keep every pair sum within int16 (2 x 255 x 63 = 32130). MXNet 1.9.1 cannot give channel-wise
weights 7 bits (its fused FullyConnected quantizes them from fp32 when the graph is loaded,
to 8 bits), so :func:`quantize` on such a CPU stores tensor-wise 7-bit weights, with one scale
per output channel all the same in the layers of fp32 output (each row divided by its scale,
which a ``broadcast_mul`` after the product restores: 'mixed' granularity), and narrows the
query/key/value output of each attention to 7 bits as well (keys and values are the second
operand of the attention's products). With VNNI it keeps 8-bit channel-wise weights.
``deploy.json`` records the choice and why (``quantization.weight_bits``, ``granularity``),
and :func:`load_exported` warns when a model of 8-bit weights is served without VNNI.
"""
import ctypes
import json
import logging
import os
import shutil
import tempfile
import warnings

import mxnet as mx
import numpy as np

from ..data.fileio import atomic_write
from ..errors import ConfigError, DataFormatError
from ..platform import cpu_info
from .classifier import load_finetuned

__all__ = ['quantize', 'export', 'load_exported', 'fold_constants',
           'int8_isa', 'weight_width',
           'ClippingCollector', 'EntropyCollector', 'CALIB_MODES', 'WEIGHT_BITS', 'DEPLOY_INFO',
           'PREFIX', 'INPUT_NAMES']

#: Calibration modes of :func:`quantize`.
CALIB_MODES = ('naive', 'entropy', 'clip')
#: Weight widths of :func:`quantize` (7: exact on every CPU; 8: exact with VNNI only).
WEIGHT_BITS = (7, 8)
#: The description file that marks a deployment directory.
DEPLOY_INFO = 'deploy.json'
#: File prefix of the graph and parameters inside a deployment directory.
PREFIX = 'model'
#: Input names of the exported graph, in call order.
INPUT_NAMES = ('data0', 'data1', 'data2')
#: Read for the CPU's instruction-set flags (a module attribute so that tests can replace it).
CPUINFO = '/proc/cpuinfo'
_VNNI_FLAGS = ('avx512_vnni', 'avx_vnni')

_logger = logging.getLogger(__name__)


def int8_isa(cpuinfo=None):
    """The CPU model and the ISA flags that matter for INT8 and fp32 inference.

    Parameters
    ----------
    cpuinfo : str, optional
        Path of a ``/proc/cpuinfo``-format file (default :data:`CPUINFO`).

    Outputs
    -------
    dict
        ``{'cpu': model name, 'flags': [avx2, avx512f, avx512_vnni, avx_vnni, avx512_bf16,
        amx_int8 present], 'vnni': bool}``; ``cpu`` is ``'unknown'`` and ``vnni`` False when
        the file cannot be read.
    """
    info = cpu_info(cpuinfo or CPUINFO)
    wanted = ('avx2', 'avx512f', 'avx512_vnni', 'avx_vnni', 'avx512_bf16', 'amx_int8')
    return {'cpu': info.model, 'flags': [f for f in wanted if info.has(f)],
            'vnni': any(info.has(f) for f in _VNNI_FLAGS)}


def weight_width(isa, channel_wise=None, weight_bits=None):
    """How :func:`quantize` stores the weights, and why (module docstring: CPUs without VNNI).

    Parameters
    ----------
    isa : dict
        :func:`int8_isa` of the CPU the model is quantized on (taken as the serving CPU).
    channel_wise : bool or None
        One weight scale per output channel (True: MXNet's channel-wise quantization, 8 bits
        only) or one per matrix (False); None: channel-wise with 8 bits, 'mixed' with 7.
    weight_bits : {7, 8} or None
        None: 8 with VNNI, 7 without, or 8 when ``channel_wise`` is True.

    Outputs
    -------
    (granularity, weight_bits, reason) : (str, int, str)
        ``granularity`` is 'channel-wise', 'tensor-wise' or 'mixed' (7 bits: one scale per
        output channel in the layers of fp32 output, one per matrix in the others);
        ``reason`` says why, for ``deploy.json``.
    """
    if weight_bits not in (None,) + WEIGHT_BITS:
        raise ConfigError(f'weight_bits={weight_bits!r}: expected one of {list(WEIGHT_BITS)} '
                          'or None (7 on a CPU without VNNI, else 8)')
    if channel_wise and weight_bits == 7:
        raise ConfigError('channel_wise=True with weight_bits=7: MXNet 1.9.1 quantizes '
                          'channel-wise weights itself, to 8 bits, when the graph is loaded; '
                          'expected 8 bits, or the default scales for 7 bits')
    vnni = 'VNNI (exact int32 sums)' if isa['vnni'] else \
        'no VNNI: 8-bit weights saturate oneDNN\'s int16 pair sums'
    if weight_bits is not None:
        reason = f'requested ({vnni})'
    elif channel_wise:
        weight_bits = 8
        reason = f'channel-wise weights are 8-bit in MXNet 1.9.1 ({vnni})'
    else:
        weight_bits, reason = (8 if isa['vnni'] else 7), vnni
    granularity = ('tensor-wise' if channel_wise is False else
                   'channel-wise' if weight_bits == 8 else 'mixed')
    return granularity, weight_bits, reason


class ClippingCollector:
    """Layer-output ranges for calibration, with the outliers of GELU and LayerNorm outputs cut.

    A BERT layer's GELU and LayerNorm outputs hold a few values far larger than the rest; a
    min/max range spends most int8 levels on them and rounds the bulk to a handful of steps.
    For those outputs the range is the mean over batches of each batch's ``quantile`` and
    ``1 - quantile`` values (a clipped tail costs less than a coarse bulk); every other output
    keeps its min and max over all batches, as 'naive' calibration.

    Given to ``quantize_net_v2`` as ``LayerOutputCollector``; it reads the outputs through
    MXNet's monitor callback (:meth:`collect`) and leaves the ranges in ``min_max_dict``.

    Parameters
    ----------
    quantile : float
        Upper quantile kept for the clipped outputs (the lower one is ``1 - quantile``).
    clip_patterns : tuple of str
        Substrings of the output names that are clipped: the GELU (fused into the preceding
        FullyConnected by oneDNN: ``fully_connected_eltwise``, or alone: ``leakyrelu``) and
        LayerNorm outputs.
    """

    def __init__(self, quantile=0.9999, clip_patterns=('fully_connected_eltwise', 'leakyrelu',
                                                         'layernorm')):
        if not 0.5 < quantile <= 1.0:
            raise ConfigError(f'quantile={quantile}: expected a value in (0.5, 1]')
        self.quantile = quantile
        self.clip_patterns = tuple(clip_patterns)
        self.min_max_dict = {}
        self.clipped = set()
        self._sums = {}

    def collect(self, name, arr):
        """Monitor callback: ``name`` of an array and its handle."""
        from mxnet.base import NDArrayHandle, py_str
        name = py_str(name)
        if not name.endswith('_output'):       # inputs and weights: no scale needed
            return
        values = mx.nd.NDArray(ctypes.cast(arr, NDArrayHandle), writable=False).asnumpy()
        if values.size == 0 or not np.issubdtype(values.dtype, np.floating):
            return
        if any(p in name for p in self.clip_patterns):
            low, high = np.quantile(values, [1.0 - self.quantile, self.quantile])
            total = self._sums.get(name, (0.0, 0.0, 0))
            total = (total[0] + float(low), total[1] + float(high), total[2] + 1)
            self._sums[name] = total
            self.min_max_dict[name] = (total[0] / total[2], total[1] / total[2])
            self.clipped.add(name)
        else:
            low, high = float(values.min()), float(values.max())
            if name in self.min_max_dict:
                old = self.min_max_dict[name]
                low, high = min(old[0], low), max(old[1], high)
            self.min_max_dict[name] = (low, high)


class EntropyCollector:
    """Layer-output ranges that keep the int8 histogram closest to the fp32 one (KL divergence).

    Each output's absolute values are counted in a histogram of ``num_bins`` bins over
    ``[0, max |x|]`` (the range widens when a later batch goes further: the counts are then
    moved to the wider bins). The threshold is the bin edge ``t`` that minimises KL(P || Q),
    where P is the histogram cut at ``t`` (the tail added to the last bin) and Q is P rounded
    to the levels int8 (127, or 255 for non-negative outputs) can hold over ``[0, t]``.

    An own implementation of the idea behind MXNet's 'entropy' mode, which needs SciPy.

    Parameters
    ----------
    num_bins : int
        Histogram bins (more: finer thresholds, slower search).
    """

    def __init__(self, num_bins=2048):
        if num_bins < 256:
            raise ConfigError(f'num_bins={num_bins}: expected >= 256')
        self.num_bins = num_bins
        self._hists = {}            # name -> [counts, top, min, max]

    def collect(self, name, arr):
        """Monitor callback: ``name`` of an array and its handle."""
        from mxnet.base import NDArrayHandle, py_str
        name = py_str(name)
        if not name.endswith('_output'):
            return
        values = mx.nd.NDArray(ctypes.cast(arr, NDArrayHandle), writable=False).asnumpy()
        if values.size == 0 or not np.issubdtype(values.dtype, np.floating):
            return
        low, high = float(values.min()), float(values.max())
        top = max(abs(low), abs(high), 1e-8)
        entry = self._hists.get(name)
        if entry is None:
            entry = self._hists[name] = [np.zeros(self.num_bins), top, low, high]
        elif top > entry[1]:                 # widen: old bin centres go to the new bins
            centres = (np.arange(self.num_bins) + 0.5) * entry[1] / self.num_bins
            moved = np.minimum((centres / top * self.num_bins).astype(int), self.num_bins - 1)
            counts = np.zeros(self.num_bins)
            np.add.at(counts, moved, entry[0])
            entry[0], entry[1] = counts, top
        entry[0] += np.histogram(np.abs(values), bins=self.num_bins, range=(0, entry[1]))[0]
        entry[2], entry[3] = min(entry[2], low), max(entry[3], high)

    @property
    def min_max_dict(self):
        """name -> (min, max) thresholds, read by MXNet's calibration."""
        out = {}
        for name, (counts, top, low, high) in self._hists.items():
            if 'softmax' in name:       # attention probabilities: a clipped peak is lost
                out[name] = (low, high)
                continue
            levels = 255 if low >= 0 else 127
            edge = _kl_threshold(counts, levels) * top / self.num_bins
            out[name] = (0.0 if low >= 0 else -edge, edge)
        return out


def _kl_threshold(counts, levels, step=8):
    """Number of leading bins of ``counts`` whose int8 rounding loses the least (KL)."""
    best, best_kl = len(counts), np.inf
    for cut in range(max(levels, step), len(counts) + 1, step):
        base = counts[:cut].astype(np.float64)
        p = base.copy()
        p[-1] += counts[cut:].sum()          # P: the values beyond the cut, clipped to it
        if p.sum() == 0:
            continue
        # Q: the cut histogram merged into `levels` groups, each group's mass spread back
        # evenly over its non-empty bins (what int8 can represent of it)
        groups = np.minimum((np.arange(cut) * levels) // cut, levels - 1)
        nonzero = (base > 0).astype(np.float64)
        totals = np.bincount(groups, weights=base, minlength=levels)
        sizes = np.bincount(groups, weights=nonzero, minlength=levels)
        q = nonzero * totals[groups] / np.maximum(sizes[groups], 1)
        p, q = p / p.sum(), q / max(q.sum(), 1e-30)
        mask = p > 0
        kl = float(np.sum(p[mask] * np.log(p[mask] / np.maximum(q[mask], 1e-12))))
        if kl < best_kl:
            best, best_kl = cut, kl
    return best


def _check_cpu(ctx):
    if ctx is not None and ctx.device_type != 'cpu':
        raise ConfigError(f'context {ctx}: INT8 quantization and its oneDNN kernels run on the '
                          'CPU only; expected mx.cpu() (quantize on the CPU, then serve there)')
    if not mx.runtime.Features().is_enabled('MKLDNN'):
        raise ConfigError('this MXNet build has no oneDNN (MKLDNN) backend, which INT8 '
                          'inference needs; expected an mxnet 1.9.1 wheel built with MKLDNN')


def _check_fine_tuned(model_dir):
    """A deployment directory is not a fine-tuned one (its graph cannot be quantized again);
    the other checks are those of ``load_classifier``."""
    if os.path.isfile(os.path.join(model_dir, DEPLOY_INFO)):
        raise ConfigError(f'--model-dir {model_dir}: holds an exported model ({DEPLOY_INFO}); '
                          'expected the directory written by gluonbert finetune '
                          '(model.params, finetune.json, vocab.txt)')


def _read_calibration(path, spec, transform):
    """Transformed samples of ``path``; the task's reader refuses a file of another task
    (other columns or labels) with a DataFormatError naming the line."""
    from ..data.tasks import read_examples
    if not os.path.isfile(path):
        raise DataFormatError(path, None, 'no such calibration file; expected a TSV in the '
                              "format of the model's task")
    records = read_examples(path, spec)
    if not records:
        raise DataFormatError(path, None, 'no examples; expected at least one row to '
                              'calibrate on')
    texts = [(r.text_a, r.text_b) if spec.pair else (r.text_a,) for r in records]
    return [transform(t) for t in texts]


def _calibration_iter(samples, batch_size, num_batches, pad_id):
    """A DataIter of ``num_batches`` full batches (fewer when the file is short), padded to
    the longest calibration sample: the calibration graph is bound to one shape."""
    from ..data import ClassificationBatchify
    count = min(len(samples), batch_size * num_batches)
    batch = min(batch_size, count)
    count -= count % batch
    arrays = ClassificationBatchify(pad_id=pad_id, as_numpy=True)(
        [s[:3] for s in samples[:count]])
    data = {name: a for name, a in zip(INPUT_NAMES, arrays[:3])}
    return mx.io.NDArrayIter(data, batch_size=batch, shuffle=False), count


def _write_directory(out_dir, block, model_dir, config, info):
    """Writes the export into a sibling temporary directory, then renames it to ``out_dir``
    (replacing an earlier deployment directory, never another one). ``block``: the folded
    fp32 or the quantized SymbolBlock, called at least once (export writes that graph)."""
    out_dir = os.path.abspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isfile(os.path.join(out_dir, DEPLOY_INFO)):
        if not os.path.isdir(out_dir) or os.listdir(out_dir):
            raise ConfigError(f'--out-dir {out_dir}: exists and is not a deployment directory; '
                              'expected a new path (or one written by gluonbert quantize)')
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.deploy-', dir=parent)
    try:
        prefix = os.path.join(tmp, PREFIX)
        block.export(prefix, epoch=0)
        with atomic_write(f'{prefix}-gluonbert.json', newline='\n') as f:
            json.dump({'block': 'BERTClassifier', 'config': config.to_dict()}, f, indent=2)
        for name in ('finetune.json', 'vocab.txt'):
            shutil.copyfile(os.path.join(model_dir, name), os.path.join(tmp, name))
        with atomic_write(os.path.join(tmp, DEPLOY_INFO), newline='\n') as f:
            json.dump(info, f, indent=2)
        if os.path.exists(out_dir):
            shutil.rmtree(out_dir)
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _describe(precision, spec, config, extra=None):
    info = {
        'format': 'gluonbert-deploy-1',
        'precision': precision,
        'symbol': f'{PREFIX}-symbol.json',
        'params': f'{PREFIX}-0000.params',
        'inputs': [
            {'name': INPUT_NAMES[0], 'shape': ['batch', 'length'], 'dtype': 'int32',
             'meaning': 'token ids ([CLS] a [SEP] b [SEP], then padding)'},
            {'name': INPUT_NAMES[1], 'shape': ['batch', 'length'], 'dtype': 'int32',
             'meaning': 'segment ids (0 for [CLS] a [SEP], 1 for b [SEP])'},
            {'name': INPUT_NAMES[2], 'shape': ['batch'], 'dtype': 'int32',
             'meaning': 'valid length of each row (tokens before the padding)'},
        ],
        'outputs': [{'name': 'scores', 'shape': ['batch', len(spec.labels)],
                     'dtype': 'float32', 'meaning': 'unnormalised class logits; softmax '
                     'gives the probabilities of the labels in this order',
                     'labels': list(spec.labels)}],
        'max_length': config.max_length,
        'vocab_size': config.vocab_size,
    }
    info.update(extra or {})
    return info


def _build_graph(net):
    """One call of the hybridized ``net``: export writes the graph that call built."""
    ids = mx.nd.ones((1, 2), dtype='int32')
    net(ids, mx.nd.zeros((1, 2), dtype='int32'), mx.nd.array([2], dtype='int32'))


def fold_constants(symbol, params, inputs=INPUT_NAMES):
    """Replaces every part of a graph that depends on parameters alone by its value.

    gluonbert's attention builds its (3C, C) query-key-value weight from the three (C, C)
    parameters with reshapes and a concat in every forward pass; folded, it is one parameter,
    which the INT8 graph then holds quantized once (offline) instead of quantizing it at each
    call.

    Parameters
    ----------
    symbol : Symbol
    params : dict of str -> NDArray
        The graph's parameters (arguments other than ``inputs``, and auxiliary states).
    inputs : sequence of str
        Names of the data inputs (never folded).

    Outputs
    -------
    (Symbol, dict of str -> NDArray)
        The graph with each maximal constant subgraph feeding the rest replaced by a
        variable ``<node>_folded`` (``_folded_weight``/``_folded_bias`` when it is a
        FullyConnected's weight or bias), and the parameters it uses.
    """
    graph = json.loads(symbol.tojson())
    nodes = graph['nodes']
    constant = [False] * len(nodes)
    for i, node in enumerate(nodes):
        if node['op'] == 'null':
            constant[i] = node['name'] not in inputs
        else:
            constant[i] = bool(node['inputs']) and 'Dropout' not in node['op'] and all(
                constant[j[0]] for j in node['inputs'])
    consumers = {}
    for i, node in enumerate(nodes):
        for j in node['inputs']:
            consumers.setdefault(j[0], []).append((i, j[1]))
    heads = {h[0] for h in graph['heads']}
    frontier = [i for i, node in enumerate(nodes)
                if constant[i] and node['op'] != 'null'
                and (i in heads or any(not constant[c] for c, _ in consumers.get(i, [])))
                and all(out == 0 for _, out in consumers.get(i, []))]
    values = {}
    internals = symbol.get_internals()
    for i in frontier:
        name = nodes[i]['name']
        part = internals[f'{name}_output']
        # MXNet quantizes a FullyConnected's parameters offline by their name's ending
        role = {(nodes[c]['op'], k) for c, _ in consumers.get(i, [])
                for k, j in enumerate(nodes[c]['inputs']) if j[0] == i}
        new = f'{name}_folded' + ('_weight' if ('FullyConnected', 1) in role else
                                  '_bias' if ('FullyConnected', 2) in role else '')
        args = {k: params[k] for k in part.list_arguments()}
        aux = {k: params[k] for k in part.list_auxiliary_states()}
        out = part.bind(mx.cpu(), args, aux_states=aux, grad_req='null').forward()[0]
        values[new] = out.copyto(mx.cpu())
        nodes[i] = {'op': 'null', 'name': new, 'inputs': []}
    graph['arg_nodes'] = [i for i, node in enumerate(nodes) if node['op'] == 'null']
    folded = mx.sym.load_json(mx.sym.load_json(json.dumps(graph)).tojson())
    names = set(folded.list_arguments()) | set(folded.list_auxiliary_states())
    values.update({k: v for k, v in params.items() if k in names})
    return folded, {k: v for k, v in values.items() if k in names}


def _plain_block(net, directory):
    """``net`` exported and its constants folded (:func:`fold_constants`), as a SymbolBlock,
    and the list of these rewrites."""
    prefix = os.path.join(directory, 'fp32')
    _build_graph(net)
    net.export(prefix, epoch=0)
    symbol = mx.sym.load(f'{prefix}-symbol.json')
    params = {k.split(':', 1)[1]: v for k, v in mx.nd.load(f'{prefix}-0000.params').items()}
    symbol, params = fold_constants(symbol, params)
    with warnings.catch_warnings():         # SymbolBlock's note on untyped inputs
        warnings.simplefilter('ignore', UserWarning)
        block = mx.gluon.SymbolBlock(symbol, [mx.sym.var(n) for n in INPUT_NAMES])
    block.collect_params().load_dict(params, ctx=mx.cpu())
    block.hybridize(static_alloc=True)
    _build_graph(block)
    return block, ['constants folded']


def load_exported(model_dir, contexts=None):
    """The graph of a deployment directory, with gluonbert's input checks.

    Parameters
    ----------
    model_dir : str
        Written by :func:`quantize` or :func:`export`.
    contexts : list of mx.Context, optional
        CPU contexts (default ``[mx.cpu()]``).

    Outputs
    -------
    ExportedBERT
        Hybridized; call it as ``net(token_ids, segment_ids, valid_length)`` -> (B, K) logits.

    An INT8 model of 8-bit weights on a CPU without VNNI loads with a warning: its products
    saturate there (module docstring); ``gluonbert quantize`` on that CPU writes 7-bit ones.
    """
    from ..model import import_exported
    path = os.path.join(model_dir, DEPLOY_INFO)
    try:
        with open(path, encoding='utf-8') as f:
            info = json.load(f)
        precision = info['precision']
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f'{path}: not a deployment description written by gluonbert '
                          f'quantize ({type(err).__name__}: {err})') from None
    contexts = contexts or [mx.cpu()]
    if precision == 'int8' and any(c.device_type != 'cpu' for c in contexts):
        raise ConfigError(f'{model_dir} holds an INT8 model (oneDNN CPU kernels); got devices '
                          f'{contexts}, expected CPU ones (--cpus, not --gpus)')
    bits = (info.get('quantization') or {}).get('weight_bits', 8)   # 8: written before 7 was
    isa = int8_isa() if precision == 'int8' and bits == 8 else None
    if isa and not isa['vnni']:
        _logger.warning('%s: INT8 with 8-bit weights on a CPU without VNNI (%s): oneDNN\'s '
                        'products saturate here and the outputs are wrong; quantize the model '
                        'on this CPU (7-bit weights) or serve it on a CPU with VNNI',
                        model_dir, isa['cpu'])
    prefix = os.path.join(model_dir, PREFIX)
    with warnings.catch_warnings():         # SymbolBlock's note on untyped inputs
        warnings.simplefilter('ignore', UserWarning)
        net = import_exported(prefix, ctx=contexts) if precision == 'float32' else \
            _import_int8(prefix, contexts)
    net.hybridize(static_alloc=True)
    return net


def _import_int8(prefix, contexts):
    """As :func:`gluonbert.model.import_exported`, keeping the int8 parameters' own dtype
    (tensor-wise quantization stores int8 weights)."""
    from ..model import BERTConfig, ExportedBERT
    from ..errors import WeightsNotFoundError
    files = [f'{prefix}-symbol.json', f'{prefix}-0000.params', f'{prefix}-gluonbert.json']
    for name in files:
        if not os.path.isfile(name):
            raise WeightsNotFoundError(f'{name}: not found; expected the files written by '
                                       'gluonbert quantize')
    try:
        with open(files[2], encoding='utf-8') as f:
            config = BERTConfig.from_dict(json.load(f)['config'], source=files[2])
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f'{files[2]}: not an export description written by gluonbert '
                          f'({type(err).__name__}: {err})') from None
    net = ExportedBERT(mx.sym.load(files[0]), [mx.sym.var(n) for n in INPUT_NAMES], config)
    net.collect_params().load(files[1], ctx=contexts, cast_dtype=True, dtype_source='saved')
    return net


def export(model_dir, out_dir, ctx=None):
    """Writes the fp32 deployment directory of a fine-tuned classifier (no calibration).

    Parameters
    ----------
    model_dir : str
        Directory written by ``gluonbert finetune``.
    out_dir : str
        Deployment directory to write (see the module docstring).
    ctx : mx.Context, optional
        Must be the CPU (default).

    Outputs
    -------
    dict
        ``{'out_dir': ..., 'precision': 'float32'}``.
    """
    if ctx is not None and ctx.device_type != 'cpu':
        raise ConfigError(f'context {ctx}: the export is written from the CPU; expected '
                          'mx.cpu()')
    _check_fine_tuned(model_dir)
    net, _, spec = load_finetuned(model_dir, [mx.cpu()], kernels=False)
    with tempfile.TemporaryDirectory() as tmp:
        block, rewrites = _plain_block(net, tmp)
        out = _write_directory(out_dir, block, model_dir, net.config,
                               _describe('float32', spec, net.config,
                                         {'graph_rewrites': rewrites}))
    return {'out_dir': out, 'precision': 'float32'}


def quantize(model_dir, calib_data, out_dir, calib_mode='naive', num_calib_batches=10,
             batch_size=32, channel_wise=None, quantile=0.9999, weight_bits=None, ctx=None):
    """Calibrates a fine-tuned classifier and writes its INT8 deployment directory.

    Parameters
    ----------
    model_dir : str
        Directory written by ``gluonbert finetune`` (``model.params``, ``finetune.json``,
        ``vocab.txt``).
    calib_data : str
        A TSV of the model's task (e.g. MRPC train.tsv); labels, if any, must be the task's.
    out_dir : str
        Deployment directory to write (see the module docstring).
    calib_mode : {'naive', 'entropy', 'clip'}
        How output ranges are fixed from the calibration batches (module docstring).
    num_calib_batches : int
        Batches of ``batch_size`` samples fed through the fp32 graph (the first ones of the
        file; fewer when it is shorter).
    batch_size : int
    channel_wise : bool or None
        One weight scale per output channel of each FullyConnected (True) or one per matrix
        (False); None: per output channel with 8-bit weights, 'mixed' with 7-bit ones (one
        scale per output channel where the layer's output is fp32, one per matrix in the
        query/key/value and first feed-forward layers; :func:`weight_width`).
    quantile : float
        For ``calib_mode='clip'``: see :class:`ClippingCollector`.
    weight_bits : {7, 8} or None
        Width of the quantized weights (and of each attention's query/key/value output when
        7); None: 8 on a CPU with VNNI, 7 without (:func:`weight_width`; module docstring).
    ctx : mx.Context, optional
        Must be the CPU (default): oneDNN's INT8 kernels are CPU kernels.

    Outputs
    -------
    dict
        ``{'out_dir', 'precision': 'int8', 'calib_mode', 'calib_samples', 'agreement'
        (fraction of calibration samples whose int8 and fp32 predicted labels agree),
        'max_prob_diff', 'granularity', 'weight_bits', 'isa' (:func:`int8_isa`), 'warning'
        (None, or why INT8 will be slow or inexact on this CPU)}``. The same settings are in
        ``deploy.json``.
    """
    from mxnet.contrib.quantization import quantize_net_v2

    _check_cpu(ctx)
    if calib_mode not in CALIB_MODES:
        raise ConfigError(f'calib_mode={calib_mode!r}: expected one of {list(CALIB_MODES)}')
    if num_calib_batches < 1 or batch_size < 1:
        raise ConfigError(f'num_calib_batches={num_calib_batches}, batch_size={batch_size}: '
                          'expected both >= 1')
    isa = int8_isa()
    granularity, weight_bits, reason = weight_width(isa, channel_wise, weight_bits)
    warning = None
    if not isa['vnni']:
        warning = (f'this CPU ({isa["cpu"]}) has no VNNI (avx512_vnni / avx_vnni): INT8 will '
                   'be slow here, likely no faster than fp32; serve it on a CPU with VNNI')
        if weight_bits == 8:
            warning += ('; and its 8-bit weights make oneDNN\'s products saturate here (wrong '
                        'outputs): serve this model on a CPU with VNNI only')
        _logger.warning(warning)
    _check_fine_tuned(model_dir)
    net, transform, spec = load_finetuned(model_dir, [mx.cpu()], kernels=False)
    samples = _read_calibration(calib_data, spec, transform)
    calib_iter, count = _calibration_iter(samples, batch_size, num_calib_batches,
                                          transform.pad_id)
    with tempfile.TemporaryDirectory() as tmp:
        block, rewrites = _plain_block(net, tmp)
        collector = (ClippingCollector(quantile) if calib_mode == 'clip' else
                     EntropyCollector() if calib_mode == 'entropy' else None)
        with warnings.catch_warnings():     # SymbolBlock's note on untyped inputs
            warnings.simplefilter('ignore', UserWarning)
            qnet = quantize_net_v2(
                block, quantized_dtype='auto', quantize_mode='smart',
                quantize_granularity='tensor-wise' if weight_bits == 7 else granularity,
                calib_data=calib_iter, calib_mode='customize' if collector else calib_mode,
                num_calib_examples=count, ctx=mx.cpu(), LayerOutputCollector=collector)
        if weight_bits == 7:
            qnet, narrowed = _seven_bits(qnet, block, tmp, granularity == 'mixed')
            rewrites = rewrites + [
                f'7-bit weights ({narrowed["weights"]} matrices, {narrowed["channel_scales"]} '
                'of them with one scale per output channel, restored after the product) and '
                f'query/key/value ({narrowed["qkv"]} attentions)']
        qnet.hybridize(static_alloc=True)
        agreement, diff = _agreement(block, qnet, calib_iter)
        settings = {'calib_mode': calib_mode, 'calib_data': os.path.abspath(calib_data),
                    'calib_samples': count, 'batch_size': calib_iter.batch_size,
                    'granularity': granularity, 'weight_bits': weight_bits,
                    'weight_bits_reason': reason, 'quantize_mode': 'smart',
                    'clip_quantile': quantile if calib_mode == 'clip' else None,
                    'calib_agreement': agreement, 'calib_max_prob_diff': diff}
        info = _describe('int8', spec, net.config,
                         {'quantization': settings, 'quantized_on': isa,
                          'graph_rewrites': rewrites})
        out = _write_directory(out_dir, qnet, model_dir, net.config, info)
    return {'out_dir': out, 'precision': 'int8', 'calib_mode': calib_mode,
            'calib_samples': count, 'agreement': agreement, 'max_prob_diff': diff,
            'granularity': granularity, 'weight_bits': weight_bits, 'isa': isa,
            'warning': warning}


#: MXNet 1.9.1's int8 range: a scale maps the largest magnitude to 127.5 (quantization_utils.h)
_INT8_RANGE = 127.5


def _seven_bits(qnet, fp32, directory, per_row):
    """The tensor-wise INT8 graph ``qnet`` with every FullyConnected weight stored in 7 bits
    and each attention's query/key/value output quantized to 7 bits.

    The weights are quantized again from the fp32 weights of ``fp32`` (one rounding), to
    integers in [-63, 63], with the range that makes MXNet decode them right (its scale is
    127.5 / the range's magnitude). One scale per matrix is coarse where rows differ much
    (BERT's second feed-forward layer: a few output channels of large weights), so with
    ``per_row`` the layers whose output is fp32 (attention projection, second feed-forward
    layer, pooler, classifier) get one scale per output channel all the same: each row and
    its bias are divided by the row's largest magnitude before quantization, and a
    ``broadcast_mul`` after the product multiplies it back. The query/key/value and first
    feed-forward layers requantize their output inside the fused operator: one scale per
    matrix. The query/key/value layer's calibrated output range is doubled, since keys and
    values are the second operand of the attention's products.

    Outputs
    -------
    (SymbolBlock, dict)
        The rewritten graph (called once), and how many layers changed:
        ``{'weights': int, 'channel_scales': int, 'qkv': int}``.
    """
    prefix = os.path.join(directory, 'int8')
    qnet.hybridize(static_alloc=True)
    _build_graph(qnet)                      # export writes the graph of a call
    qnet.export(prefix, epoch=0)
    with open(f'{prefix}-symbol.json', encoding='utf-8') as f:
        graph = json.load(f)
    params = mx.nd.load(f'{prefix}-0000.params')
    source = {name: p.data(mx.cpu()).asnumpy() for name, p in fp32.collect_params().items()}
    nodes = graph['nodes']
    attention_inputs = {n['inputs'][0][0] for n in nodes
                        if n['op'] in ('_sg_mkldnn_selfatt_qk', '_sg_mkldnn_selfatt_valatt')}
    done, row_scales = {'weights': 0, 'channel_scales': 0, 'qkv': 0}, {}

    def store(names, values, bits):
        """``values`` as integers of at most ``bits`` bits into the variables ``names``
        (array, min, max), under MXNet's decoding: 127.5 / max(|min|, |max|) per unit."""
        top = float(np.abs(values).max()) or 1.0
        levels = 2 ** (bits - 1) - 1
        params[f'arg:{names[0]}'] = mx.nd.array(np.rint(values * (levels / top)), dtype='int8')
        params[f'arg:{names[1]}'] = mx.nd.array([-top * _INT8_RANGE / levels])
        params[f'arg:{names[2]}'] = mx.nd.array([top * _INT8_RANGE / levels])

    for i, node in enumerate(nodes):
        attrs = node.get('attrs', {})
        if node['op'] != '_sg_mkldnn_fully_connected' or attrs.get('quantized') != 'True':
            continue
        # inputs: data, weight[, bias], then the (min, max) of each
        names = [nodes[j]['name'] for j, _, _ in node['inputs']]
        base = len(names) // 3
        weight = source[names[1][:-len('_quantize')]]
        bias = source[names[2][:-len('_quantize')]] if base == 3 else None
        if per_row and attrs.get('enable_float_output') == 'True':
            rows = np.abs(weight).max(axis=1)
            rows[rows == 0] = 1.0
            weight = weight / rows[:, None]
            bias = None if bias is None else bias / rows
            row_scales[i] = rows
            done['channel_scales'] += 1
        store([names[1], names[base + 2], names[base + 3]], weight, 7)
        if bias is not None:
            store([names[2], names[base + 4], names[base + 5]], bias, 8)
        done['weights'] += 1
        if i in attention_inputs:
            for key in ('min_calib_range', 'max_calib_range'):
                attrs[key] = repr(2 * float(attrs[key]))
            done['qkv'] += 1
    for i, rows in row_scales.items():
        params[f'arg:{nodes[i]["name"]}_row_scale'] = mx.nd.array(rows)
    graph = _scale_outputs(graph, row_scales)
    with open(f'{prefix}-symbol.json', 'w', encoding='utf-8') as f:
        json.dump(graph, f)
    mx.nd.save(f'{prefix}-0000.params', params)
    with warnings.catch_warnings():         # SymbolBlock's note on untyped inputs
        warnings.simplefilter('ignore', UserWarning)
        block = mx.gluon.SymbolBlock(mx.sym.load(f'{prefix}-symbol.json'),
                                     [mx.sym.var(n) for n in INPUT_NAMES])
    block.collect_params().load(f'{prefix}-0000.params', ctx=mx.cpu(), cast_dtype=True,
                                dtype_source='saved')
    block.hybridize(static_alloc=True)
    _build_graph(block)
    return block, done


def _scale_outputs(graph, scaled):
    """The graph (MXNet JSON) with the first output of each node index of ``scaled``
    multiplied by a new variable ``<node>_row_scale`` (one value per output channel, the last
    axis) before it reaches any consumer or graph output."""
    out, moved, rescaled = [], {}, {}

    def entry(j, k, v):
        return [rescaled[j], 0, 0] if k == 0 and j in rescaled else [moved[j], k, v]
    for i, node in enumerate(graph['nodes']):
        out.append(dict(node, inputs=[entry(*e) for e in node['inputs']]))
        moved[i] = len(out) - 1
        if i in scaled:
            out.append({'op': 'null', 'name': f'{node["name"]}_row_scale', 'inputs': []})
            out.append({'op': 'broadcast_mul', 'name': f'{node["name"]}_rescale',
                        'inputs': [[moved[i], 0, 0], [moved[i] + 1, 0, 0]]})
            rescaled[i] = len(out) - 1
    return {'nodes': out, 'arg_nodes': [i for i, n in enumerate(out) if n['op'] == 'null'],
            'heads': [entry(*h) for h in graph['heads']], 'attrs': graph.get('attrs', {})}


def _agreement(fp32, int8, data):
    """Fraction of equal predicted labels, and the largest probability difference."""
    data.reset()
    same, total, diff = 0, 0, 0.0
    for batch in data:
        a = mx.nd.softmax(fp32(*batch.data), axis=-1).asnumpy()
        b = mx.nd.softmax(int8(*batch.data), axis=-1).asnumpy()
        same += int((a.argmax(1) == b.argmax(1)).sum())
        total += len(a)
        diff = max(diff, float(np.abs(a - b).max()))
    return same / max(total, 1), diff
