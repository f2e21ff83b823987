"""Readers for MRPC and other GLUE-format classification TSV files, and the MRPC dev split.

Files read
----------
* GLUE MRPC ``train.tsv``/``dev.tsv``: header ``Quality #1 ID #2 ID #1 String #2 String``
  (tab separated), then ``label id_a id_b text_a text_b``.
* GLUE MRPC ``test.tsv``: header ``index #1 ID #2 ID #1 String #2 String``, no labels.
* The original MSR files ``msr_paraphrase_train.txt``/``msr_paraphrase_test.txt``: the same
  five columns as GLUE's train.tsv, UTF-8 with a byte-order mark, and bare ``"`` characters
  inside sentences. Fields are split on tabs only: no CSV quoting is applied, so quotes stay
  exactly as in the file.
* Any GLUE-format classification TSV (:func:`read_glue_tsv`): columns chosen by index or by
  header name, one or two texts per row.

Every reader returns a list of :class:`PairRecord`; ``record.example()`` gives the tuple a
:class:`~gluonbert.data.transform.BERTDatasetTransform` takes: ``(text_a, text_b, label)``,
``(text_a, label)`` for single texts, without the label for unlabelled files. Labels stay
strings (``'0'``/``'1'`` for MRPC). Malformed input raises
:class:`~gluonbert.errors.DataFormatError` naming the file and line.
"""
import dataclasses
import hashlib
import os
from typing import List, Optional

from ..errors import DataFormatError
from .fileio import read_text_lines

__all__ = ['PairRecord', 'MRPCData', 'MRPC_LABELS', 'read_glue_tsv', 'read_mrpc_tsv',
           'read_msr_paraphrase', 'read_dev_ids', 'split_by_id', 'split_by_dev_ids',
           'load_mrpc', 'write_mrpc_tsv']

#: MRPC class labels: '0' not a paraphrase, '1' paraphrase.
MRPC_LABELS = ('0', '1')
MRPC_HEADER = ('Quality', '#1 ID', '#2 ID', '#1 String', '#2 String')
MRPC_TEST_HEADER = ('index', '#1 ID', '#2 ID', '#1 String', '#2 String')


@dataclasses.dataclass(frozen=True)
class PairRecord:
    """One row of a classification file.

    Attributes
    ----------
    text_a : str
        First (or only) text.
    text_b : str or None
        Second text; None for single-text tasks.
    label : str or None
        Label exactly as in the file ('0'/'1' for MRPC); None when the file has no labels.
    id_a, id_b : str or None
        Sentence ids (MRPC's ``#1 ID``/``#2 ID``), None where the file has none.
    line : int
        1-based line of the row in its file.
    """
    text_a: str
    text_b: Optional[str]
    label: Optional[str]
    id_a: Optional[str] = None
    id_b: Optional[str] = None
    line: int = 0

    def example(self):
        """The transform's input: ``(text_a[, text_b][, label])``."""
        out = (self.text_a,) if self.text_b is None else (self.text_a, self.text_b)
        return out if self.label is None else out + (self.label,)


def _column(header, spec, path, role):
    """Resolves a column given by index or by header name."""
    if spec is None:
        return None
    if isinstance(spec, int):
        return spec
    if header is None:
        raise DataFormatError(path, 1, f'{role} column {spec!r} given by name but the file '
                              'is read without a header; pass an index')
    if spec not in header:
        raise DataFormatError(path, 1, f'{role} column {spec!r} not in header {header}')
    return header.index(spec)


def read_glue_tsv(path, text_a, text_b=None, label=None, id_a=None, id_b=None, header=True,
                  labels=None, num_fields=None, expected_header=None):
    """Reads a GLUE-format classification TSV (tab separated, no quoting, UTF-8, optional BOM).

    Parameters
    ----------
    path : str
        The file.
    text_a, text_b, label, id_a, id_b : int or str or None
        Columns, by 0-based index or by header name. ``text_b=None``: single-text task;
        ``label=None``: unlabelled file (e.g. a test split).
    header : bool
        The first line is a header (skipped, and used to resolve column names).
    labels : sequence of str or None
        Allowed label values; any other is an error. None accepts any label.
    num_fields : int or None
        Exact number of tab-separated fields per row; None: the header's count (or the first
        row's without a header).
    expected_header : sequence of str or None
        When given, the header must be exactly these fields.

    Outputs
    -------
    list of PairRecord
        One per data row, in file order. Blank lines are skipped.
    """
    return _parse_rows(path, read_text_lines(path), text_a, text_b, label, id_a, id_b, header,
                       labels, num_fields, expected_header)


