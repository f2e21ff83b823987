"""What each workload runs: model sizes, batch shapes, repetitions, and which implementations.

The full sizes are those of the comparison in ``benchmarks/README.md``; ``--quick`` replaces
every model by a tiny one and every batch by a few short sequences (a harness check for CI,
not a measurement).
"""
import dataclasses

__all__ = ['ModelShape', 'Workload', 'IMPLEMENTATIONS', 'REFERENCE_IMPLS', 'workloads']

#: Implementation names, in table order. ``mxnet``/``torch`` run only the GEMM workload.
#: ``gluonnlp-malloc`` is GluonNLP in a process given gluonbert's allocator settings
#: (``gluonbert.platform``): how much of gluonbert's lead that setting alone explains.
#: ``hf-bf16`` is HF eager under ``torch.autocast('cpu', dtype=torch.bfloat16)``: reported,
#: not a target (MXNet 1.9.1 has no usable bfloat16 path on CPU).
IMPLEMENTATIONS = ('gluonbert', 'gluonnlp', 'gluonnlp-malloc', 'hf-eager', 'hf-compile',
                   'hf-bf16', 'mxnet', 'torch')
#: The implementations gluonbert is compared with (ratios gluonbert / each of them).
REFERENCE_IMPLS = ('gluonnlp', 'gluonnlp-malloc', 'hf-eager', 'hf-compile', 'hf-bf16')


@dataclasses.dataclass(frozen=True)
class ModelShape:
    """BERT sizes shared by every implementation of a workload.

    Parameters
    ----------
    num_layers, units, hidden_size, num_heads : int
        L, C, feed-forward width F, and H.
    vocab_size : int
        V (word-embedding rows and MLM output width).
    max_length : int
        Rows of the position table.
    dropout : float
        Dropout probability everywhere (training workloads only; inference runs in eval mode).
    """
    num_layers: int
    units: int
    hidden_size: int
    num_heads: int
    vocab_size: int
    max_length: int = 512
    dropout: float = 0.1


@dataclasses.dataclass(frozen=True)
class Workload:
    """One row group of the result table.

    Parameters
    ----------
    name : str
        Key in the JSON output (``train_base`` ...).
    kind : str
        ``gemm``, ``train`` (classifier fine-tuning step), ``infer``, ``pretrain`` (MLM+NSP
        step), ``finetune`` (classifier steps over bucketed MRPC-length batches) or ``data_prep``.
    title : str
        Human-readable description.
    model : ModelShape or None
    batch_size, seq_len : int
        B and T (``finetune``: B, and the longest padded length).
    num_masked : int
        P, masked positions per sequence (``pretrain``).
    gemm_sizes : tuple of int
        Square sizes n of the ``gemm`` workload (n x n times n x n).
    warmup, repeat : int
        Untimed and timed repetitions.
    impls : tuple of str
        Implementations that run this workload.
    unit : str
        What one item is (``seq``, ``pair``) for the ``items/s`` column.
    """
    name: str
    kind: str
    title: str
    model: ModelShape = None
    batch_size: int = 0
    seq_len: int = 0
    num_masked: int = 0
    gemm_sizes: tuple = ()
    warmup: int = 2
    repeat: int = 5
    impls: tuple = ('gluonbert', 'gluonnlp', 'gluonnlp-malloc', 'hf-eager', 'hf-compile',
                    'hf-bf16')
    unit: str = 'seq'

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        values = dict(values)
        if values.get('model') is not None:
            values['model'] = ModelShape(**values['model'])
        values['gemm_sizes'] = tuple(values.get('gemm_sizes', ()))
        values['impls'] = tuple(values.get('impls', ()))
        return cls(**values)


BASE = ModelShape(num_layers=12, units=768, hidden_size=3072, num_heads=12, vocab_size=30522)
# d2l.ai chapter 15.10: 2 layers, 128 hidden, FFN 256, 2 heads, dropout 0.2, WikiText-2 vocab.
D2L = ModelShape(num_layers=2, units=128, hidden_size=256, num_heads=2, vocab_size=20000,
                 max_length=64, dropout=0.2)
