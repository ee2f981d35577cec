"""Corpus format: the Chorus Pro corpus, passage splitting, and errors that name the file, line and reason."""

from __future__ import annotations

import json
import re

import pytest
from conftest import CHORUS_CORPUS, MINI_CORPUS, shared

from service.corpus import CorpusError, load_corpus, split_passages

SEED = "seed/000_e53c01ae1052629b.txt"  # the Chorus Pro page the corpus is made from, under ../shared


def test_chorus_corpus_has_the_five_entries_in_page_order():
    entries = load_corpus(CHORUS_CORPUS)
    assert [e.id for e in entries] == [f"chorus-pro-{n}" for n in range(1, 6)]
    assert entries[0].question == "Comment créer mon compte Chorus Pro ?"
    assert all(e.source and e.tags for e in entries)


def test_chorus_corpus_keeps_the_official_text_exactly():
    """Every heading and paragraph of the corpus is a line of the seed page, and every content line is kept."""
    seed_lines = [line for line in shared(SEED).read_text(encoding="utf-8").split("\n") if line.strip()]
    furniture = {"Loading....", "Print Friendly, PDF & Email", "Back To Top", "Illustration article top 5 questions"}
    corpus_lines = []
    for entry in load_corpus(CHORUS_CORPUS):
        corpus_lines.append(entry.question)
        for para in entry.answer.split("\n\n"):
            corpus_lines.append(para[3:] if para.startswith("## ") else para)
    for line in corpus_lines:
        assert any(line == s or s.endswith(" : " + line) for s in seed_lines), line
    kept = set(corpus_lines)
    dropped = [s for s in seed_lines if s not in kept and not re.match(r"N°\d : ", s) and s.strip() not in furniture]
    assert len(dropped) == 1 and dropped[0].startswith("L'AIFE")  # the page's introduction belongs to no entry


def test_subheadings_become_their_own_passages():
    passages = {p.passage_id: p for p in split_passages(load_corpus(CHORUS_CORPUS))}
    assert [pid for pid in passages if pid.startswith("chorus-pro-4")] == ["chorus-pro-4#1", "chorus-pro-4#2"]
    assert passages["chorus-pro-4#1"].section == "Si le gestionnaire est encore présent"
    assert passages["chorus-pro-4#2"].section == "Si le gestionnaire a quitté la structure"
    assert passages["chorus-pro-4#2"].text.startswith("Lorsque le gestionnaire principal a quitté")
    assert "##" not in passages["chorus-pro-4#2"].text
    assert passages["chorus-pro-1#1"].section is None
    assert passages["chorus-pro-3#1"].text.count("\n\n") == 4  # one passage, five paragraphs
    assert passages["chorus-pro-4#2"].embed_text.startswith(
        "Comment transférer le rôle de gestionnaire principal de ma structure ?\nSi le gestionnaire a quitté"
    )


def test_long_sections_are_cut_at_paragraph_boundaries(tmp_path):
    paragraphs = [f"Paragraphe {i}" + " mot" * 100 for i in range(6)]  # ~510 characters each
    corpus = tmp_path / "long.jsonl"
    corpus.write_text(json.dumps({"id": "long", "question": "Q ?", "answer": "\n\n".join(paragraphs)}) + "\n")
    passages = split_passages(load_corpus(corpus), max_chars=1500)
    assert [p.passage_id for p in passages] == ["long#1", "long#2"]
    assert "\n\n".join(p.text for p in passages) == "\n\n".join(paragraphs)
    assert all(len(p.text) <= 1500 for p in passages)


def test_optional_and_extra_fields_are_kept():
    entries = {e.id: e for e in load_corpus(MINI_CORPUS)}
    assert entries["factures"].alt_questions == ("facture sous-traitant",)
    assert entries["factures"].to_dict()["theme"] == "factures"
    assert entries["activation"].source is None


GOOD = '{"id": "a", "question": "Q ?", "answer": "R."}'

