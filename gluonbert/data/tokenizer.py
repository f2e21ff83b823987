"""WordPiece vocabularies and tokenizers: GluonNLP ``BERTVocab``/``BERTTokenizer`` from either
a GluonNLP model-zoo ``.vocab`` JSON file or a HuggingFace ``vocab.txt``.

A HuggingFace ``vocab.txt`` holds one token per line and the id of a token is its (0-based)
line number. :func:`vocab_from_hf_vocab_txt` keeps exactly that numbering, so that the ids
GluonNLP's tokenizer produces equal the ids HuggingFace's ``BertTokenizer`` produces, and maps
``[PAD] [UNK] [CLS] [SEP] [MASK]`` to ``BERTVocab``'s padding, unknown, cls, sep and mask
tokens. :func:`write_hf_vocab_txt` writes the inverse. Every loader also answers d2l.ai's
``<cls>``, ``<sep>``, ``<pad>``, ``<mask>`` and ``<unk>`` with those tokens' ids
(:func:`with_d2l_aliases`).

Example
-------
>>> vocab = load_vocab('model_dir/vocab.txt')                    # doctest: +SKIP
>>> tokenizer = get_tokenizer(vocab, lower=True)                 # doctest: +SKIP
>>> tokenizer('Hello, world!')                                   # doctest: +SKIP
['hello', ',', 'world', '!']
"""
import functools
import json
import os
import re

from ..errors import ConfigError, DataFormatError, InputError, WeightsNotFoundError
from .fileio import atomic_write, read_text_lines

__all__ = ['HF_SPECIAL_TOKENS', 'D2L_SPECIAL_TOKENS', 'as_vocab', 'resolve_vocab_path',
           'load_vocab', 'vocab_from_hf_vocab_txt', 'vocab_from_json', 'with_d2l_aliases',
           'write_hf_vocab_txt', 'get_tokenizer', 'load_tokenizer', 'infer_lower_case']

#: ``BERTVocab`` attribute -> the token HuggingFace's ``BertTokenizer`` uses for it.
HF_SPECIAL_TOKENS = {
    'padding_token': '[PAD]',
    'unknown_token': '[UNK]',
    'cls_token': '[CLS]',
    'sep_token': '[SEP]',
    'mask_token': '[MASK]',
}


#: d2l.ai's spelling of the special tokens -> the ``BERTVocab`` attribute naming the same role.
D2L_SPECIAL_TOKENS = {
    '<pad>': 'padding_token',
    '<unk>': 'unknown_token',
    '<cls>': 'cls_token',
    '<sep>': 'sep_token',
    '<mask>': 'mask_token',
}


@functools.lru_cache(maxsize=None)
def _alias_lookup_class():
    from gluonnlp.data.utils import DefaultLookupDict

    class AliasLookup(DefaultLookupDict):
        """``token -> id`` that answers d2l's special tokens with the BERT ones' ids.

        The aliases are not keys: ``len``, iteration, ``in`` and ``to_json`` see the file's
        tokens only; only a lookup that would give ``[UNK]`` consults them.
        """

        def __init__(self, default, mapping, aliases):
            super().__init__(default, mapping)
            self.aliases = aliases

        def __getitem__(self, token):
            index = self.get(token)
            if index is None:
                index = self.aliases.get(token, self._default)
            return index

        def __reduce__(self):      # picklable (DataLoader workers) without this closure
            return (_alias_lookup, (self._default, dict(self), self.aliases))
    return AliasLookup


def _alias_lookup(default, mapping, aliases):
    return _alias_lookup_class()(default, mapping, aliases)


def with_d2l_aliases(vocab):
    """Lets ``vocab`` answer d2l.ai's ``'<cls>'``, ``'<sep>'``, ``'<pad>'``, ``'<mask>'`` and
    ``'<unk>'`` with the ids of ``[CLS]``, ``[SEP]``, ``[PAD]``, ``[MASK]`` and ``[UNK]``.

    A d2l script builds token lists such as ``['<cls>'] + tokens + ['<sep>']`` and looks them
    up in the vocabulary; with a BERT vocabulary those tokens would silently become
    ``[UNK]``. A vocabulary that has a token spelled so keeps its own id for it. Applied by
    every vocabulary loader of gluonbert.

    Parameters
    ----------
    vocab : gluonnlp.vocab.BERTVocab
        Changed in place (its lookup table), and returned.
    """
    aliases = {}
    for alias, attribute in D2L_SPECIAL_TOKENS.items():
        token = getattr(vocab, attribute, None)
        if alias not in vocab.token_to_idx and token in vocab.token_to_idx:
            aliases[alias] = vocab.token_to_idx[token]
    table = vocab._token_to_idx               # pylint: disable=protected-access
    default = getattr(table, '_default', None)
    if aliases and default is not None:
        vocab._token_to_idx = _alias_lookup(default, dict(table), aliases)
    return vocab