# MiniLM-L6 (all-MiniLM-L6-v2): bert_6_384_12 with the uncased BERT vocabulary.
MINILM = ModelShape(num_layers=6, units=384, hidden_size=1536, num_heads=12, vocab_size=30522)
CLI_IMPLS = ('gluonbert', 'gluonnlp', 'hf-eager', 'hf-compile', 'hf-bf16')
TINY = ModelShape(num_layers=2, units=64, hidden_size=128, num_heads=4, vocab_size=200,
                  max_length=64, dropout=0.1)


def workloads(quick=False):
    """The workloads in table order.

    Parameters
    ----------
    quick : bool
        Tiny sizes, one warm-up and one timed repetition.

    Outputs
    -------
    list of Workload
    """
    full = [
        Workload('gemm', 'gemm', 'fp32 GEMM n x n x n (machine ceiling)',
                 gemm_sizes=(2048, 3072, 4096), warmup=1, repeat=5, impls=('mxnet', 'torch')),
        Workload('train_base', 'train',
                 'bert_12_768_12 classifier training step (fwd+bwd+clip+Adam; gluonbert: the '
                 "finetune task's model and the engine's step), B=8, T=128",
                 model=BASE, batch_size=8, seq_len=128, warmup=2, repeat=5),
        Workload('infer_base', 'infer',
                 'bert_12_768_12 inference, B=32, T=128 (gluonbert: predict_proba of a '
                 'fine-tuned classifier; references: sequence + pooled output)',
                 model=BASE, batch_size=32, seq_len=128, warmup=2, repeat=5),
        Workload('pretrain_d2l', 'pretrain',
                 'd2l-sized pretraining step (MLM on 10 gathered positions + NSP, Adam; '
                 "gluonbert: the pretrain task's model and the engine's step), "
                 'L=2 C=128 H=2 V=20k, B=512, T=64',
                 model=D2L, batch_size=512, seq_len=64, num_masked=10, warmup=2, repeat=5,
                 unit='pair'),
        Workload('finetune_mrpc', 'finetune',
                 'bert_12_768_12 fine-tuning on MRPC-length bucketed batches (6 per repetition, '
                 "one update each; gluonbert: the engine's step), B=32, T<=128",
                 model=BASE, batch_size=32, seq_len=128, warmup=1, repeat=3),
        Workload('data_prep', 'data_prep',
                 'pretraining-data preparation (benchmarks/data_prep.py, WikiText-2 valid)',
                 warmup=0, repeat=1, impls=('gluonbert',), unit='example'),
        Workload('finetune_minilm_mrpc', 'cli_finetune',
                 'gluonbert finetune code path (engine.train + FinetuningTask), MiniLM-L6 '
                 'bert_6_384_12 random weights, MRPC train split, B=32, T<=128, per epoch',
                 model=MINILM, batch_size=32, seq_len=128, warmup=0, repeat=1,
                 impls=CLI_IMPLS),
        Workload('predict_minilm', 'cli_predict',
                 'gluonbert predict code path (train.predict.predict), MiniLM-L6, MRPC pairs, '
                 'B=32, T<=128',
                 model=MINILM, batch_size=32, seq_len=128, warmup=1, repeat=3,
                 impls=CLI_IMPLS, unit='pair'),
    ]
    if not quick:
        return full
    small = {
        'gemm': dict(gemm_sizes=(256,)),
        'train_base': dict(model=TINY, batch_size=2, seq_len=16),
        'infer_base': dict(model=TINY, batch_size=4, seq_len=16),
        'pretrain_d2l': dict(model=TINY, batch_size=8, seq_len=16, num_masked=3),
        'finetune_mrpc': dict(model=TINY, batch_size=4, seq_len=32),
        'data_prep': dict(),
        'finetune_minilm_mrpc': dict(model=TINY, batch_size=4, seq_len=64, repeat=2),
        'predict_minilm': dict(model=TINY, batch_size=4, seq_len=64),
    }
    return [dataclasses.replace(w, **dict(dict(warmup=min(w.warmup, 1), repeat=1),
                                          **small[w.name]))
            for w in full]
