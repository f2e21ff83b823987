"""Asking a pretrained BERT questions: fill in ``[MASK]``, next-sentence probability, vectors.

Any pretrained BERT directory works (:func:`gluonbert.model.pretrained.locate`): a HuggingFace
directory, a ``gluonbert convert`` output, a pretraining run (``gluonbert pretrain --out-dir
RUN``, its final ``model.params`` or its newest ``checkpoints/step-*``) or a fine-tuning run
(its encoder). :class:`PretrainedBERT` loads it once with the heads it has; the pipeline objects
are small callables over it, in the spirit of HuggingFace's ``pipeline('fill-mask')``.
Vectors need only the encoder; fill-mask needs the masked-LM head and next-sentence the NSP
head, which HuggingFace ``BertModel`` checkpoints and fine-tuned runs do not have (a clear
error says so).

>>> fill = FillMask('runs/pretrain')                                 # doctest: +SKIP
>>> fill('the capital of france is [MASK] .')[0][0]                  # doctest: +SKIP
{'token': 'paris', 'word': 'paris', 'score': 0.41, 'sequence': 'the capital of france is paris .'}
>>> NextSentence(fill.model)('he went out .', 'it was raining .')    # doctest: +SKIP
{'IsNext': 0.93, 'NotNext': 0.07}
>>> encode(fill.model, 'a crane is flying').word_vector('crane')     # doctest: +SKIP

A text (and an optional second text) becomes ``[CLS] A [SEP] (B [SEP])`` with segment ids 0
for ``[CLS] A [SEP]`` and 1 for ``B [SEP]``, exactly as the pretraining examples are made. The
literal ``[MASK]`` in a text is the mask token (the basic tokenizer would otherwise split it
into ``[``, ``mask``, ``]``). Next-sentence label 0 is IsNext and 1 NotNext, as in
:mod:`gluonbert.data.pretraining`.
"""
import dataclasses
import os
from typing import List, Optional

import mxnet as mx
import numpy as np

from ..dist.cluster import on_cpu
from ..errors import ConfigError, InputError

__all__ = ['PretrainedBERT', 'Encoding', 'FillMask', 'NextSentence', 'TextEncoder', 'encode',
           'pipeline', 'contextual_similarity', 'join_wordpieces', 'fill_mask_report',
           'encode_report']

MASK = '[MASK]'
#: Next-sentence class names in label order (0 = IsNext, 1 = NotNext).
NSP_LABELS = ('IsNext', 'NotNext')


def join_wordpieces(tokens):
    """Joins WordPieces into words (``['play', '##ing', 'now']`` -> ``['playing', 'now']``)."""
    words = []
    for token in tokens:
        if token.startswith('##') and words:
            words[-1] += token[2:]
        else:
            words.append(token[2:] if token.startswith('##') else token)
    return words


def _word_span(tokens, index):
    """``(start, end)`` of the WordPieces forming the word that contains ``tokens[index]``."""
    start, end = index, index + 1
    while start > 0 and tokens[start].startswith('##'):
        start -= 1
    while end < len(tokens) and tokens[end].startswith('##'):
        end += 1
    return start, end