def resolve_vocab_path(path):
    """A HuggingFace model directory stands for its ``vocab.txt``."""
    if os.path.isdir(path):
        candidate = os.path.join(path, 'vocab.txt')
        if not os.path.isfile(candidate):
            raise WeightsNotFoundError(f'{path}: directory has no vocab.txt; expected a '
                                       'HuggingFace model directory or a vocabulary file')
        return candidate
    if not os.path.isfile(path):
        raise WeightsNotFoundError(f'{path}: vocabulary file not found; expected a GluonNLP '
                                   '.vocab JSON file, a HuggingFace vocab.txt or a model directory')
    return path


def as_vocab(vocab):
    """A ``BERTVocab`` given either itself or a path :func:`load_vocab` reads.

    Parameters
    ----------
    vocab : gluonnlp.vocab.BERTVocab, str or os.PathLike

    Outputs
    -------
    gluonnlp.vocab.BERTVocab
    """
    if isinstance(vocab, (str, os.PathLike)):
        return load_vocab(os.fspath(vocab))
    from gluonnlp.vocab import BERTVocab
    if not isinstance(vocab, BERTVocab):
        raise ConfigError(f'vocab is a {type(vocab).__name__}; expected a gluonnlp BERTVocab or '
                          'the path of a vocabulary file (.vocab JSON, vocab.txt or a model '
                          'directory holding vocab.txt)')
    return vocab


def load_vocab(path):
    """Loads a ``gluonnlp.vocab.BERTVocab``, detecting the file format.

    Parameters
    ----------
    path : str
        A GluonNLP model-zoo vocabulary (JSON, e.g. ``book_corpus_wiki_en_uncased-a6607397.vocab``),
        a HuggingFace ``vocab.txt`` (one token per line), or a HuggingFace model directory
        holding a ``vocab.txt``. A file whose first non-blank character is ``{`` is read as
        JSON, any other as ``vocab.txt``.

    Outputs
    -------
    gluonnlp.vocab.BERTVocab
        ``len(vocab)`` tokens; ``vocab[token]`` is the id the file assigns.
    """
    path = resolve_vocab_path(path)
    with open(path, 'rb') as fobj:
        head = fobj.read(64).lstrip(b'\xef\xbb\xbf \t\r\n')
    if head.startswith(b'{'):
        return vocab_from_json(path)
    return vocab_from_hf_vocab_txt(path)


def vocab_from_json(path):
    """Loads a GluonNLP model-zoo ``.vocab`` JSON file with ``BERTVocab.from_json``.

    Parameters
    ----------
    path : str
        The JSON file written by ``BERTVocab.to_json`` (the GluonNLP model zoo's
        ``<dataset>-<sha1[:8]>.vocab``).

    Outputs
    -------
    gluonnlp.vocab.BERTVocab
    """
    from gluonnlp.vocab import BERTVocab
    with open(path, encoding='utf-8') as fobj:
        text = fobj.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataFormatError(path, err.lineno, f'invalid JSON ({err.msg}); expected a '
                              'GluonNLP BERTVocab JSON file') from None
    if not isinstance(data, dict) or 'token_to_idx' not in data or 'idx_to_token' not in data:
        raise DataFormatError(path, None, 'JSON has no token_to_idx/idx_to_token; expected a '
                              'GluonNLP BERTVocab JSON file')
    return with_d2l_aliases(BERTVocab.from_json(text))


