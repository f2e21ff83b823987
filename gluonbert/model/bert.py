"""BERTModel (encoder + pooler + optional NSP and MLM heads), BERTClassifier, and exported
graphs loaded back with their input checks (:func:`import_exported`)."""
import json
import os
import re

import mxnet as mx
from mxnet.gluon import HybridBlock, nn

from ..errors import ConfigError, InputError
from . import checkpoint
from .config import BERTConfig, get_config
from .encoder import BERTEncoder
from .heads import BERTPooler, MLMDecoder, NSClassifier
from .init import TruncNorm
from .inputs import check_inputs, checked_scope, needs_check, refuse_numpy_mode

__all__ = ['BERTModel', 'BERTClassifier', 'ExportedBERT', 'import_exported']

# Structural name -> GluonNLP 0.10 checkpoint name. GluonNLP keeps the embeddings and the
# heads beside its encoder; gluonbert's BERTEncoder owns the embeddings and NSClassifier owns
# the pooler. Names are rewritten once, where Gluon collects them, so save_parameters,
# load_parameters and every wrapper (BERTClassifier: bert.word_embed.0.weight) agree.
_GLUONNLP_NAMES = [
    (re.compile(r'^encoder\.(word_embed|token_type_embed)\.'), r'\1.'),
    (re.compile(r'^nsp\.(pooler|classifier)\.'), r'\1.'),
]


#: Written beside an export's ``-symbol.json`` by ``export``, read by :func:`import_exported`.
EXPORT_INFO_SUFFIX = 'gluonbert.json'


class _CheckpointNames:
    """Mixin: GluonNLP-compatible parameter names and loading with clear errors."""

    def load_parameters(self, filename, ctx=None, allow_missing=False, ignore_extra=False,
                        cast_dtype=False):
        """Loads a ``.params`` file saved by gluonbert or GluonNLP (see
        :func:`gluonbert.model.checkpoint.load_parameters`)."""
        checkpoint.load_parameters(self, filename, ctx=ctx, allow_missing=allow_missing,
                                   ignore_extra=ignore_extra, cast_dtype=cast_dtype)

    def save_parameters(self, filename):
        """Saves parameters under GluonNLP names, atomically (temp file + rename)."""
        checkpoint.save_parameters(self, filename)

    def export(self, path, epoch=0, remove_amp_cast=True):
        """``HybridBlock.export`` (``path-symbol.json``, ``path-EPOCH.params``), plus
        ``path-gluonbert.json`` (the BERTConfig) from which :func:`import_exported` rebuilds
        the input checks that a bare ``SymbolBlock`` would not have."""
        from ..data.fileio import atomic_write
        kernels = []
        self.apply(lambda b: kernels.append(b.name) if getattr(b, '_kernels', False) else None)
        if kernels:
            raise ConfigError(f'{path}: {type(self).__name__} runs gluonbert CPU kernels '
                              f'({kernels[0]}...), which an exported graph cannot hold; '
                              'expected a model built with kernels=False')
        super().export(path, epoch, remove_amp_cast)
        with atomic_write(f'{path}-{EXPORT_INFO_SUFFIX}', newline='\n') as f:
            json.dump({'block': type(self).__name__, 'config': self.config.to_dict()}, f,
                      indent=2)


