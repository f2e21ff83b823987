"""MRPC (GLUE and original MSR files) and generic GLUE-format TSV readers; dev splits."""
import collections
import os

import pytest

from gluonbert.data.glue import (MRPC_HEADER, load_mrpc, read_dev_ids, read_glue_tsv,
                                 read_mrpc_tsv, read_msr_paraphrase, split_by_dev_ids,
                                 split_by_id, write_mrpc_tsv)
from gluonbert.errors import DataFormatError

HEADER = '\t'.join(MRPC_HEADER)
ROWS = [
    ('1', '702876', '702977', 'He called "the witness" a liar .',
     'Referring to him as "the witness , he called him a liar .'),
    ('0', '2108705', '2108831', "Yucaipa owned Dominick 's before 1998 .",
     "Yucaipa bought Dominick 's in 1995 ."),
    ('1', '1330381', '1330521', 'They had published an advertisement .',
     'On June 10 , the firm had published an advertisement .'),
    ('1', '3344667', '3344648', 'The stock rose 3 % .', 'Shares were up 3 percent .'),
]


def write_msr(path, rows=ROWS, bom=True, newline='\r\n', header=HEADER):
    text = newline.join([header] + ['\t'.join(r) for r in rows]) + newline
    path.write_bytes((b'\xef\xbb\xbf' if bom else b'') + text.encode('utf-8'))
    return str(path)


def test_msr_file_with_bom_crlf_and_bare_quotes(tmp_path):
    records = read_msr_paraphrase(write_msr(tmp_path / 'msr_paraphrase_train.txt'))
    assert len(records) == 4
    first = records[0]
    assert (first.label, first.id_a, first.id_b) == ('1', '702876', '702977')
    assert first.text_a == 'He called "the witness" a liar .'
    assert first.text_b == 'Referring to him as "the witness , he called him a liar .'
    assert first.example() == (first.text_a, first.text_b, '1') and first.line == 2
    assert [r.label for r in records] == ['1', '0', '1', '1']


def test_glue_train_and_test_tsv(tmp_path):
    train = read_mrpc_tsv(write_msr(tmp_path / 'train.tsv', bom=False, newline='\n'))
    assert [r.example() for r in train] == [(r[3], r[4], r[0]) for r in ROWS]
    test_header = 'index\t#1 ID\t#2 ID\t#1 String\t#2 String'
    test_rows = [(str(i),) + r[1:] for i, r in enumerate(ROWS)]
    test = read_mrpc_tsv(write_msr(tmp_path / 'test.tsv', rows=test_rows, header=test_header))
    assert test[1].label is None and test[1].example() == (ROWS[1][3], ROWS[1][4])


@pytest.mark.parametrize('content, line, message', [
    (HEADER + '\n1\t1\t2\tonly four fields\n', 2, '4 tab-separated fields; expected 5'),
    (HEADER + '\n1\t1\t2\ta\tb\n2\t3\t4\tc\td\n', 3, "label '2'"),
    (HEADER + '\n1\t1\t2\ta\tb\tc\n', 2, '6 tab-separated fields'),
    ('', None, 'empty file'),
    ('\n\n', None, 'empty file'),
    (HEADER + '\n', None, 'no data rows'),
    ('Label\tA\tB\tC\tD\n1\t1\t2\ta\tb\n', 1, 'header'),
])
def test_malformed_mrpc(tmp_path, content, line, message):
    path = tmp_path / 'msr_paraphrase_train.txt'
    path.write_text(content, encoding='utf-8')
    with pytest.raises(DataFormatError, match=message) as err:
        read_msr_paraphrase(str(path))
    assert err.value.path == str(path) and err.value.line == line
    assert str(path) in str(err.value)


def test_bad_utf8_names_line(tmp_path):
    path = tmp_path / 'train.tsv'
    path.write_bytes((HEADER + '\n1\t1\t2\ta\tb\n0\t3\t4\tcaf\xe9\td\n').encode('latin-1'))
    with pytest.raises(DataFormatError, match='invalid UTF-8') as err:
        read_mrpc_tsv(str(path))
    assert err.value.line == 3


