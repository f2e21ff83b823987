"""BERTEncoder: token, segment and position embeddings, then a stack of transformer cells."""
import contextlib

import mxnet as mx
from mxnet.gluon import HybridBlock, nn

from ..errors import InputError
from .config import BERTConfig
from .dropout import Dropout, training_flag
from .init import TruncNorm
from .inputs import check_inputs, checked_scope, needs_check, refuse_numpy_mode
from .layer_norm import LayerNorm
from .transformer import TransformerCell

__all__ = ['BERTEncoder', 'attention_bias']


def _init():
    """BERT's initialiser: N(0, 0.02) truncated at two standard deviations."""
    return TruncNorm(stdev=0.02)


class BERTEncoder(HybridBlock):
    """Embeds token ids and encodes them with ``L`` post-LN transformer cells.

    ``embedding = LayerNorm(word[token] + segment[segment_id] + position[t])``, dropout, then
    the cells. Attention ignores keys at positions ``>= valid_length``; outputs at those
    positions are set to zero (as GluonNLP does).

    Internally the cells run time-major, ``(T, B, C)``, the layout of MXNet's fused attention
    operators: the ids are transposed once on the way in and the encodings once on the way out.

    Parameters
    ----------
    config : BERTConfig
        Sizes; see :class:`gluonbert.model.BERTConfig`.
    output_all_encodings : bool
        Also return the output of every cell.
    output_attention : bool
        Also return every cell's attention weights.
    kernels : bool
        LayerNorms, dropout and attention on gluonbert's CPU kernels (CPU contexts only; asked
        for at construction, :mod:`gluonbert.kernels`).
    inference : bool
        With ``kernels``: the forward-only attention kernel (no gradient).

    Inputs
    ------
    token_ids : (B, T) int
        WordPiece ids, each in ``[0, vocab_size)``; ``1 <= T <= max_length``, ``B >= 1``.
    segment_ids : (B, T) int
        0 for sentence A, 1 for sentence B.
    valid_length : (B,) int, optional
        Number of real tokens of each sequence (the rest is padding), in ``[1, T]``; all
        ``T`` if omitted (as for :class:`~gluonbert.model.BERTModel`).

    NDArray inputs are checked before the graph runs, hybridized or not
    (:mod:`gluonbert.model.inputs`): values outside these ranges, or non-integer values, raise
    :class:`~gluonbert.errors.InputError`.

    Outputs
    -------
    sequence : (B, T, C)
        Encoding of every token from the last cell.
    all_encodings : list of L arrays (B, T, C)
        Only with ``output_all_encodings``: every cell's output (padding zeroed).
    attention_weights : list of L arrays (B, H, T, T)
        Only with ``output_attention``.
    """

    def __init__(self, config, output_all_encodings=False, output_attention=False,
                 kernels=False, inference=False, prefix=None, params=None):
        refuse_numpy_mode('BERTEncoder')
        super().__init__(prefix=prefix, params=params)
        if not isinstance(config, BERTConfig):
            raise TypeError(f'BERTEncoder expects a BERTConfig, got {type(config).__name__}')
        self.config = config
        self._output_all_encodings = output_all_encodings
        self._output_attention = output_attention
        c = config
        with self.name_scope():
            # word_embed / token_type_embed are one-element sequences so that parameter names
            # read word_embed.0.weight, as in GluonNLP checkpoints.
            self.word_embed = nn.HybridSequential(prefix='word_embed_')
            with self.word_embed.name_scope():
                self.word_embed.add(nn.Embedding(c.vocab_size, c.units, weight_initializer=_init()))
            self.token_type_embed = nn.HybridSequential(prefix='token_type_embed_')
            with self.token_type_embed.name_scope():
                self.token_type_embed.add(nn.Embedding(c.token_type_vocab_size, c.units,
                                                       weight_initializer=_init()))
            self.position_weight = self.params.get('position_weight', shape=(c.max_length, c.units),
                                                   init=_init())
            self.layer_norm = LayerNorm(c.layer_norm_eps, c.units, kernels)
            self.dropout = Dropout(c.dropout, kernels)
            self.transformer_cells = nn.HybridSequential()
            with self.transformer_cells.name_scope():
                for i in range(c.num_layers):
                    self.transformer_cells.add(TransformerCell(
                        c.units, c.hidden_size, c.num_heads, c.dropout, c.layer_norm_eps,
                        kernels, inference, return_weights=output_attention,
                        weight_initializer=_init(), prefix=f'transformer{i}_'))
        self._kernels = self.layer_norm._kernels     # whether the kernels loaded

    @contextlib.contextmanager
    def cls_rows_only(self):
        """While the caller reads only the ``[CLS]`` row of the sequence output
        (:class:`~gluonbert.model.BERTClassifier`, in every call), the last cell runs
        everything after its attention on that row alone (``TransformerCell.cls_only``): of its
        dense layers only the query-key-value projection (a quarter of their work) still
        covers every position, for the same ``[CLS]`` vector. The sequence output is
        (B, 1, C) inside.
        """
        last = self.transformer_cells[len(self.transformer_cells) - 1]
        last.cls_only = True
        try:
            yield
        finally:
            last.cls_only = False

    @property
    def word_embedding(self):
        """The ``nn.Embedding`` holding the (V, C) word table (tied to the MLM output layer)."""
        return self.word_embed[0]

    def __call__(self, token_ids, segment_ids, valid_length=None):
        return super().__call__(token_ids, segment_ids, valid_length)

    def forward(self, token_ids, segment_ids, valid_length=None):
        # Before the cached graph too: see gluonbert.model.inputs.
        if needs_check(token_ids):
            check_inputs(self.config, token_ids, segment_ids, valid_length)
        if valid_length is None:
            if not isinstance(token_ids, mx.nd.NDArray):
                raise InputError('BERTEncoder traced with symbols needs valid_length (B,); '
                                 'only NDArray calls may omit it')
            valid_length = mx.nd.full((token_ids.shape[0],), token_ids.shape[1],
                                      ctx=token_ids.context, dtype='int32')
        with checked_scope():
            return super().forward(token_ids, segment_ids, valid_length)

    def hybrid_forward(self, F, token_ids, segment_ids, valid_length, position_weight):
        # Time-major from here on: transposing the ids is cheaper than the (B, T, C) floats.
        token_ids = F.transpose(token_ids)                                      # (T, B)
        x = self.word_embed(token_ids) + self.token_type_embed(F.transpose(segment_ids))
        # Position rows looked up per token, not broadcast over the batch: same values, but
        # the gradient is an Embedding scatter-add instead of MXNet's slow broadcast
        # reduction.
        steps = F.reshape(F.contrib.arange_like(token_ids, axis=0), shape=(-1, 1))  # (T, 1)
        positions = F.Embedding(F.broadcast_like(steps, token_ids), position_weight,
                                input_dim=self.config.max_length,
                                output_dim=self.config.units)                   # (T, B, C)
        # Whether MXNet runs in training mode, for the kernels' dropout (read once here).
        training = training_flag(F, x) if self._kernels else None
        x = self.dropout(self.layer_norm(x + positions), training)

        valid_length = F.cast(valid_length, dtype='float32')
        # One additive mask for every cell (cheaper than a softmax with lengths in each), and
        # the lengths per head, which the CPU attention kernel reads instead.
        bias = attention_bias(F, valid_length, x, self.config.num_heads)       # (B*H, T, T)
        head_lengths = F.repeat(valid_length, repeats=self.config.num_heads)   # (B*H,)
        encodings, attentions = [], []
        for cell in self.transformer_cells:
            x, weights = cell(x, head_lengths, bias, training)
            if self._output_all_encodings:
                encodings.append(x)
            if self._output_attention:
                attentions.append(weights)

        def to_batch_major(h):
            h = F.SequenceMask(h, sequence_length=valid_length, use_sequence_length=True, axis=0)
            return F.transpose(h, axes=(1, 0, 2))

        sequence = to_batch_major(x)
        if not (self._output_all_encodings or self._output_attention):
            return sequence
        outputs = [sequence]
        if self._output_all_encodings:
            outputs.append([to_batch_major(h) for h in encodings])
        if self._output_attention:
            outputs.append(attentions)
        return tuple(outputs)