class BERTModel(_CheckpointNames, HybridBlock):
    """BERT: the encoder, the ``[CLS]`` pooler, and optionally the pretraining heads.

    Parameters
    ----------
    config : BERTConfig or str
        Sizes, or the name of a configuration (``'bert_12_768_12'``, ...).
    use_pooler : bool
        Compute the pooled ``[CLS]`` vector.
    use_decoder : bool
        Add the masked-LM head (:class:`MLMDecoder`, tied to the word embedding).
    use_classifier : bool
        Add the next-sentence head (:class:`NSClassifier`); implies ``use_pooler``.
    output_all_encodings, output_attention : bool
        See :class:`BERTEncoder`.
    kernels : bool
        Run LayerNorms, dropout and attention on gluonbert's CPU kernels (faster training and
        inference on CPU; CPU contexts only). Falls back to MXNet's operators, with one line
        saying why, when they cannot be built (:mod:`gluonbert.kernels`).
    inference : bool
        With ``kernels``: the forward-only attention kernel, which also skips padding queries
        (a model built so has no gradient).

    Inputs
    ------
    inputs : (B, T) int
        Token ids.
    token_types : (B, T) int
        Segment ids.
    valid_length : (B,) int, optional
        Real lengths; all ``T`` if omitted.
    masked_positions : (B, P) int, optional
        Positions for the MLM head. Omitted (None), a model with the head returns everything
        but ``mlm_scores``, as d2l's ``BERTModel`` does.

    NDArray inputs are checked before the graph runs, hybridized or not
    (:mod:`gluonbert.model.inputs`); :class:`~gluonbert.errors.InputError` names the bad value.

    Outputs
    -------
    In this order, each only when enabled (a single output is returned bare), as GluonNLP's
    ``BERTModel`` (d2l's returns ``(encoded, mlm, nsp)``: see ``docs/migrating.md``):

    sequence : (B, T, C), or the list of every layer's (B, T, C) with ``output_all_encodings``
    attention_weights : list of L arrays (B, H, T, T), with ``output_attention``
    pooled : (B, C), with ``use_pooler``
    nsp_scores : (B, 2), with ``use_classifier``
    mlm_scores : (B, P, V), with ``use_decoder`` and ``masked_positions``
    """

    def __init__(self, config, use_pooler=True, use_decoder=True, use_classifier=True,
                 output_all_encodings=False, output_attention=False, kernels=False,
                 inference=False, prefix=None, params=None):
        super().__init__(prefix=prefix, params=params)
        self.config = config = get_config(config)
        self._use_pooler = use_pooler or use_classifier
        self._use_decoder = use_decoder
        self._use_classifier = use_classifier
        self._output_all_encodings = output_all_encodings
        self._output_attention = output_attention
        with self.name_scope():
            self.encoder = BERTEncoder(config, output_all_encodings, output_attention, kernels,
                                       inference)
            if use_classifier:
                self.nsp = NSClassifier(config.units)
            elif use_pooler:
                self.pooler = BERTPooler(config.units, prefix='pooler_')
            if use_decoder:
                self.decoder = MLMDecoder(config.units, config.vocab_size,
                                          self.encoder.word_embedding, config.layer_norm_eps,
                                          tie=config.tie_word_embeddings, kernels=kernels,
                                          prefix='decoder_')

    def _collect_params_with_prefix(self, prefix=''):
        names = super()._collect_params_with_prefix()
        if prefix:
            prefix += '.'
        renamed = {}
        for name, param in names.items():
            for pattern, replacement in _GLUONNLP_NAMES:
                name = pattern.sub(replacement, name)
            renamed[prefix + name] = param
        return renamed

    def __call__(self, inputs, token_types, valid_length=None, masked_positions=None):
        return super().__call__(inputs, token_types, valid_length, masked_positions)

    def forward(self, inputs, token_types, valid_length=None, masked_positions=None):
        # Without masked_positions a model with an MLM head returns everything but the MLM
        # scores (as d2l's BERTModel). The graph keeps one signature: one dummy position per
        # sequence goes through the head and its scores are dropped.
        drop_mlm = self._use_decoder and masked_positions is None
        if isinstance(inputs, mx.nd.NDArray):
            if needs_check(inputs):     # before the cached graph too: gluonbert.model.inputs
                check_inputs(self.config, inputs, token_types, valid_length,
                             masked_positions if self._use_decoder else None)
            if valid_length is None:
                valid_length = mx.nd.full((inputs.shape[0],), inputs.shape[1],
                                          ctx=inputs.context, dtype='int32')
            if drop_mlm:
                masked_positions = mx.nd.zeros((inputs.shape[0], 1), ctx=inputs.context,
                                               dtype='int32')
        args = (inputs, token_types, valid_length)
        if self._use_decoder and masked_positions is not None:
            args += (masked_positions,)
        with checked_scope():
            outputs = super().forward(*args)
        if drop_mlm and isinstance(inputs, mx.nd.NDArray):
            outputs = outputs[:-1]
            return outputs[0] if len(outputs) == 1 else outputs
        return outputs

    def hybrid_forward(self, F, inputs, token_types, valid_length, masked_positions=None):
        encoded = self.encoder(inputs, token_types, valid_length)
        extra = list(encoded[1:]) if isinstance(encoded, (list, tuple)) else []
        sequence = encoded[0] if extra else encoded
        outputs = [extra.pop(0) if self._output_all_encodings else sequence]
        if self._output_attention:
            outputs.append(extra.pop(0))
        if self._use_classifier:
            outputs += list(self.nsp(sequence))          # pooled, nsp_scores
        elif self._use_pooler:
            outputs.append(self.pooler(sequence))
        if self._use_decoder:
            outputs.append(self.decoder(sequence, masked_positions))
        return tuple(outputs) if len(outputs) > 1 else outputs[0]