def test_generic_reader_by_name_and_index(tmp_path):
    path = tmp_path / 'sst.tsv'
    path.write_text('sentence\tlabel\nit is fast !\t1\nit is slow .\t0\n', encoding='utf-8')
    by_name = read_glue_tsv(str(path), text_a='sentence', label='label', labels=['0', '1'])
    by_index = read_glue_tsv(str(path), text_a=0, label=1)
    assert by_name == by_index
    assert [r.example() for r in by_name] == [('it is fast !', '1'), ('it is slow .', '0')]
    no_header = tmp_path / 'cola.tsv'
    no_header.write_text('src\t1\t\tgood one .\nsrc\t0\t*\tbad one .\n', encoding='utf-8')
    rows = read_glue_tsv(str(no_header), text_a=3, label=1, header=False)
    assert [r.example() for r in rows] == [('good one .', '1'), ('bad one .', '0')]
    with pytest.raises(DataFormatError, match="column 'text' not in header"):
        read_glue_tsv(str(path), text_a='text')
    with pytest.raises(DataFormatError, match='given by name'):
        read_glue_tsv(str(no_header), text_a='sentence', header=False)


def make_pairs(tmp_path, count=200):
    rows = [(str(i % 3 != 0 and 1 or 0), str(1000 + i), str(5000 + i), f'a {i} .', f'b {i} .')
            for i in range(count)]
    return read_msr_paraphrase(write_msr(tmp_path / 'msr_paraphrase_train.txt', rows)), rows


def test_split_by_id_is_seeded_exact_and_order_free(tmp_path):
    pairs, _ = make_pairs(tmp_path)
    train, dev = split_by_id(pairs, dev_fraction=0.1, seed=3)
    assert len(dev) == 20 and len(train) == 180
    assert {(p.id_a, p.id_b) for p in train}.isdisjoint({(p.id_a, p.id_b) for p in dev})
    assert [p.line for p in dev] == sorted(p.line for p in dev)
    again = split_by_id(list(reversed(pairs)), dev_fraction=0.1, seed=3)[1]
    assert {p.id_a for p in again} == {p.id_a for p in dev}
    other = split_by_id(pairs, dev_fraction=0.1, seed=4)[1]
    assert {p.id_a for p in other} != {p.id_a for p in dev}


def test_load_mrpc_prefers_glue_then_dev_ids_then_seeded(tmp_path):
    pairs, rows = make_pairs(tmp_path)
    data = load_mrpc(str(tmp_path), dev_fraction=0.1, seed=0)
    assert 'seeded split' in data.split and 'seed=0' in data.split
    assert len(data.train) == 180 and len(data.dev) == 20 and data.test is None
    assert data.examples('dev')[0] == data.dev[0].example()

    dev_ids = tmp_path / 'dev_ids.tsv'
    dev_ids.write_text(''.join(f'{r[1]}\t{r[2]}\n' for r in rows[:7]), encoding='utf-8')
    data = load_mrpc(str(tmp_path))
    assert 'dev_ids.tsv' in data.split and len(data.dev) == 7
    assert [p.id_a for p in data.dev] == [r[1] for r in rows[:7]]

    train, dev = split_by_dev_ids(pairs, read_dev_ids(str(dev_ids)))
    write_mrpc_tsv(str(tmp_path / 'train.tsv'), train)
    write_mrpc_tsv(str(tmp_path / 'dev.tsv'), dev)
    write_mrpc_tsv(str(tmp_path / 'test.tsv'), pairs[:5], test=True)
    data = load_mrpc(str(tmp_path))
    assert data.split.startswith('GLUE train.tsv/dev.tsv')
    assert [p.example() for p in data.train] == [p.example() for p in train]
    assert len(data.test) == 5 and data.test[0].label is None


def test_load_mrpc_without_files(tmp_path):
    with pytest.raises(DataFormatError, match='gluonbert download mrpc'):
        load_mrpc(str(tmp_path))


def test_real_mrpc_train_file(mrpc_train):
    records = read_msr_paraphrase(mrpc_train)
    with open(mrpc_train, encoding='utf-8-sig') as fobj:
        lines = fobj.read().split('\n')
    rows = [line.split('\t') for line in lines[1:] if line]
    assert len(records) == len(rows) == 4076
    assert collections.Counter(r.label for r in records) == \
        collections.Counter(row[0] for row in rows)
    assert collections.Counter(r.label for r in records) == {'1': 2753, '0': 1323}
    first = rows[0]
    assert (records[0].label, records[0].id_a, records[0].id_b, records[0].text_a,
            records[0].text_b) == tuple(first)
    assert records[0].id_a == '702876' and records[0].text_a.startswith('Amrozi accused')
    data = load_mrpc(os.path.dirname(mrpc_train))
    assert len(data.dev) == 408 and len(data.train) == 3668