def _parse_rows(path, lines, text_a, text_b, label, id_a, id_b, header, labels, num_fields,
                expected_header):
    if not lines or all(not text.strip() for _, text in lines):
        raise DataFormatError(path, None, 'empty file; expected a header and data rows'
                              if header else 'empty file; expected data rows')
    names = None
    if header:
        names = lines[0][1].split('\t')
        if expected_header is not None and tuple(names) != tuple(expected_header):
            raise DataFormatError(path, 1, f'header {lines[0][1]!r}; expected '
                                  f'{chr(9).join(expected_header)!r}')
        lines = lines[1:]
        if not any(text.strip() for _, text in lines):
            raise DataFormatError(path, None, 'no data rows after the header')
    if num_fields is None:
        num_fields = len(names) if names is not None else len(lines[0][1].split('\t'))
    cols = {role: _column(names, spec, path, role) for role, spec in
            (('text_a', text_a), ('text_b', text_b), ('label', label), ('id_a', id_a),
             ('id_b', id_b))}
    for role, col in cols.items():
        if col is not None and not 0 <= col < num_fields:
            raise DataFormatError(path, 1, f'{role} column {col} out of range; rows have '
                                  f'{num_fields} fields')
    allowed = None if labels is None else set(labels)
    records = []
    for number, text in lines:
        if text == '':
            continue
        fields = text.split('\t')
        if len(fields) != num_fields:
            raise DataFormatError(path, number, f'{len(fields)} tab-separated fields; expected '
                                  f'{num_fields}: {text[:80]!r}')
        row = {role: (None if col is None else fields[col]) for role, col in cols.items()}
        if allowed is not None and row['label'] is not None and row['label'] not in allowed:
            raise DataFormatError(path, number, f'label {row["label"]!r}; expected one of '
                                  f'{sorted(allowed)}')
        records.append(PairRecord(row['text_a'], row['text_b'], row['label'], row['id_a'],
                                  row['id_b'], number))
    return records


def read_mrpc_tsv(path):
    """Reads an MRPC file in GLUE format: ``train.tsv``/``dev.tsv`` (labelled) or ``test.tsv``.

    Parameters
    ----------
    path : str
        A file whose header is ``Quality #1 ID #2 ID #1 String #2 String`` (labelled rows) or
        ``index #1 ID #2 ID #1 String #2 String`` (GLUE's unlabelled test.tsv).

    Outputs
    -------
    list of PairRecord
        ``label`` is '0' or '1' (None for test.tsv); ``id_a``/``id_b`` are the sentence ids.
    """
    lines = read_text_lines(path)
    if lines and lines[0][1].split('\t')[0] == 'index':
        return _parse_rows(path, lines, 3, 4, None, 1, 2, True, None, 5, MRPC_TEST_HEADER)
    return _parse_rows(path, lines, 3, 4, 0, 1, 2, True, MRPC_LABELS, 5, MRPC_HEADER)


def read_msr_paraphrase(path):
    """Reads an original MSR Paraphrase Corpus file (``msr_paraphrase_train.txt``/``_test.txt``).

    The format is GLUE's labelled MRPC format (both MSR files carry labels); the byte-order
    mark and bare quotes are handled. See :func:`read_mrpc_tsv`.

    Outputs
    -------
    list of PairRecord
    """
    return _parse_rows(path, read_text_lines(path), 3, 4, 0, 1, 2, True, MRPC_LABELS, 5,
                       MRPC_HEADER)


def read_dev_ids(path):
    """Reads GLUE's ``dev_ids.tsv``: one ``id_a<TAB>id_b`` pair per line.

    Outputs
    -------
    set of (str, str)
    """
    ids = set()
    for number, text in read_text_lines(path):
        if not text.strip():
            continue
        fields = text.strip().split('\t')
        if len(fields) != 2:
            raise DataFormatError(path, number, f'{len(fields)} tab-separated fields; '
                                  'expected 2 (#1 ID, #2 ID)')
        ids.add((fields[0], fields[1]))
    if not ids:
        raise DataFormatError(path, None, 'empty file; expected id pairs')
    return ids


def split_by_id(pairs, dev_fraction=0.1, seed=0):
    """Deterministic seeded train/dev split of MRPC pairs by their pair ids.

    Each pair gets the key ``sha1(f'{seed}:{id_a}:{id_b}')``; the ``round(n * dev_fraction)``
    pairs with the smallest keys form dev. The split depends only on the ids and the seed, not
    on the file order or Python's hash seed. Both parts keep file order.

    Parameters
    ----------
    pairs : list of PairRecord
        Records with ``id_a``/``id_b``.
    dev_fraction : float
        Fraction of pairs for dev, in [0, 1).
    seed : int
        Seed of the split.

    Outputs
    -------
    (list of PairRecord, list of PairRecord)
        ``(train, dev)``.
    """
    if not 0 <= dev_fraction < 1:
        raise ValueError(f'dev_fraction={dev_fraction}: expected a value in [0, 1)')
    keys = []
    for index, pair in enumerate(pairs):
        key = hashlib.sha1(f'{seed}:{pair.id_a}:{pair.id_b}'.encode('utf-8')).hexdigest()
        keys.append((key, index))
    num_dev = int(round(len(pairs) * dev_fraction))
    dev_index = {index for _, index in sorted(keys)[:num_dev]}
    train = [p for i, p in enumerate(pairs) if i not in dev_index]
    dev = [p for i, p in enumerate(pairs) if i in dev_index]
    return train, dev