class PretrainedBERT:
    """A :class:`~gluonbert.model.BERTModel` with the heads its checkpoint has, its vocabulary
    and tokenizer, loaded for inference.

    Parameters
    ----------
    path : str
        A HuggingFace directory, a ``gluonbert convert`` output, a pretraining or fine-tuning
        run, or one of their ``step-*`` checkpoints (see
        :func:`gluonbert.model.pretrained.locate`).
    ctx : mx.Context or None
        Device (default CPU).
    lower : bool or None
        Lower-case text; None: what the directory says (True when nothing does).

    Attributes
    ----------
    net : BERTModel
        The encoder and the pooler, masked-LM and next-sentence heads the checkpoint holds,
        for inference (on gluonbert's forward-only CPU kernels on a CPU).
    heads : tuple of str
        Among ``'pooler'``, ``'decoder'`` (masked LM) and ``'classifier'`` (next sentence).
    vocab : gluonnlp.vocab.BERTVocab
    tokenizer : gluonnlp.data.BERTTokenizer
    config : BERTConfig
    kind : str
        ``'huggingface'``, ``'converted'``, ``'pretraining'`` or ``'finetuned'``.
    source : str
        The weight file loaded.
    """

    def __init__(self, path, ctx=None, lower=None):
        from ..data import get_tokenizer
        from ..model.pretrained import build, locate
        checkpoint = locate(path)
        self.ctx = ctx or mx.cpu()
        backbone = build(checkpoint, ctx=self.ctx, kernels=on_cpu([self.ctx]), inference=True)
        self.net, self.vocab, self.heads = backbone.bert, backbone.vocab, backbone.heads
        self.config, self.kind, self.source = backbone.bert.config, checkpoint.kind, \
            backbone.source
        self.lower = backbone.lower if lower is None else lower
        self.tokenizer = get_tokenizer(self.vocab, lower=self.lower)
        self.net.hybridize(static_alloc=True)
        self._special = {self.vocab[t] for t in (self.vocab.padding_token, self.vocab.cls_token,
                                                  self.vocab.sep_token, self.vocab.mask_token)}

    def require(self, head, task):
        """Raises :class:`ConfigError` naming the checkpoint when it lacks ``head``."""
        if head in self.heads:
            return
        what = {'decoder': 'masked-LM head (cls.predictions in HuggingFace, decoder.* here)',
                'classifier': 'next-sentence head (cls.seq_relationship in HuggingFace, '
                              'classifier.* here)',
                'pooler': 'pooler'}[head]
        raise ConfigError(f'{self.source} ({self.kind}) has no {what}, which {task} needs; '
                          'expected a checkpoint with it: a gluonbert pretraining run, or a '
                          'HuggingFace BertForPreTraining/BertForMaskedLM directory. Its '
                          'vectors are there: gluonbert encode')

    def __repr__(self):
        return f'PretrainedBERT({self.source}, {self.config})'

    def tokenize(self, text):
        """WordPieces of ``text``; each literal ``[MASK]`` stays one token."""
        tokens = []
        for index, part in enumerate(text.split(MASK)):
            if index:
                tokens.append(MASK)
            tokens.extend(self.tokenizer(part))
        return tokens

    def inputs(self, text, text_b=None):
        """``[CLS] A [SEP] (B [SEP])`` as tokens, ids and segment ids.

        Outputs
        -------
        (list of str, np.ndarray int32 (T,), np.ndarray int32 (T,))
        """
        tokens = [self.vocab.cls_token] + self.tokenize(text) + [self.vocab.sep_token]
        segments = [0] * len(tokens)
        if text_b is not None:
            second = self.tokenize(text_b) + [self.vocab.sep_token]
            tokens += second
            segments += [1] * len(second)
        if len(tokens) > self.config.max_length:
            raise InputError(f'{len(tokens)} WordPieces with [CLS]/[SEP] in {text!r}'
                             f'{"" if text_b is None else f" + {text_b!r}"}; this model takes '
                             f'at most max_length={self.config.max_length}')
        ids = np.array(self.vocab.to_indices(tokens), dtype=np.int32)
        return tokens, ids, np.array(segments, dtype=np.int32)

    def run(self, ids, segments, masked_positions=None):
        """One forward pass over a single sequence.

        Inputs
        ------
        ids, segments : (T,) int
        masked_positions : (P,) int or None
            Positions whose vocabulary scores are wanted (needs the masked-LM head).

        Outputs
        -------
        sequence : np.ndarray (T, C)
        pooled : np.ndarray (C,), or None without a pooler
        nsp_scores : np.ndarray (2,), or None without the next-sentence head
        mlm_scores : np.ndarray (P, V), or None without ``masked_positions``
        """
        as_nd = lambda a: mx.nd.array([a], ctx=self.ctx, dtype='int32')  # noqa: E731
        wanted = masked_positions is not None and len(masked_positions)
        if wanted:
            self.require('decoder', 'predicting masked tokens')
        outputs = self.net(as_nd(ids), as_nd(segments),
                           mx.nd.array([len(ids)], ctx=self.ctx, dtype='int32'),
                           as_nd(list(masked_positions)) if wanted else None)
        outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        sequence = outputs.pop(0)[0].asnumpy()
        pooled = outputs.pop(0)[0].asnumpy() if 'pooler' in self.heads else None
        nsp = outputs.pop(0)[0].asnumpy() if 'classifier' in self.heads else None
        mlm = outputs.pop(0)[0].asnumpy() if wanted else None
        return sequence, pooled, nsp, mlm


def _model(model, ctx=None):
    return model if isinstance(model, PretrainedBERT) else PretrainedBERT(model, ctx=ctx)


def _softmax(scores):
    shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


