"""Masked-language-model masking as in Devlin et al. (google-research/bert).

For one sequence of token ids:

1. Candidates are all positions except special tokens (``[CLS]``, ``[SEP]``, ``[PAD]``,
   ``[MASK]``). With whole-word masking a candidate is a whole word: a token plus the
   ``##``-continuation pieces after it.
2. ``num_to_predict = min(max_predictions_per_seq, max(1, round(length * masked_lm_prob)))``,
   where ``length`` counts every real token, ``[CLS]`` and ``[SEP]`` included (as in Google's
   ``create_pretraining_data.py``).
3. Candidates are taken in a random order; a whole word that would overshoot
   ``num_to_predict`` is skipped.
4. Each chosen position becomes ``[MASK]`` with probability 0.8, a random token with 0.1, and
   stays unchanged with 0.1. Random tokens are drawn uniformly from the "ordinary" ids of the
   vocabulary (every id whose token is not in brackets, so never ``[CLS]``, ``[unused7]``, ...);
   Google draws from the whole vocabulary, special tokens included.

The originals of the chosen positions are returned, sorted by position, so a masked sequence
can always be restored (``ids[positions] = originals``), which the loader's dynamic masking
relies on.
"""
import dataclasses

import numpy as np

from ..errors import ConfigError

__all__ = ['Masker', 'MaskedSequence']


@dataclasses.dataclass
class MaskedSequence:
    """A masked sequence.

    Attributes
    ----------
    input_ids : np.ndarray, int32, shape (L,)
        The ids with masked positions replaced.
    positions : np.ndarray, int32, shape (K,)
        Masked positions, increasing; ``K <= max_predictions_per_seq``.
    originals : np.ndarray, int32, shape (K,)
        The original ids at ``positions``.
    """
    input_ids: np.ndarray
    positions: np.ndarray
    originals: np.ndarray


class Masker:
    """Chooses and replaces MLM positions (see the module docstring for the rules).

    Parameters
    ----------
    mask_id : int
        Id of ``[MASK]``.
    special_ids : sequence of int
        Ids never masked (``[CLS]``, ``[SEP]``, ``[PAD]``, ``[MASK]``).
    random_ids : sequence of int
        Ids a position may be replaced with in the 10% "random token" case.
    masked_lm_prob : float
        Fraction of tokens to predict (0.15).
    max_predictions_per_seq : int
        Cap on predictions per sequence, P.
    whole_word_mask : bool
        Mask whole words (a token and its ``##`` continuations) together.
    is_continuation : np.ndarray of bool, shape (V,), or None
        ``is_continuation[id]``: the token starts with ``##``. Required for whole-word masking.
    """

    def __init__(self, mask_id, special_ids, random_ids, masked_lm_prob=0.15,
                 max_predictions_per_seq=20, whole_word_mask=False, is_continuation=None):
        if not 0 < masked_lm_prob < 1:
            raise ConfigError(f'masked_lm_prob={masked_lm_prob}: expected a value in (0, 1)')
        if max_predictions_per_seq < 1:
            raise ConfigError(f'max_predictions_per_seq={max_predictions_per_seq}: expected >= 1')
        if whole_word_mask and is_continuation is None:
            raise ConfigError('whole_word_mask=True needs is_continuation (build the Masker '
                              'with Masker.from_vocab)')
        self.mask_id = int(mask_id)
        self.special_ids = np.array(sorted(set(int(i) for i in special_ids)), dtype=np.int32)
        self.random_ids = np.asarray(random_ids, dtype=np.int32)
        if self.random_ids.size == 0:
            raise ConfigError('random_ids is empty; expected ids for the random-token case')
        self.masked_lm_prob = float(masked_lm_prob)
        self.max_predictions_per_seq = int(max_predictions_per_seq)
        self.whole_word_mask = bool(whole_word_mask)
        self.is_continuation = (None if is_continuation is None
                                else np.asarray(is_continuation, dtype=bool))

    @classmethod
    def from_vocab(cls, vocab, masked_lm_prob=0.15, max_predictions_per_seq=20,
                   whole_word_mask=False):
        """Builds a masker from a ``BERTVocab`` (special, random and ``##`` ids from its tokens).

        Parameters
        ----------
        vocab : gluonnlp.vocab.BERTVocab
        masked_lm_prob, max_predictions_per_seq, whole_word_mask
            As in the constructor.

        Outputs
        -------
        Masker
        """
        tokens = vocab.idx_to_token
        special = [vocab[t] for t in (vocab.cls_token, vocab.sep_token, vocab.padding_token,
                                      vocab.mask_token)]
        bracketed = np.array([t.startswith('[') and t.endswith(']') for t in tokens])
        random_ids = np.flatnonzero(~bracketed)
        is_continuation = np.array([t.startswith('##') for t in tokens])
        return cls(vocab[vocab.mask_token], special, random_ids, masked_lm_prob,
                   max_predictions_per_seq, whole_word_mask, is_continuation)

    def num_to_predict(self, length):
        """Number of positions masked in a sequence of ``length`` real tokens."""
        return min(self.max_predictions_per_seq,
                   max(1, int(round(length * self.masked_lm_prob))))

    def _choose(self, ids, rng, limit):
        """Positions to mask (unsorted), at most ``limit``."""
        candidate = ~np.isin(ids, self.special_ids)
        if not self.whole_word_mask:
            cand = np.flatnonzero(candidate)
            return rng.permutation(cand)[:limit]
        groups, current = [], None
        for pos in np.flatnonzero(candidate):
            if current and self.is_continuation[ids[pos]] and current[-1] == pos - 1:
                current.append(pos)
            else:
                current = [pos]
                groups.append(current)
        chosen = []
        for index in rng.permutation(len(groups)):
            if len(chosen) >= limit:
                break
            group = groups[index]
            if len(chosen) + len(group) > limit:
                continue
            chosen.extend(group)
        return np.array(chosen, dtype=np.int64)

    def mask(self, ids, rng):
        """Masks one sequence.

        Parameters
        ----------
        ids : np.ndarray of int, shape (L,)
            The real tokens only (no padding), ``[CLS]``/``[SEP]`` included.
        rng : np.random.Generator
            Source of randomness (the only one used).

        Outputs
        -------
        MaskedSequence
        """
        ids = np.asarray(ids, dtype=np.int32)
        positions = np.sort(self._choose(ids, rng, self.num_to_predict(len(ids))))
        originals = ids[positions]
        out = ids.copy()
        draw = rng.random(len(positions))
        replace_mask = draw < 0.8
        replace_random = draw >= 0.9
        out[positions[replace_mask]] = self.mask_id
        if replace_random.any():
            out[positions[replace_random]] = rng.choice(self.random_ids,
                                                        size=int(replace_random.sum()))
        return MaskedSequence(out, positions.astype(np.int32), originals.astype(np.int32))