def vocab_from_hf_vocab_txt(path):
    """Builds a ``BERTVocab`` from a HuggingFace ``vocab.txt``; token id == 0-based line number.

    Parameters
    ----------
    path : str
        UTF-8 text, one token per line (``\\n`` or ``\\r\\n``). It must contain ``[PAD]``,
        ``[UNK]``, ``[CLS]``, ``[SEP]`` and ``[MASK]``; empty or repeated tokens are errors.

    Outputs
    -------
    gluonnlp.vocab.BERTVocab
        ``vocab.idx_to_token[i]`` is line ``i + 1`` of the file.
    """
    from gluonnlp.data import count_tokens
    from gluonnlp.vocab import BERTVocab
    path = resolve_vocab_path(path)
    tokens, seen = [], {}
    for number, token in read_text_lines(path):
        if token == '':
            raise DataFormatError(path, number, 'empty token; expected one token per line')
        if token in seen:
            raise DataFormatError(path, number, f'token {token!r} repeats line {seen[token]}; '
                                  'expected every token once (its id is its line number)')
        seen[token] = number
        tokens.append(token)
    if not tokens:
        raise DataFormatError(path, None, 'empty vocabulary file; expected one token per line')
    missing = [tok for tok in HF_SPECIAL_TOKENS.values() if tok not in seen]
    if missing:
        raise DataFormatError(path, None, f'special tokens {missing} are missing; expected '
                              f'all of {list(HF_SPECIAL_TOKENS.values())}')
    token_to_idx = {token: index for index, token in enumerate(tokens)}
    return with_d2l_aliases(BERTVocab(count_tokens(tokens), token_to_idx=token_to_idx,
                                      **HF_SPECIAL_TOKENS))


def write_hf_vocab_txt(vocab, path):
    """Writes a vocabulary as a HuggingFace ``vocab.txt`` (line ``i + 1`` = token of id ``i``).

    Parameters
    ----------
    vocab : gluonnlp.Vocab or BERTVocab
        Its special tokens must carry HuggingFace's names (``[PAD]``, ``[UNK]``, ``[CLS]``,
        ``[SEP]``, ``[MASK]``), as every GluonNLP BERT zoo vocabulary does.
    path : str
        Output file, written atomically with ``\\n`` line ends.
    """
    for attr, expected in HF_SPECIAL_TOKENS.items():
        actual = getattr(vocab, attr, None)
        if actual != expected:
            raise InputError(f'vocab.{attr} is {actual!r}; HuggingFace BertTokenizer expects '
                             f'{expected!r}')
    tokens = list(vocab.idx_to_token)
    for index, token in enumerate(tokens):
        if not token or '\n' in token or '\r' in token or token != token.strip('\n\r'):
            raise InputError(f'token {token!r} (id {index}) cannot be written one per line')
    with atomic_write(path, 'w', newline='\n') as fobj:
        for token in tokens:
            fobj.write(token + '\n')


def get_tokenizer(vocab, lower=True):
    """A GluonNLP ``BERTTokenizer`` (basic tokenization then WordPiece) over ``vocab``.

    Parameters
    ----------
    vocab : gluonnlp.vocab.BERTVocab
        The vocabulary (see :func:`load_vocab`).
    lower : bool
        Lower-case and strip accents before WordPiece: True for uncased models
        (``do_lower_case``), False for cased ones.

    Outputs
    -------
    gluonnlp.data.BERTTokenizer
        ``tokenizer(text)`` -> list of str; ``tokenizer.convert_tokens_to_ids(tokens)`` -> ids.
    """
    from gluonnlp.data import BERTTokenizer
    return BERTTokenizer(vocab, lower=lower, lru_cache_size=1 << 16)


def infer_lower_case(path):
    """Guesses whether a vocabulary belongs to an uncased (lower-casing) model.

    Reads ``do_lower_case`` from a ``tokenizer_config.json`` beside a ``vocab.txt``; otherwise
    looks for ``uncased``/``cased`` in the file or directory name.

    Parameters
    ----------
    path : str
        A vocabulary file or model directory.

    Outputs
    -------
    bool or None
        True (lower-case), False (keep case), or None when nothing says.
    """
    directory = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    config = os.path.join(directory, 'tokenizer_config.json')
    if os.path.isfile(config):
        try:
            with open(config, encoding='utf-8') as fobj:
                value = json.load(fobj).get('do_lower_case')
        except (OSError, ValueError, AttributeError):
            value = None
        if isinstance(value, bool):
            return value
    name = os.path.basename(os.path.normpath(path)).lower()
    if re.search(r'uncased', name):
        return True
    if re.search(r'cased', name):
        return False
    return None


def load_tokenizer(path, lower=None):
    """Loads a vocabulary (:func:`load_vocab`) and builds its tokenizer.

    Parameters
    ----------
    path : str
        Vocabulary file or HuggingFace model directory.
    lower : bool or None
        Lower-casing; None infers it with :func:`infer_lower_case` (True when nothing says).

    Outputs
    -------
    (gluonnlp.vocab.BERTVocab, gluonnlp.data.BERTTokenizer)
    """
    vocab = load_vocab(path)
    if lower is None:
        inferred = infer_lower_case(path)
        lower = True if inferred is None else inferred
    return vocab, get_tokenizer(vocab, lower=lower)
