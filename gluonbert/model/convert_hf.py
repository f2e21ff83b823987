"""HuggingFace BERT checkpoints: parameter names and weight files.

HuggingFace names a BERT parameter ``[bert.]encoder.layer.N.attention.self.query.weight``;
gluonbert (like GluonNLP 0.10) names it ``encoder.transformer_cells.N.attention_cell.
proj_query.weight``. Both store Dense/Linear weights as ``(out, in)``, so every array moves
unchanged; only the name changes. :func:`hf_name_map` is the whole correspondence.

Weight files are read without unpickling: ``model.safetensors`` (also sharded, with its
``.index.json``, and bfloat16), or a legacy ``pytorch_model.bin`` only through
``torch.load(..., weights_only=True)``.
"""
import json
import os
import re
import struct

import numpy as np

from ..errors import CheckpointError, WeightsNotFoundError

__all__ = ['HF_WEIGHT_FILES', 'hf_name_map', 'normalize_hf_name', 'read_hf_weights',
           'write_safetensors', 'HEAD_PREFIXES']

#: Weight files looked for in a HuggingFace model directory, in this order.
HF_WEIGHT_FILES = ('model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin')

#: gluonbert name prefix of each optional head (the encoder itself is always required).
HEAD_PREFIXES = {'pooler': 'pooler.', 'decoder': 'decoder.', 'classifier': 'classifier.'}

# HuggingFace name (no ``bert.`` prefix, LayerNorm as weight/bias) -> gluonbert name.
_GLOBAL = {
    'embeddings.word_embeddings.weight': 'word_embed.0.weight',
    'embeddings.token_type_embeddings.weight': 'token_type_embed.0.weight',
    'embeddings.position_embeddings.weight': 'encoder.position_weight',
    'embeddings.LayerNorm.weight': 'encoder.layer_norm.gamma',
    'embeddings.LayerNorm.bias': 'encoder.layer_norm.beta',
    'pooler.dense.weight': 'pooler.weight',
    'pooler.dense.bias': 'pooler.bias',
    'cls.predictions.transform.dense.weight': 'decoder.0.weight',
    'cls.predictions.transform.dense.bias': 'decoder.0.bias',
    'cls.predictions.transform.LayerNorm.weight': 'decoder.2.gamma',
    'cls.predictions.transform.LayerNorm.bias': 'decoder.2.beta',
    'cls.predictions.bias': 'decoder.3.bias',
    'cls.seq_relationship.weight': 'classifier.weight',
    'cls.seq_relationship.bias': 'classifier.bias',
}

# Under ``encoder.layer.N.`` -> under ``encoder.transformer_cells.N.``.
_LAYER = {
    'attention.self.query': 'attention_cell.proj_query',
    'attention.self.key': 'attention_cell.proj_key',
    'attention.self.value': 'attention_cell.proj_value',
    'attention.output.dense': 'proj',
    'attention.output.LayerNorm': 'layer_norm',
    'intermediate.dense': 'ffn.ffn_1',
    'output.dense': 'ffn.ffn_2',
    'output.LayerNorm': 'ffn.layer_norm',
}

# Names that carry no weight of their own: buffers, or copies of tied weights.
_IGNORED = re.compile(r'(^|\.)position_ids$')
TIED_DECODER_WEIGHT = 'cls.predictions.decoder.weight'
TIED_DECODER_BIAS = 'cls.predictions.decoder.bias'


def hf_name_map(num_layers):
    """The HuggingFace -> gluonbert name of every BERT parameter.

    Parameters
    ----------
    num_layers : int
        Number of transformer cells L.

    Outputs
    -------
    dict of str -> str
        Keys are HuggingFace names as :func:`normalize_hf_name` returns them (no ``bert.``
        prefix, ``LayerNorm.weight``/``.bias``); values are gluonbert/GluonNLP names. The
        tied MLM output weight (``decoder.3.weight``, the word embedding) has no entry.
    """
    names = dict(_GLOBAL)
    for layer in range(num_layers):
        for hf, ours in _LAYER.items():
            is_norm = hf.endswith('LayerNorm')
            for hf_kind, our_kind in (('weight', 'gamma' if is_norm else 'weight'),
                                      ('bias', 'beta' if is_norm else 'bias')):
                names[f'encoder.layer.{layer}.{hf}.{hf_kind}'] = \
                    f'encoder.transformer_cells.{layer}.{ours}.{our_kind}'
    return names


def normalize_hf_name(name):
    """Drops the ``bert.`` prefix and renames TF-style ``LayerNorm.gamma/beta``.

    Outputs
    -------
    str or None
        The canonical name, or None for buffers without weights (``position_ids``).
    """
    if _IGNORED.search(name):
        return None
    if name.startswith('bert.'):
        name = name[len('bert.'):]
    return re.sub(r'LayerNorm\.gamma$', 'LayerNorm.weight',
                  re.sub(r'LayerNorm\.beta$', 'LayerNorm.bias', name))


# --------------------------------------------------------------------------- reading weights

def find_weights_file(hf_dir):
    """The weight file of a HuggingFace directory (see :data:`HF_WEIGHT_FILES`)."""
    for name in HF_WEIGHT_FILES:
        path = os.path.join(hf_dir, name)
        if os.path.isfile(path):
            return path
    raise WeightsNotFoundError(f'{hf_dir}: no weight file; expected one of '
                               f'{", ".join(HF_WEIGHT_FILES)} in that directory')


