"""A fine-tuned classifier directory (written by ``gluonbert finetune``) loaded back:
``finetune.json`` (BERT config, task, casing, max length), ``vocab.txt`` and ``model.params``
(the best epoch's BERTClassifier) or, for a run stopped before its first epoch ended,
``checkpoints/step-*/model.params`` (the newest valid one).
"""
import os

from ..dist.cluster import on_cpu
from ..errors import WeightsNotFoundError
from ..model.pretrained import FINETUNE_INFO, locate, read_finetune_info

__all__ = ['FINETUNE_INFO', 'read_finetune_info', 'finetuned_transform', 'load_finetuned',
           'finetuned_run_dir']


def finetuned_run_dir(model_dir):
    """The run directory of ``model_dir`` (itself, or the run of a ``step-*`` checkpoint)."""
    if os.path.isfile(os.path.join(model_dir, 'meta.json')):
        return os.path.dirname(os.path.dirname(os.path.abspath(model_dir)))
    return model_dir


def finetuned_transform(model_dir):
    """What a fine-tuned directory says of its inputs: its ``finetune.json``, task and the
    input transform of its vocabulary, casing and maximum length.

    Outputs
    -------
    (dict, TaskSpec, BERTDatasetTransform)
    """
    from ..data import BERTDatasetTransform, get_tokenizer, load_vocab
    from ..data.tasks import TaskSpec
    model_dir = finetuned_run_dir(model_dir)
    info_path = os.path.join(model_dir, FINETUNE_INFO)
    if not os.path.isfile(info_path):
        raise WeightsNotFoundError(f'{info_path}: not found; expected a directory written by '
                                   'gluonbert finetune')
    info = read_finetune_info(info_path)
    spec = TaskSpec(**info['task'])
    vocab = load_vocab(os.path.join(model_dir, 'vocab.txt'))
    transform = BERTDatasetTransform(get_tokenizer(vocab, lower=info['lower']),
                                     info['max_seq_length'], class_labels=spec.labels,
                                     pad=False, pair=spec.pair, has_label=False)
    return info, spec, transform


def load_finetuned(model_dir, contexts, kernels=None):
    """Rebuilds a fine-tuned classifier and its input transform from ``model_dir`` (a
    fine-tuning run, or one of its ``step-*`` checkpoints), for inference, hybridized with
    static memory.

    Parameters
    ----------
    model_dir : str
    contexts : list of mx.Context
    kernels : bool or None
        gluonbert's forward-only CPU kernels (None: when ``contexts`` are CPUs); False keeps
        MXNet's operators, which an export needs.

    Outputs
    -------
    (BERTClassifier, BERTDatasetTransform, TaskSpec)
    """
    from ..model import BERTClassifier, BERTConfig, BERTModel
    info, spec, transform = finetuned_transform(model_dir)
    checkpoint = locate(model_dir)          # model.params, else the newest valid checkpoint
    if checkpoint.kind != 'finetuned':
        raise WeightsNotFoundError(f'{model_dir}: a {checkpoint.kind} directory; expected one '
                                   'written by gluonbert finetune')
    info_path = os.path.join(checkpoint.directory, FINETUNE_INFO)
    bert = BERTModel(BERTConfig.from_dict(info['bert'], source=info_path), use_pooler=True,
                     use_decoder=False, use_classifier=False,
                     kernels=on_cpu(contexts) if kernels is None else kernels, inference=True)
    net = BERTClassifier(bert, num_classes=len(spec.labels), dropout=info['dropout'])
    net.load_parameters(checkpoint.weights, ctx=contexts)
    net.hybridize(static_alloc=True)
    return net, transform, spec