class FillMask:
    """Top-k tokens for every ``[MASK]`` of a text, with probabilities.

    Parameters
    ----------
    model : str or PretrainedBERT
        A pretraining run directory / checkpoint, or an already loaded model.
    top_k : int
        Candidates per mask.
    ctx : mx.Context or None

    Inputs
    ------
    text : str
        Holds one or more ``[MASK]``.
    text_b : str or None
        Optional second segment (may hold masks too).

    Outputs
    -------
    list (one per mask, left to right) of list (best first) of dict
        ``token`` (the WordPiece), ``id``, ``score`` (softmax probability over the whole
        vocabulary), ``word`` (the whole word the piece forms with its ``##`` neighbours) and
        ``sequence`` (the text with this mask filled, WordPieces joined into words).
        ``[PAD]``, ``[CLS]``, ``[SEP]`` and ``[MASK]`` are never proposed.
    """

    def __init__(self, model, top_k=5, ctx=None):
        if top_k < 1:
            raise InputError(f'top_k={top_k}: expected >= 1')
        self.model = _model(model, ctx)
        self.top_k = top_k

    def __call__(self, text, text_b=None, top_k=None):
        model, top_k = self.model, top_k or self.top_k
        model.require('decoder', 'fill-mask')
        tokens, ids, segments = model.inputs(text, text_b)
        positions = [i for i, token in enumerate(tokens) if token == MASK]
        if not positions:
            raise InputError(f'{text!r}: no {MASK} to fill; write {MASK} where a word should be '
                             'predicted')
        _, _, _, scores = model.run(ids, segments, positions)
        probs = _softmax(scores.astype(np.float64))                      # (P, V)
        probs[:, sorted(model._special)] = -1.0                          # never proposed
        out = []
        for row, position in enumerate(positions):
            best = np.argsort(-probs[row])[:top_k]
            candidates = []
            for token_id in best:
                token = model.vocab.idx_to_token[int(token_id)]
                filled = list(tokens)
                filled[position] = token
                start, end = _word_span(filled, position)
                candidates.append({
                    'token': token, 'id': int(token_id), 'score': float(probs[row, token_id]),
                    'word': join_wordpieces(filled[start:end])[0],
                    'sequence': ' '.join(join_wordpieces(filled[1:-1]))})
            out.append(candidates)
        return out


class NextSentence:
    """Probability that ``text_b`` follows ``text_a`` (the NSP head).

    Parameters
    ----------
    model : str or PretrainedBERT
    ctx : mx.Context or None

    Inputs
    ------
    text_a, text_b : str

    Outputs
    -------
    dict
        ``{'IsNext': p, 'NotNext': 1 - p}`` (softmax of the two NSP scores).
    """

    def __init__(self, model, ctx=None):
        self.model = _model(model, ctx)

    def __call__(self, text_a, text_b):
        self.model.require('classifier', 'the next-sentence probability')
        _, ids, segments = self.model.inputs(text_a, text_b)
        _, _, nsp, _ = self.model.run(ids, segments)
        probs = _softmax(nsp.astype(np.float64))
        return {name: float(p) for name, p in zip(NSP_LABELS, probs)}


@dataclasses.dataclass
class Encoding:
    """Contextual vectors of a text (or pair) and the tokens they belong to.

    Attributes
    ----------
    tokens : list of str
        ``[CLS] A [SEP] (B [SEP])`` WordPieces, length T.
    segment_ids : np.ndarray int32 (T,)
    sequence : np.ndarray float32 (T, C)
        The encoder's last layer at every token (``BERTModel``'s sequence output).
    pooled : np.ndarray float32 (C,) or None
        The tanh pooler's ``[CLS]`` vector; None when the checkpoint has no pooler.
    """
    tokens: List[str]
    segment_ids: np.ndarray
    sequence: np.ndarray
    pooled: Optional[np.ndarray]

    def word_vector(self, word, occurrence=0):
        """The mean of the vectors of the WordPieces of ``word`` (its ``occurrence``-th use).

        Parameters
        ----------
        word : str
            A whole word as it appears after tokenization (lower-cased for uncased models).
        occurrence : int
            Which use of the word, counted from 0.

        Outputs
        -------
        np.ndarray (C,)
        """
        found = []
        index = 0
        while index < len(self.tokens):
            start, end = _word_span(self.tokens, index)
            if join_wordpieces(self.tokens[start:end])[0] == word:
                found.append((start, end))
            index = end
        if occurrence >= len(found):
            raise InputError(f'word {word!r} occurs {len(found)} time(s) in {self.tokens}; '
                             f'asked for occurrence {occurrence}')
        start, end = found[occurrence]
        return self.sequence[start:end].mean(axis=0)


class TextEncoder:
    """Per-token and pooled vectors of a text or a pair.

    Parameters
    ----------
    model : str or PretrainedBERT
    ctx : mx.Context or None

    Inputs
    ------
    text : str
    text_b : str or None

    Outputs
    -------
    Encoding
    """

    def __init__(self, model, ctx=None):
        self.model = _model(model, ctx)

    def __call__(self, text, text_b=None):
        tokens, ids, segments = self.model.inputs(text, text_b)
        sequence, pooled, _, _ = self.model.run(ids, segments)
        return Encoding(tokens, segments, sequence, pooled)