def read_hf_weights(path):
    """Reads a HuggingFace weight file into float32 numpy arrays.

    Parameters
    ----------
    path : str
        ``*.safetensors``, ``*.safetensors.index.json`` (shards beside it) or
        ``pytorch_model.bin`` (needs torch; read with ``weights_only=True``).

    Outputs
    -------
    dict of str -> numpy.ndarray
        Names as stored in the file.
    """
    if path.endswith('.index.json'):
        return _read_sharded(path)
    if path.endswith('.safetensors'):
        return _read_safetensors(path)
    return _read_torch(path)


def _read_sharded(path):
    try:
        with open(path, encoding='utf-8') as f:
            weight_map = json.load(f)['weight_map']
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f'{path}: not a safetensors index (expected JSON with a '
                              f'"weight_map"): {err}') from None
    arrays = {}
    directory = os.path.dirname(path)
    for shard in sorted(set(weight_map.values())):
        shard_path = os.path.join(directory, shard)
        if not os.path.isfile(shard_path):
            raise WeightsNotFoundError(f'{shard_path}: shard listed in {path} is missing')
        arrays.update(_read_safetensors(shard_path))
    return arrays


def _read_header(path):
    """The JSON header of a safetensors file and the offset of its data, checked against the
    file's size before anything is allocated (a damaged length field would otherwise ask for
    petabytes)."""
    try:
        file_size = os.path.getsize(path)
        with open(path, 'rb') as f:
            size = struct.unpack('<Q', f.read(8))[0]
            header = (json.loads(f.read(size)) if size <= file_size - 8 else None)
    except (struct.error, ValueError, OSError) as err:
        raise CheckpointError(f'{path}: not a safetensors file ({err})') from None
    if size > file_size - 8:
        raise CheckpointError(f'{path}: not a safetensors file (truncated or damaged): its '
                              f'header claims {size} bytes but the whole file holds {file_size}')
    if not isinstance(header, dict):
        raise CheckpointError(f'{path}: not a safetensors file (the header is not a JSON '
                              'object)')
    data_size = file_size - 8 - size
    for name, entry in header.items():
        if name == '__metadata__':
            continue
        try:
            begin, end = entry['data_offsets']
            ok = 0 <= begin <= end <= data_size
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            offsets = entry.get('data_offsets') if isinstance(entry, dict) else entry
            raise CheckpointError(f'{path}: tensor {name} has data_offsets {offsets}; expected '
                                  f'0 <= begin <= end <= {data_size} (truncated or damaged file)')
    return header, 8 + size


def _read_safetensors(path):
    header, data_start = _read_header(path)
    header.pop('__metadata__', None)
    if any(entry.get('dtype') == 'BF16' for entry in header.values()):
        return _read_safetensors_bf16(path, header, data_start)
    from safetensors.numpy import load_file
    try:
        arrays = load_file(path)
    except Exception as err:  # safetensors raises its own SafetensorError
        raise CheckpointError(f'{path}: unreadable safetensors file ({err})') from None
    return {k: np.asarray(v, dtype=np.float32) if v.dtype.kind == 'f' else v
            for k, v in arrays.items()}


_NUMPY_DTYPES = {'F32': '<f4', 'F16': '<f2', 'F64': '<f8', 'I64': '<i8', 'I32': '<i4'}


def _read_safetensors_bf16(path, header, data_start):
    """numpy has no bfloat16: its 16 bits are the high half of a float32."""
    arrays = {}
    with open(path, 'rb') as f:
        for name, entry in header.items():
            begin, end = entry['data_offsets']
            f.seek(data_start + begin)
            raw = f.read(end - begin)
            if entry['dtype'] == 'BF16':
                values = (np.frombuffer(raw, '<u2').astype(np.uint32) << 16).view(np.float32)
            elif entry['dtype'] in _NUMPY_DTYPES:
                values = np.frombuffer(raw, _NUMPY_DTYPES[entry['dtype']])
            else:
                raise CheckpointError(f'{path}: tensor {name} has dtype {entry["dtype"]}; '
                                      'expected F32, F16, BF16 or F64')
            values = values.reshape(entry['shape'])
            arrays[name] = values.astype(np.float32) if values.dtype.kind == 'f' else values
    return arrays


def _read_torch(path):
    try:
        import torch
    except ImportError:
        raise CheckpointError(f'{path}: reading a PyTorch pickle checkpoint needs torch '
                              '(pip install torch), or convert it to model.safetensors') from None
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, ...
        raise CheckpointError(f'{path}: torch.load(weights_only=True) refused the file '
                              f'({type(err).__name__}: {err})') from None
    if not isinstance(state, dict):
        raise CheckpointError(f'{path}: holds a {type(state).__name__}; expected a state dict')
    return {k: v.detach().float().numpy() if v.is_floating_point() else v.numpy()
            for k, v in state.items() if hasattr(v, 'numpy')}


# --------------------------------------------------------------------------- writing weights

def write_safetensors(arrays, path):
    """Writes ``arrays`` as a safetensors file HuggingFace accepts, atomically.

    Parameters
    ----------
    arrays : dict of str -> numpy.ndarray
    path : str
        Written through a temporary file in the same directory and ``os.replace``.
    """
    from safetensors.numpy import save_file
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f'.{os.path.basename(path)}.tmp{os.getpid()}')
    try:
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, tmp,
                  metadata={'format': 'pt'})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
