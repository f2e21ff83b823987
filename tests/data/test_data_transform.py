"""BERTDatasetTransform (GluonNLP 0.10 contract), batchify and the bucketed loader."""
import numpy as np
import pytest

from gluonbert.data.transform import (BERTDatasetTransform, batchify_classification,
                                      classification_dataloader)
from gluonbert.errors import InputError

PAIRS = [
    ('is this jacksonville ?', 'no it is not .', '0'),
    ('the dog is hairy .', 'the cat sat on the mat .', '1'),
    ('the red dog', 'a blue cat', '1'),
    ('he said it was night .', 'she said it was day and it was not night .', '0'),
    ('jack', 'the dog and the cat and the red mat and the blue day', '1'),
]


def test_pair_layout_and_dtypes(tokenizer, vocab):
    transform = BERTDatasetTransform(tokenizer, 20, class_labels=['0', '1'])
    input_ids, segment_ids, valid_length, label = transform(PAIRS[0])
    tokens = '[CLS] is this jack ##son ##ville ? [SEP] no it is not . [SEP]'.split()
    assert input_ids.dtype == segment_ids.dtype == valid_length.dtype == np.int32
    assert input_ids.shape == segment_ids.shape == (20,)
    assert valid_length.shape == () and int(valid_length) == 14
    assert vocab.to_tokens(input_ids[:14].tolist()) == tokens
    assert (input_ids[14:] == vocab['[PAD]']).all()
    assert segment_ids.tolist() == [0] * 8 + [1] * 6 + [0] * 6
    assert label.dtype == np.int32 and label.tolist() == [0]


def test_same_as_gluonnlp_sentence_transform(tokenizer):
    """Our order (ids, segments, valid_length) is GluonNLP's (ids, valid_length, segments)."""
    from gluonnlp.data import BERTSentenceTransform
    for pad in (True, False):
        for max_len in (8, 12, 40):
            ref = BERTSentenceTransform(tokenizer, max_len, pad=pad, pair=True)
            ours = BERTDatasetTransform(tokenizer, max_len, class_labels=['0', '1'], pad=pad)
            for line in PAIRS:
                ids, vl, seg = ref(line[:2])
                out = ours(line)
                np.testing.assert_array_equal(out[0], ids)
                np.testing.assert_array_equal(out[1], seg)
                np.testing.assert_array_equal(out[2], vl)


def test_truncation_longest_first(tokenizer, vocab):
    transform = BERTDatasetTransform(tokenizer, 9, class_labels=['0', '1'], pad=False)
    ids, seg, valid, _ = transform(('the red dog sat', 'a', '1'))
    assert vocab.to_tokens(ids.tolist()) == '[CLS] the red dog sat [SEP] a [SEP]'.split()
    ids, seg, valid, _ = transform(('the red dog sat on the mat', 'a blue cat is fast', '1'))
    # 6 content tokens: 3 + 3, both truncated from the end
    assert vocab.to_tokens(ids.tolist()) == \
        '[CLS] the red dog [SEP] a blue cat [SEP]'.split()
    assert int(valid) == 9 and seg.tolist() == [0] * 5 + [1] * 4


def test_single_text_regression_and_no_label(tokenizer, vocab):
    single = BERTDatasetTransform(tokenizer, 6, pair=False, pad=False)
    ids, seg, valid, label = single(('the dog is hairy .', '3.5'))
    assert vocab.to_tokens(ids.tolist()) == '[CLS] the dog is hair [SEP]'.split()
    assert seg.tolist() == [0] * 6 and int(valid) == 6
    assert label.dtype == np.float32 and label.tolist() == [3.5]
    unlabelled = BERTDatasetTransform(tokenizer, 16, has_label=False)
    out = unlabelled(('the dog', 'the cat'))
    assert len(out) == 3 and int(out[2]) == 7


def test_label_alias_and_errors(tokenizer):
    transform = BERTDatasetTransform(tokenizer, 16, class_labels=['0', '1'],
                                     label_alias={'yes': '1'})
    assert transform(('the dog', 'the cat', 'yes'))[3].tolist() == [1]
    with pytest.raises(InputError, match="label '2' is not one of"):
        transform(('the dog', 'the cat', '2'))
    with pytest.raises(InputError, match='expected 3'):
        transform(('the dog', '1'))
    with pytest.raises(InputError, match='expected a number'):
        BERTDatasetTransform(tokenizer, 16)(('a', 'b', 'x'))
    with pytest.raises(InputError, match='at least 3'):
        BERTDatasetTransform(tokenizer, 2)


def test_batchify_pads_to_longest_rounded(tokenizer, vocab):
    transform = BERTDatasetTransform(tokenizer, 64, class_labels=['0', '1'], pad=False)
    samples = [transform(line) for line in PAIRS]
    longest = max(len(s[0]) for s in samples)
    ids, seg, valid, label = batchify_classification(pad_id=vocab['[PAD]'], as_numpy=True)(samples)
    assert ids.shape == seg.shape == (5, longest) and ids.dtype == np.int32
    assert valid.tolist() == [len(s[0]) for s in samples]
    assert label.shape == (5,) and label.tolist() == [0, 1, 1, 0, 1]
    for row, sample in enumerate(samples):
        np.testing.assert_array_equal(ids[row, :len(sample[0])], sample[0])
        assert (ids[row, len(sample[0]):] == vocab['[PAD]']).all()
    rounded = batchify_classification(round_to=8)(samples)
    assert rounded[0].shape == (5, 8 * -(-longest // 8))
    assert rounded[0].dtype == np.int32 and rounded[3].dtype == np.int32
    assert type(rounded[0]).__name__ == 'NDArray'


def test_dataloader_with_simple_dataset_and_buckets(tokenizer, vocab):
    from mxnet import gluon
    transform = BERTDatasetTransform(tokenizer, 64, class_labels=['0', '1'], pad=False)
    data = gluon.data.SimpleDataset(PAIRS * 8).transform(transform, lazy=False)
    np.random.seed(0)
    loader = classification_dataloader(data, batch_size=4, shuffle=True, num_buckets=3,
                                       pad_id=transform.pad_id, round_to=8)
    seen = 0
    for input_ids, segment_ids, valid_length, label in loader:
        batch = input_ids.shape[0]
        assert input_ids.shape == segment_ids.shape and input_ids.shape[1] % 8 == 0
        assert input_ids.dtype == np.int32 and valid_length.shape == (batch,)
        assert label.shape == (batch,) and label.dtype == np.int32
        assert input_ids.shape[1] >= valid_length.max().asscalar()
        seen += batch
    assert seen == len(PAIRS) * 8