def encode(model, text, text_b=None, ctx=None):
    """:class:`Encoding` of ``text`` (and ``text_b``) by ``model`` (a run directory or a
    :class:`PretrainedBERT`)."""
    return TextEncoder(model, ctx)(text, text_b)


def contextual_similarity(model, word, text_a, text_b, ctx=None):
    """Cosine similarity of ``word``'s contextual vectors in two texts (d2l's "crane" test).

    Outputs
    -------
    float
        In [-1, 1]; a context-free embedding would give 1.0.
    """
    encoder = TextEncoder(model, ctx)
    first = encoder(text_a).word_vector(word)
    second = encoder(text_b).word_vector(word)
    return float(first @ second / (np.linalg.norm(first) * np.linalg.norm(second) + 1e-12))


_TASKS = {'fill-mask': FillMask, 'next-sentence': NextSentence, 'encode': TextEncoder}


def pipeline(task, model, ctx=None, **kwargs):
    """A pipeline object by task name: ``'fill-mask'``, ``'next-sentence'`` or ``'encode'``.

    Parameters
    ----------
    task : str
    model : str or PretrainedBERT
    ctx : mx.Context or None
    **kwargs
        Passed to the pipeline (``top_k`` for fill-mask).
    """
    if task not in _TASKS:
        raise InputError(f'task {task!r}: expected one of {sorted(_TASKS)}')
    return _TASKS[task](model, ctx=ctx, **kwargs)



def fill_mask_report(model, text, next_text=None, top_k=5, ctx=None):
    """What ``gluonbert fill-mask`` prints: top-k per ``[MASK]`` and, with ``next_text``, the
    next-sentence probabilities of ``(text, next_text)``.

    Parameters
    ----------
    model : str or PretrainedBERT
    text : str
        Holds ``[MASK]`` (may hold none when ``next_text`` is given).
    next_text : str or None
    top_k : int

    Outputs
    -------
    (dict, list of str)
        ``{'masks': FillMask output, 'next_sentence': NextSentence output or None}`` and the
        lines to print. With ``next_text`` the masks are predicted in the pair's context.
    """
    model = _model(model, ctx)
    result = {'masks': [], 'next_sentence': None}
    lines = [f'{model.source}']
    if MASK in text or next_text is None:
        result['masks'] = FillMask(model, top_k)(text, next_text)
        for number, candidates in enumerate(result['masks'], 1):
            lines.append(f'[MASK] {number} of {len(result["masks"])}:')
            for rank, c in enumerate(candidates, 1):
                word = '' if c['word'] == c['token'] else f'  (word: {c["word"]})'
                lines.append(f'  {rank}. {c["token"]:<16} {c["score"]:.4f}  {c["sequence"]}'
                             f'{word}')
    if next_text is not None:
        result['next_sentence'] = probs = NextSentence(model)(text, next_text)
        lines.append(f'next sentence: IsNext {probs["IsNext"]:.4f}  NotNext '
                     f'{probs["NotNext"]:.4f}')
    return result, lines


def encode_report(model, text, text_b=None, output=None, ctx=None):
    """What ``gluonbert encode`` prints, and the vectors saved to ``output`` (``.npz``).

    Outputs
    -------
    (Encoding, list of str)
        The encoding and one line per token: index, segment, token, L2 norm, first values.
        ``output`` (if given) receives ``tokens``, ``segment_ids``, ``sequence`` (T, C) and
        ``pooled`` (C,; only when the checkpoint has a pooler), written atomically.
    """
    from ..data.fileio import atomic_write
    encoding = TextEncoder(model, ctx)(text, text_b)
    if output:
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)   # as predict
        arrays = {'tokens': np.array(encoding.tokens), 'segment_ids': encoding.segment_ids,
                  'sequence': encoding.sequence}
        if encoding.pooled is not None:
            arrays['pooled'] = encoding.pooled
        with atomic_write(output, 'wb') as f:
            np.savez(f, **arrays)
    lines = [f'{len(encoding.tokens)} tokens x {encoding.sequence.shape[1]} values'
             f'{"" if not output else f" -> {output}"}']
    for index, (token, segment, vector) in enumerate(zip(encoding.tokens, encoding.segment_ids,
                                                         encoding.sequence)):
        head = ' '.join(f'{v:+.3f}' for v in vector[:4])
        lines.append(f'{index:4d} {segment} {token:<16} norm {np.linalg.norm(vector):7.3f}  '
                     f'[{head} ...]')
    lines.append('pooled [CLS]: none (the checkpoint has no pooler)' if encoding.pooled is None
                 else f'pooled [CLS]: norm {np.linalg.norm(encoding.pooled):.3f}')
    return encoding, lines
