"""Streaming raw-text corpora as documents of sentences, and a rule-based sentence splitter.

Two layouts are read (``fmt``):

``'sentences'``
    Google BERT's ``create_pretraining_data.py`` input: one sentence per line, a blank line
    between documents.
``'wikitext'``
    WikiText: a line is a paragraph (split into sentences by :func:`split_sentences`), blank
    lines only separate paragraphs, and a top-level heading `` = Title = `` starts a new
    document (sub-headings `` = = Section = = `` are dropped and do not break documents).
``'auto'``
    ``'wikitext'`` when the first non-blank line of a file is a top-level heading, else
    ``'sentences'``.

In both layouts a top-level heading line breaks documents and is not kept as text. A document
never spans two files. Files are read line by line, so memory does not grow with the corpus.
In the WikiText layout, WikiText's escaped in-number punctuation is undone (``3 @,@ 000`` ->
``3,000``, ``0 @.@ 7`` -> ``0.7``, ``well @-@ known`` -> ``well-known``); ``<unk>`` is kept
(the pretraining tokenizer maps it to ``[UNK]``).
"""
import re

from ..errors import DataFormatError

__all__ = ['split_sentences', 'iter_documents', 'detect_format', 'is_title', 'is_heading']

_TITLE = re.compile(r'^= (?!=).*(?<!=) =$')
_HEADING = re.compile(r'^=( =)* .*? =( =)*$')
_ABBREVIATIONS = frozenset(
    'mr mrs ms dr prof sr jr st mt no vs etc fig figs vol col gen gov lt sgt capt rev inc ltd '
    'co corp jan feb mar apr jun jul aug sep sept oct nov dec e.g i.e u.s u.k a.m p.m'.split())
_END = re.compile(r'[.!?]+["\')\]]*$')
_OPENERS = '"\'([“‘'
_WIKITEXT_JOINS = re.compile(r' @([-,.])@ ')


def is_title(line):
    """True for a WikiText top-level heading such as `` = Homarus gammarus = ``."""
    return bool(_TITLE.match(line.strip()))


def is_heading(line):
    """True for any WikiText heading, `` = Title = `` or `` = = Section = = `` and deeper."""
    return bool(_HEADING.match(line.strip()))


def split_sentences(text):
    """Splits a paragraph into sentences with simple rules.

    A sentence ends at a token ending in ``.``, ``!`` or ``?`` (possibly followed by closing
    quotes or brackets) when the next token starts with an upper-case letter, a digit or an
    opening quote/bracket, unless the token is a known abbreviation (``Mr.``, ``e.g.``) or a
    single capital letter with a dot (an initial: ``H. americanus``). Works on plain text and
    on WikiText's space-tokenised text (`` . `` standing alone).

    Parameters
    ----------
    text : str
        One paragraph.

    Outputs
    -------
    list of str
        Sentences, whitespace-normalised; no empty strings.
    """
    tokens = text.split()
    sentences, current = [], []
    for index, token in enumerate(tokens):
        current.append(token)
        if index + 1 == len(tokens) or not _END.search(token):
            continue
        nxt = tokens[index + 1]
        if not (nxt[0].isupper() or nxt[0].isdigit() or nxt[0] in _OPENERS):
            continue
        word = token.rstrip('"\')]').lower()
        if word.endswith('.'):
            stem = word[:-1]
            if stem in _ABBREVIATIONS or (len(stem) == 1 and stem.isalpha()):
                continue
        sentences.append(' '.join(current))
        current = []
    if current:
        sentences.append(' '.join(current))
    return sentences


def detect_format(path):
    """``'wikitext'`` if the first non-blank line of ``path`` is a top-level heading, else
    ``'sentences'``."""
    with open(path, encoding='utf-8-sig', errors='replace') as fobj:
        for line in fobj:
            if line.strip():
                return 'wikitext' if is_title(line) else 'sentences'
    return 'sentences'


def _read_lines(path):
    with open(path, 'rb') as fobj:
        for number, raw in enumerate(fobj, 1):
            if number == 1 and raw.startswith(b'\xef\xbb\xbf'):
                raw = raw[3:]
            try:
                yield number, raw.decode('utf-8').rstrip('\r\n')
            except UnicodeDecodeError as err:
                raise DataFormatError(path, number, f'invalid UTF-8 at byte {err.start}; '
                                      'expected UTF-8 text') from None


def iter_documents(paths, fmt='auto'):
    """Yields the documents of one or more text files, one at a time.

    Parameters
    ----------
    paths : str or sequence of str
        Text files (UTF-8, optional BOM).
    fmt : {'auto', 'sentences', 'wikitext'}
        Layout, see the module docstring; ``'auto'`` is decided per file.

    Outputs
    -------
    iterator of list of str
        Each document as its sentences, in file order; empty documents are skipped.
    """
    if isinstance(paths, str):
        paths = [paths]
    if fmt not in ('auto', 'sentences', 'wikitext'):
        raise ValueError(f"fmt={fmt!r}: expected 'auto', 'sentences' or 'wikitext'")
    for path in paths:
        layout = detect_format(path) if fmt == 'auto' else fmt
        document = []
        for _, line in _read_lines(path):
            text = line.strip()
            if layout == 'wikitext':
                if is_title(text):
                    if document:
                        yield document
                    document = []
                elif text and not is_heading(text):
                    document.extend(split_sentences(_WIKITEXT_JOINS.sub(r'\1', text)))
            else:
                if not text or is_title(text):
                    if document:
                        yield document
                    document = []
                else:
                    document.append(' '.join(text.split()))
        if document:
            yield document