def attention_bias(F, valid_length, x, num_heads):
    """The additive attention mask of a padded batch, for :class:`SelfAttention`.

    Parameters
    ----------
    F : mxnet.ndarray or mxnet.symbol
    valid_length : (B,) float32
    x : (T, B, C)
        Any time-major array of the batch (only its length T is read).
    num_heads : int

    Outputs
    -------
    bias : (B * H, T, T) float32
        ``bias[b * H + h, q, k]`` is 0 when ``k < valid_length[b]`` and -1e18 otherwise (the
        softmax gives such keys exactly zero weight; every row keeps at least one key since
        ``valid_length >= 1``). No gradient flows through it.
    """
    steps = F.reshape(F.contrib.arange_like(x, axis=0), shape=(1, -1))           # (1, T)
    keep = F.broadcast_lesser(steps, F.reshape(valid_length, shape=(-1, 1)))     # (B, T) 1/0
    bias = F.reshape((keep - 1) * 1e18, shape=(0, 1, 1, -1))                      # (B, 1, 1, T)
    bias = F.broadcast_axis(bias, axis=1, size=num_heads)                        # (B, H, 1, T)
    bias = F.broadcast_like(bias, x, lhs_axes=(2,), rhs_axes=(0,))               # (B, H, T, T)
    return F.BlockGrad(F.reshape(bias, shape=(-3, 0, 0)))