def split_by_dev_ids(pairs, dev_ids):
    """GLUE's exact MRPC split: pairs whose ``(id_a, id_b)`` is in ``dev_ids`` form dev.

    Outputs
    -------
    (list of PairRecord, list of PairRecord)
        ``(train, dev)``, both in file order.
    """
    train = [p for p in pairs if (p.id_a, p.id_b) not in dev_ids]
    dev = [p for p in pairs if (p.id_a, p.id_b) in dev_ids]
    return train, dev


def write_mrpc_tsv(path, records, test=False):
    """Writes records in GLUE's MRPC format, atomically (used to build train/dev/test.tsv).

    Parameters
    ----------
    path : str
        Output file.
    records : list of PairRecord
    test : bool
        Write GLUE's test layout (``index`` column, no labels).
    """
    from .fileio import atomic_write
    with atomic_write(path, 'w', newline='\n') as fobj:
        fobj.write('\t'.join(MRPC_TEST_HEADER if test else MRPC_HEADER) + '\n')
        for index, rec in enumerate(records):
            first = str(index) if test else rec.label
            fobj.write('\t'.join([first, rec.id_a, rec.id_b, rec.text_a, rec.text_b]) + '\n')


@dataclasses.dataclass
class MRPCData:
    """MRPC train/dev(/test) records and a sentence saying where they came from.

    Attributes
    ----------
    train, dev : list of PairRecord
        Labelled records.
    test : list of PairRecord or None
        Test records (labelled for the MSR file, unlabelled for GLUE's test.tsv), if found.
    split : str
        Which files and which train/dev split were used, for logs and result files.
    """
    train: List[PairRecord]
    dev: List[PairRecord]
    test: Optional[List[PairRecord]]
    split: str

    def examples(self, part):
        """``[record.example() for record in getattr(self, part)]``: tuples for the transform."""
        records = getattr(self, part)
        return None if records is None else [rec.example() for rec in records]


def load_mrpc(data_dir, dev_fraction=0.1, seed=0):
    """Finds MRPC files in a directory and returns train/dev(/test) with a split description.

    Looked for, in this order:

    1. GLUE's ``train.tsv`` and ``dev.tsv`` (and ``test.tsv``): used as they are.
    2. ``msr_paraphrase_train.txt`` with GLUE's ``dev_ids.tsv``: GLUE's exact split.
    3. ``msr_paraphrase_train.txt`` alone: a seeded split by pair id (:func:`split_by_id`).

    The test split is GLUE's ``test.tsv`` or else ``msr_paraphrase_test.txt`` when present.

    Parameters
    ----------
    data_dir : str
        Directory to search.
    dev_fraction : float
        Dev fraction of the seeded split (case 3).
    seed : int
        Seed of the seeded split (case 3).

    Outputs
    -------
    MRPCData
    """
    def has(name):
        return os.path.isfile(os.path.join(data_dir, name))

    def path(name):
        return os.path.join(data_dir, name)
    test, test_desc = None, 'no test split'
    if has('test.tsv'):
        test, test_desc = read_mrpc_tsv(path('test.tsv')), 'test: GLUE test.tsv'
    elif has('msr_paraphrase_test.txt'):
        test = read_msr_paraphrase(path('msr_paraphrase_test.txt'))
        test_desc = 'test: msr_paraphrase_test.txt'
    if has('train.tsv') and has('dev.tsv'):
        train, dev = read_mrpc_tsv(path('train.tsv')), read_mrpc_tsv(path('dev.tsv'))
        split = 'GLUE train.tsv/dev.tsv'
    elif has('msr_paraphrase_train.txt'):
        pairs = read_msr_paraphrase(path('msr_paraphrase_train.txt'))
        if has('dev_ids.tsv'):
            train, dev = split_by_dev_ids(pairs, read_dev_ids(path('dev_ids.tsv')))
            split = 'GLUE split of msr_paraphrase_train.txt by dev_ids.tsv'
        else:
            train, dev = split_by_id(pairs, dev_fraction=dev_fraction, seed=seed)
            split = (f'seeded split of msr_paraphrase_train.txt by pair id '
                     f'(dev_fraction={dev_fraction}, seed={seed}; not GLUE\'s dev set)')
    else:
        raise DataFormatError(data_dir, None, 'no MRPC files found; expected train.tsv and '
                              'dev.tsv (GLUE) or msr_paraphrase_train.txt (MSR); '
                              'get them with: gluonbert download mrpc --dir ' + str(data_dir))
    split = f'{split}: {len(train)} train / {len(dev)} dev pairs; {test_desc}'
    return MRPCData(train, dev, test, split)
