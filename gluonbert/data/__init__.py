"""Data pipelines: vocabularies and tokenizers, GLUE/MRPC readers and transforms, MRPC
download, and pretraining examples (creation, shards, resumable batches).

Modules
-------
tokenizer
    ``load_vocab`` (GluonNLP ``.vocab`` JSON or HuggingFace ``vocab.txt``), ``get_tokenizer``.
transform
    ``BERTDatasetTransform`` (GluonNLP 0.10 contract), batchify, bucketed ``DataLoader``.
glue
    MRPC / GLUE-format TSV readers, seeded or GLUE dev split, ``load_mrpc``.
download
    ``download_mrpc`` with sha1 checks.
corpus, masking, pretraining, shards
    Raw text -> documents -> NSP pairs -> MLM masks -> ``.npz`` shards (format in ``shards``).
loader
    ``PretrainingBatches``: deterministic, resumable batches, optional dynamic masking.

GluonNLP 0.10's own data names that BERT scripts use beside these (``BERTTokenizer``,
``BERTSentenceTransform``, ``TSVDataset``, ``Splitter``, ``FixedBucketSampler``, ``batchify``,
...: :data:`GLUONNLP_NAMES`) are reachable here too, so that ``nlp.data.<name>`` lines keep
working after ``import gluonbert as nlp``; they are GluonNLP's objects (``docs/migrating.md``).

Heavy imports (MXNet, GluonNLP) happen inside the functions that need them.
"""
from .glue import (MRPC_LABELS, MRPCData, PairRecord, load_mrpc, read_dev_ids, read_glue_tsv,
                   read_mrpc_tsv, read_msr_paraphrase, split_by_dev_ids, split_by_id)
from .loader import PretrainingBatch, PretrainingBatches, list_shards, load_shard
from .masking import Masker
from .pretraining import PretrainingDataConfig, ensure_prepared, prepare_pretraining_data
from .shards import SHARD_KEYS
from .tokenizer import (get_tokenizer, infer_lower_case, load_tokenizer, load_vocab,
                        vocab_from_hf_vocab_txt, write_hf_vocab_txt)
from .transform import (BERTDatasetTransform, ClassificationBatchify, batchify_classification,
                        classification_dataloader)

__all__ = ['MRPC_LABELS', 'MRPCData', 'PairRecord', 'load_mrpc', 'read_dev_ids', 'read_glue_tsv',
           'read_mrpc_tsv', 'read_msr_paraphrase', 'split_by_dev_ids', 'split_by_id',
           'PretrainingBatch', 'PretrainingBatches', 'list_shards', 'load_shard', 'Masker',
           'SHARD_KEYS', 'PretrainingDataConfig', 'prepare_pretraining_data', 'ensure_prepared',
           'get_tokenizer', 'infer_lower_case', 'load_tokenizer', 'load_vocab', 'vocab_from_hf_vocab_txt',
           'write_hf_vocab_txt', 'BERTDatasetTransform', 'ClassificationBatchify',
           'batchify_classification', 'classification_dataloader']

#: ``gluonnlp.data`` names reachable as ``gluonbert.data.<name>`` (imported on first use).
GLUONNLP_NAMES = ('BERTTokenizer', 'BERTBasicTokenizer', 'BERTSPTokenizer',
                  'BERTSentenceTransform', 'TSVDataset', 'Splitter', 'FixedBucketSampler',
                  'SortedBucketSampler', 'ClipSequence', 'PadSequence', 'count_tokens',
                  'batchify', 'sampler')


def __getattr__(name):
    if name in GLUONNLP_NAMES:
        import gluonnlp.data
        value = getattr(gluonnlp.data, name)
        globals()[name] = value
        return value
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
    return sorted(list(globals()) + list(GLUONNLP_NAMES))
