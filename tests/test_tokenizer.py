"""The model's tokenizer as a SentencePiece model (service/encoders/tokenizer.py, tokenizer_export.py): the ids of
tokenizer.json, checked files, the fallback to tokenizer.json, and what cannot be converted."""

from __future__ import annotations

import json
import logging

import pytest
from conftest import CHORUS_CORPUS, MODEL_DIR, PARAPHRASES, shared

from service.encoders.tokenizer import (
    _PRELOADED,
    PIECES_FILE,
    PIECES_META,
    JsonTokenizer,
    PieceTokenizer,
    load_tokenizer,
    normaliser,
    preload_tokenizer,
)
from service.encoders.tokenizer_export import convert_tokenizer
from service.errors import ModelUnavailable


def _tiny_unigram(directory, normalizer=None, model="unigram"):
    """A small tokenizer.json shaped as multilingual-e5's (Unigram, Metaspace, <s> $A </s>), made in place."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors

    words = ["▁", "▁la", "▁facture", "▁fact", "ure", "▁dé", "pos", "er", "▁compte", "a", "b", "c", "é", "e", "r"]
    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [(w, -1.0 - i * 0.5) for i, w in enumerate(words)]
    if model == "unigram":
        tokenizer = Tokenizer(models.Unigram(vocab, unk_id=3, byte_fallback=False))
    else:
        tokenizer = Tokenizer(models.WordLevel({w: i for i, (w, _) in enumerate(vocab)}, unk_token="<unk>"))
    controls, spaces = normalizers.Replace(Regex("[\\x{1}-\\x{8}]"), ""), normalizers.Replace(Regex(" {2,}"), " ")
    tokenizer.normalizer = normalizer or normalizers.Sequence([controls, normalizers.NFKC(), spaces])
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tokenizer.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>"])  # read as themselves in a text, as e5's are
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    return tokenizer


def test_a_small_unigram_tokenizer_is_converted_with_the_same_ids(tmp_path):
    reference = _tiny_unigram(tmp_path)
    meta = convert_tokenizer(tmp_path)
    assert meta is not None and (tmp_path / "onnx" / PIECES_FILE).is_file()
    assert meta["checked"]["random_differ"] == 0
    tokenizer = load_tokenizer(tmp_path, max_length=6)
    assert isinstance(tokenizer, PieceTokenizer)
    for text in ["la facture", "  déposer\x01  le compte ", "ﬁ xyz", "", "abc" * 5, "la <s>facture</s>", "<pad>"]:
        reference.enable_truncation(6)
        assert tokenizer.encode_batch([text]) == [reference.encode(text).ids], text
    assert convert_tokenizer(tmp_path) == meta, "up to date: not converted again"


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "BertNormalizer"},  # a normaliser this module does not run
        {"type": "Sequence", "normalizers": [{"type": "Precompiled", "precompiled_charsmap": "AAAA"}]},
        {"type": "Replace", "pattern": {"Regex": "\\p{L}"}, "content": ""},  # Rust syntax Python reads otherwise
        {"type": "Replace", "pattern": {"Regex": "[a-z&&[^b]]"}, "content": ""},  # a class set operation
        {"type": "Replace", "pattern": {"Regex": "(unclosed"}, "content": ""},
    ],
)
def test_a_tokenizer_the_conversion_does_not_support_stays_tokenizer_json(tmp_path, spec, caplog):
    _tiny_unigram(tmp_path)
    data = json.loads((tmp_path / "tokenizer.json").read_text())
    data["normalizer"] = spec
    (tmp_path / "tokenizer.json").write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING):
        assert convert_tokenizer(tmp_path) is None
    assert "served as it is" in caplog.text
    assert not (tmp_path / "onnx" / PIECES_FILE).exists() and not (tmp_path / "onnx" / PIECES_META).exists()


def test_a_word_level_tokenizer_is_not_converted(tmp_path):
    _tiny_unigram(tmp_path, model="wordlevel")
    assert convert_tokenizer(tmp_path) is None
    assert isinstance(load_tokenizer(tmp_path, 512), JsonTokenizer)


def test_the_rust_regexes_of_tokenizer_json_run_in_python():
    run = normaliser(
        {
            "type": "Sequence",
            "normalizers": [
                {"type": "Replace", "pattern": {"Regex": "[\\x{1}\\x{7f}\\x{200b}]"}, "content": ""},
                {"type": "Replace", "pattern": {"String": "～"}, "content": "~"},
                {"type": "NFKC"},
                {"type": "Lowercase"},
                {"type": "Strip", "strip_left": False, "strip_right": True},
            ],
        }
    )
    assert run(" A\x01b\x7f\u200bc～ﬁ  ") == " abc~fi"


@pytest.mark.parametrize("damage", ["missing", "truncated", "changed"])
def test_a_damaged_converted_tokenizer_is_refused_with_what_to_run(tmp_path, damage):
    _tiny_unigram(tmp_path)
    convert_tokenizer(tmp_path)
    path = tmp_path / "onnx" / PIECES_FILE
    data = path.read_bytes()
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(data[: len(data) // 2] if damage == "truncated" else data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ModelUnavailable, match="prepare-model --onnx-only "):
        load_tokenizer(tmp_path, 512)
    assert convert_tokenizer(tmp_path) is not None, "prepare-model converts a damaged file again"
    assert isinstance(load_tokenizer(tmp_path, 512), PieceTokenizer)


def test_a_tokenizer_json_changed_since_the_conversion_is_served_as_it_is(tmp_path, caplog):
    _tiny_unigram(tmp_path)
    convert_tokenizer(tmp_path)
    data = json.loads((tmp_path / "tokenizer.json").read_text())
    data["model"]["vocab"][5][1] = -0.1  # another score
    (tmp_path / "tokenizer.json").write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING):
        assert isinstance(load_tokenizer(tmp_path, 512), JsonTokenizer)
    assert "changed since it was converted" in caplog.text
    (tmp_path / "onnx" / PIECES_META).write_text("{not json")
    with pytest.raises(ModelUnavailable, match="unreadable"):
        load_tokenizer(tmp_path, 512)


def test_a_conversion_checked_with_other_unicode_tables_is_not_trusted(tmp_path, caplog):
    """NFKC runs with Python's Unicode tables: another Python's could give other ids than those checked."""
    _tiny_unigram(tmp_path)
    meta = convert_tokenizer(tmp_path)
    meta["unicode"] = "9.0.0"
    (tmp_path / "onnx" / PIECES_META).write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING):
        assert isinstance(load_tokenizer(tmp_path, 512), JsonTokenizer)
    assert "Unicode 9.0.0" in caplog.text
    assert convert_tokenizer(tmp_path)["unicode"] != "9.0.0", "prepare-model converts and checks it again"


def test_the_preloaded_tokenizer_is_taken_and_only_for_its_own_file(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    _tiny_unigram(first)
    _tiny_unigram(second)
    convert_tokenizer(first)
    try:
        assert preload_tokenizer(first)
        shared_copy = next(iter(_PRELOADED.values()))
        assert load_tokenizer(first, 512) is shared_copy
        assert load_tokenizer(second, 512) is not shared_copy  # another model: its own
        assert isinstance(load_tokenizer(second, 512), JsonTokenizer)  # not converted: tokenizer.json
        assert not preload_tokenizer(tmp_path)  # no tokenizer.json there
    finally:
        _PRELOADED.clear()


def _texts() -> list[str]:
    """The Chorus Pro corpus and the team's paraphrases, with both prompts, and a passage longer than 512 tokens."""
    rows = [json.loads(line) for line in CHORUS_CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = [v for r in rows for v in r.values() if isinstance(v, str)] + [q for q, _ in PARAPHRASES]
    return [p + t for t in texts for p in ("query: ", "passage: ")] + ["passage: " + " ".join(texts)]


@pytest.mark.slow
def test_multilingual_e5s_converted_tokenizer_gives_the_ids_of_tokenizer_json():
    from tokenizers import Tokenizer

    meta = json.loads((MODEL_DIR / "onnx" / PIECES_META).read_text())
    assert meta["checked"]["random_differ"] <= 10
    reference = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
    reference.enable_truncation(512)
    tokenizer = load_tokenizer(MODEL_DIR, 512)
    assert isinstance(tokenizer, PieceTokenizer)
    texts = _texts()
    assert max(len(ids) for ids in tokenizer.encode_batch(texts)) == 512  # truncation is exercised
    assert tokenizer.encode_batch(texts) == [e.ids for e in reference.encode_batch(texts)]


@pytest.mark.slow
def test_the_converted_tokenizer_gives_the_ids_of_tokenizer_json_on_the_evaluation_sets():
    from tokenizers import Tokenizer

    texts = []
    for name in ("covid_quebec_fr/faq_fr.jsonl", "piaf_v1.1/queries.jsonl"):
        for line in shared(f"data/{name}").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            texts += [v for v in row.values() if isinstance(v, str)]
            texts += [x for v in row.values() if isinstance(v, list) for x in v if isinstance(x, str)]
    texts = ["query: " + t for t in texts]
    reference = Tokenizer.from_file(str(MODEL_DIR / "tokenizer.json"))
    reference.enable_truncation(512)
    assert len(texts) > 5000
    assert load_tokenizer(MODEL_DIR, 512).encode_batch(texts) == [e.ids for e in reference.encode_batch(texts)]


@pytest.mark.parametrize(
    "change",
    [
        {"normalizer": {"type": "Precompiled", "precompiled_charsmap": "AAAA"}},
        {"normalizer": {"type": "Replace", "pattern": {"Regex": "\\p{L}"}, "content": ""}},
        {"bos_id": 10**9},
        {"bos_id": "x"},
    ],
)
def test_a_converted_tokenizer_whose_description_is_wrong_is_refused_naming_it(tmp_path, change):
    _tiny_unigram(tmp_path)
    meta = convert_tokenizer(tmp_path)
    (tmp_path / "onnx" / PIECES_META).write_text(json.dumps({**meta, **change}))
    with pytest.raises(ModelUnavailable, match="tokenizer.model.json or .* cannot be used.*prepare-model --onnx-only"):
        load_tokenizer(tmp_path, 512)


def test_a_description_that_is_not_a_file_is_refused_not_passed_over(tmp_path):
    _tiny_unigram(tmp_path)
    convert_tokenizer(tmp_path)
    (tmp_path / "onnx" / PIECES_META).unlink()
    (tmp_path / "onnx" / PIECES_META).mkdir()
    with pytest.raises(ModelUnavailable, match="unreadable"):
        load_tokenizer(tmp_path, 512)