class BERTClassifier(_CheckpointNames, HybridBlock):
    """Sentence(-pair) classification: dropout and a Dense layer on BERT's pooled output.

    It runs the last layer on the ``[CLS]`` position alone after the attention
    (:meth:`BERTEncoder.cls_rows_only`): the classifier reads no other position, so the same
    scores with less work, in training and inference, hybridized or not.

    Parameters
    ----------
    bert : BERTModel
        With ``use_pooler=True`` (its other heads, if any, are computed and ignored: build it
        with ``use_decoder=False, use_classifier=False`` for speed).
    num_classes : int
        Number of labels K.
    dropout : float
        Dropout before the output layer (0 disables it; checkpoint name ``classifier.0`` then,
        ``classifier.1`` otherwise, as in GluonNLP).

    Inputs
    ------
    inputs, token_types : (B, T) int
    valid_length : (B,) int, optional
        Checked before the graph runs, as for :class:`BERTModel`.

    Outputs
    -------
    scores : (B, K)
        Unnormalised class logits.
    """

    def __init__(self, bert, num_classes=2, dropout=0.0, prefix=None, params=None):
        refuse_numpy_mode('BERTClassifier')
        super().__init__(prefix=prefix, params=params)
        if not isinstance(bert, BERTModel) or not bert._use_pooler:
            raise InputError('BERTClassifier needs a gluonbert BERTModel built with '
                             'use_pooler=True')
        self.bert = bert
        self._pooled_index = 1 + bert._output_attention
        with self.name_scope():
            self.classifier = nn.HybridSequential(prefix='classifier_')
            with self.classifier.name_scope():
                if dropout:
                    self.classifier.add(nn.Dropout(rate=dropout))
                self.classifier.add(nn.Dense(num_classes, in_units=bert.config.units,
                                             weight_initializer=TruncNorm(0.02)))

    @property
    def config(self):
        return self.bert.config

    def __call__(self, inputs, token_types, valid_length=None):
        return super().__call__(inputs, token_types, valid_length)

    def forward(self, inputs, token_types, valid_length=None):
        if isinstance(inputs, mx.nd.NDArray):
            if self.bert._use_decoder:
                raise InputError('BERTClassifier: the wrapped BERTModel has an MLM head; build '
                                 'it with use_decoder=False')
            if needs_check(inputs):     # before the cached graph too: gluonbert.model.inputs
                check_inputs(self.config, inputs, token_types, valid_length)
            if valid_length is None:
                valid_length = mx.nd.full((inputs.shape[0],), inputs.shape[1],
                                          ctx=inputs.context, dtype='int32')
        with checked_scope():
            return super().forward(inputs, token_types, valid_length)

    def hybrid_forward(self, F, inputs, token_types, valid_length):
        if F is mx.nd and self.bert._active:
            # The BERTModel runs its own cached graph, which serves its direct calls too:
            # it must keep the whole sequence.
            outputs = self.bert(inputs, token_types, valid_length)
        else:
            # Only [CLS] is read: the last layer works on that row alone after its attention.
            with self.bert.encoder.cls_rows_only():
                outputs = self.bert(inputs, token_types, valid_length)
        return self.classifier(outputs[self._pooled_index])


class ExportedBERT(mx.gluon.SymbolBlock):
    """An exported BERTModel or BERTClassifier graph that checks its inputs like the original.

    Build it with :func:`import_exported`. Inputs are those of the exported block, all of them
    required (``token_ids``, ``segment_ids``, ``valid_length`` and, for a BERTModel with an MLM
    head, ``masked_positions``); outputs are the exported block's.

    Parameters
    ----------
    outputs, inputs : Symbol
        As for ``SymbolBlock``.
    config : BERTConfig
        The exported model's sizes, for the checks.
    """

    def __init__(self, outputs, inputs, config, params=None):
        super().__init__(outputs, inputs, params=params)
        self.config = config

    def forward(self, x, *args):
        if needs_check(x):                  # the graph itself cannot raise: see inputs.py
            if len(args) < 2:
                raise InputError(f'this exported model takes {len(self._cached_graph[0])} '
                                 'inputs (token_ids, segment_ids, valid_length'
                                 f'{", masked_positions" if len(self._cached_graph[0]) > 3 else ""}'
                                 f'); got {1 + len(args)}')
            check_inputs(self.config, x, args[0], args[1], args[2] if len(args) > 2 else None)
        with checked_scope():
            return super().forward(x, *args)


def import_exported(path, epoch=0, ctx=None):
    """Loads a graph written by ``BERTModel.export`` or ``BERTClassifier.export``.

    ``mx.gluon.SymbolBlock.imports`` loads the same files but runs the bare graph, in which an
    out-of-range id or length gives finite numbers without an error; this function restores
    the checks of :mod:`gluonbert.model.inputs` from ``path-gluonbert.json``.

    Parameters
    ----------
    path : str
        The ``path`` given to ``export`` (files ``path-symbol.json``, ``path-EPOCH.params``,
        ``path-gluonbert.json``).
    epoch : int
    ctx : Context or list of Context, optional
        Where the parameters go (default CPU).

    Outputs
    -------
    ExportedBERT
    """
    from ..errors import WeightsNotFoundError
    files = [f'{path}-symbol.json', f'{path}-{epoch:04d}.params', f'{path}-{EXPORT_INFO_SUFFIX}']
    for name in files:
        if not os.path.isfile(name):
            raise WeightsNotFoundError(f'{name}: not found; expected the files written by '
                                       f'export({path!r}, epoch={epoch}) of a gluonbert model')
    try:
        with open(files[2], encoding='utf-8') as f:
            info = json.load(f)
        config = BERTConfig.from_dict(info['config'], source=files[2])
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f'{files[2]}: not an export description written by gluonbert '
                          f'({type(err).__name__}: {err})') from None
    outputs = mx.sym.load(files[0])
    arguments = set(outputs.list_arguments())
    names = [n for n in ('data0', 'data1', 'data2', 'data3') if n in arguments]
    block = ExportedBERT(outputs, [mx.sym.var(n) for n in names], config)
    arrays = checkpoint.read_params(files[1])
    block.collect_params().load_dict(arrays, ctx=ctx or mx.cpu())
    return block