CORPUS_ERRORS = [
    ("bad json", [GOOD, '{"id": "b", "question": "Q"'], 2, "invalid JSON"),
    ("missing answer", [GOOD, '{"id": "b", "question": "Q ?"}'], 2, "missing required field 'answer'"),
    ("missing id", ['{"question": "Q ?", "answer": "R."}'], 1, "missing required field 'id'"),
    ("duplicate id", [GOOD, "", GOOD], 3, "duplicate id 'a' (first on line 1)"),
    ("empty question", ['{"id": "a", "question": "  ", "answer": "R."}'], 1, "field 'question' is empty"),
    ("empty answer", [GOOD, '{"id": "b", "question": "Q ?", "answer": ""}'], 2, "field 'answer' is empty"),
    ("answer not text", ['{"id": "a", "question": "Q ?", "answer": 3}'], 1, "field 'answer' must be a string"),
    ("not an object", [GOOD, '["a", "b"]'], 2, "expected a JSON object"),
    ("bad id", ['{"id": "a b/c", "question": "Q ?", "answer": "R."}'], 1, "id 'a b/c' must be"),
    ("tags not a list", ['{"id": "a", "question": "Q ?", "answer": "R.", "tags": "x"}'], 1, "'tags' must be a list"),
    (
        "not_questions not text",
        ['{"id": "a", "question": "Q ?", "answer": "R.", "not_questions": ["ok", 3]}'],
        1,
        "field 'not_questions[1]' must be a string",
    ),
    (
        "not_questions contradicts",
        ['{"id": "a", "question": "Q ?", "answer": "R.", "alt_questions": ["F ?"], "not_questions": [" f ? "]}'],
        1,
        "'not_questions[0]' is also this entry's question or one of its alt_questions",
    ),
    (
        "link with another scheme",
        ['{"id": "a", "question": "Q ?", "answer": "R.", "links": [{"label": "x", "url": "javascript:alert(1)"}]}'],
        1,
        "'links[0].url' must be an http or https URL",
    ),
    (
        "link without a host",
        ['{"id": "a", "question": "Q ?", "answer": "R.", "links": [{"label": "x", "url": "https:///p"}]}'],
        1,
        "'links[0].url' must be an http or https URL",
    ),
    (
        "link with an empty label",
        ['{"id": "a", "question": "Q ?", "answer": "R.", "links": [{"label": " ", "url": "https://a.fr"}]}'],
        1,
        "field 'links[0].label' is empty",
    ),
    (
        "link not an object",
        ['{"id": "a", "question": "Q ?", "answer": "R.", "links": ["https://a.fr"]}'],
        1,
        "'links[0]' must be an object with exactly 'label' and 'url'",
    ),
    ("links not a list", ['{"id": "a", "question": "Q ?", "answer": "R.", "links": {}}'], 1, "'links' must be a list"),
    (
        "not_questions empty item",
        ['{"id": "a", "question": "Q ?", "answer": "R.", "not_questions": [" "]}'],
        1,
        "field 'not_questions[0]' is empty",
    ),
]


@pytest.mark.parametrize("lines,line,reason", [c[1:] for c in CORPUS_ERRORS], ids=[c[0] for c in CORPUS_ERRORS])
def test_corpus_errors_name_file_line_and_reason(tmp_path, lines, line, reason):
    path = tmp_path / "faq.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(CorpusError) as info:
        load_corpus(path)
    assert info.value.line == line
    assert reason in info.value.reason
    assert str(info.value).startswith(f"{path}:{line}: ")


def test_bad_utf8_empty_and_missing_files(tmp_path):
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(GOOD.encode() + b'\n{"id": "b", "question": "caf\xe9", "answer": "R."}\n')
    with pytest.raises(CorpusError, match=r"latin1.jsonl:2: not valid UTF-8"):
        load_corpus(bad)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(CorpusError, match="the corpus has no entry"):
        load_corpus(empty)
    with pytest.raises(CorpusError, match="cannot read corpus"):
        load_corpus(tmp_path / "absent.jsonl")


def test_utf8_bom_and_numeric_ids_are_accepted(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"id": 7, "question": "Q ?", "answer": "R."}\n')
    assert [e.id for e in load_corpus(path)] == ["7"]


def test_every_bad_line_is_reported_at_once(tmp_path):
    good = '{"id": "a", "question": "Q ?", "answer": "R."}'
    lines = [good, "{not json", '{"id": "b", "question": "", "answer": "R."}', good, '{"id": "c", "answer": "R."}']
    path = tmp_path / "faq.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(CorpusError) as caught:
        load_corpus(path)
    reported = str(caught.value).splitlines()
    assert [line.split(": ", 1)[0] for line in reported] == [f"{path}:{n}" for n in (2, 3, 4, 5)]
    assert "duplicate id 'a'" in reported[2] and "invalid JSON" in reported[0]


def test_a_long_list_of_errors_is_capped_and_counted(tmp_path):
    from service.corpus import MAX_REPORTED_ERRORS

    path = tmp_path / "faq.jsonl"
    path.write_text("{bad\n" * (MAX_REPORTED_ERRORS + 5), encoding="utf-8")
    with pytest.raises(CorpusError) as caught:
        load_corpus(path)
    reported = str(caught.value).splitlines()
    assert len(reported) == MAX_REPORTED_ERRORS + 1 and reported[-1] == "… and 5 more errors"


def test_links_and_the_answers_markdown_links_are_the_entrys_links(tmp_path):
    path = tmp_path / "faq.jsonl"
    path.write_text(
        '{"id": "a", "question": "Q ?", "answer": "Voir [le site](https://a.fr/x) et [pas ça](ftp://a.fr) ; '
        '[encore](https://a.fr/x).", "links": [{"label": "Accueil", "url": "https://a.fr/"}]}\n',
        encoding="utf-8",
    )
    (entry,) = load_corpus(path)
    assert entry.links == ({"label": "Accueil", "url": "https://a.fr/"},)
    assert entry.all_links() == [
        {"label": "Accueil", "url": "https://a.fr/"},
        {"label": "le site", "url": "https://a.fr/x"},
    ]
    assert entry.to_dict()["links"] == [{"label": "Accueil", "url": "https://a.fr/"}]


def test_chorus_answers_that_say_click_here_carry_a_link_that_says_where():
    """The official text keeps its "cliquez ici" (above); each such entry's links say where it leads, safely."""
    from service.corpus import safe_url

    for entry in load_corpus(CHORUS_CORPUS):
        if re.search(r"\bici\b", entry.answer):
            assert entry.links, entry.id
            for link in entry.links:
                assert safe_url(link["url"]) and "ici" not in link["label"].lower().split(), link
