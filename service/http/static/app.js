// The search page: calls POST /search, GET /faq/<id>, POST /feedback ("Utile ? oui / non", when the service keeps a
// query log) and GET /health (the FAQ's name, examples and support contact, from its corpus) of this service;
// no external resource.
"use strict";

const formulaire = document.getElementById("recherche");
const champ = document.getElementById("q");
const nombre = document.getElementById("top_k");
const theme = document.getElementById("theme");
const section = document.getElementById("resultats");
const liste = document.getElementById("liste");

const REPRESENTATIONS = {question: "la question", alt_question: "une autre formulation de la question",
                         passage: "un passage de la réponse"};

// L'identité de la FAQ (son nom, des exemples de questions, où s'adresser quand elle n'a pas de réponse).
let soutien = null;
// Les avis « Utile ? oui / non » ne sont proposés que si le service tient un journal des recherches.
let avisActif = false;

async function identifier() {
  try {
    const sante = await appeler("/health");
    avisActif = Boolean(sante.query_log && sante.query_log.enabled);
    const faq = sante.index.faq || {};
    if (faq.name) {
      document.title = `Recherche dans la FAQ ${faq.name}`;
      document.querySelector("h1").textContent = `Recherche dans la FAQ ${faq.name}`;
    }
    if (faq.examples && faq.examples.length) champ.placeholder = `ex. : ${faq.examples[0]}`;
    if (faq.language) champ.lang = faq.language;  // the questions' language (the page's own text stays French)
    soutien = faq.support || null;
    // A FAQ whose entries have tags: the search can be limited to one of them (its "filter").
    const tags = (sante.index.filters && sante.index.filters.tags) || [];
    if (tags.length) {
      theme.append(...tags.map((t) => element("option", {value: t}, t)));
      theme.hidden = false;
      document.querySelector("label[for=theme]").hidden = false;
    }
  } catch (e) {
    // Sans index chargé, la page reste générique ; la recherche dira l'erreur.
  }
}

identifier();

async function ouvrir(bouton, resultat, zone) {
  const ouvert = bouton.getAttribute("aria-expanded") === "true";
  if (ouvert) {
    bouton.setAttribute("aria-expanded", "false");
    zone.hidden = true;
    return;
  }
  if (!zone.dataset.charge) {
    zone.textContent = "Chargement…";
    try {
      const entree = await appeler(`/faq/${encodeURIComponent(resultat.faq_id)}`);
      zone.replaceChildren(...texteAvecLiens(entree.answer.replace(/^## /gm, "")));
      zone.dataset.charge = "1";
    } catch (e) {
      zone.textContent = `Impossible d'afficher l'entrée : ${e.message}`;
    }
  }
  bouton.setAttribute("aria-expanded", "true");
  zone.hidden = false;
}

// The passage with what the service highlights: the sentence that best answers (in bold) and the query's words
// (marked). A passage with links is shown with its links instead.
function texteSurligne(texte, surlignes) {
  if (!surlignes || !surlignes.length || /\[[^\]]+\]\(https?:\/\//.test(texte)) return texteAvecLiens(texte);
  const termes = surlignes.filter((h) => h.kind === "term");
  const morceaux = (debut, fin) => {
    const out = [];
    let i = debut;
    for (const t of termes) {
      if (t.start < i || t.end > fin) continue;
      out.push(texte.slice(i, t.start), element("mark", {}, texte.slice(t.start, t.end)));
      i = t.end;
    }
    out.push(texte.slice(i, fin));
    return out;
  };
  const phrase = surlignes.find((h) => h.kind === "sentence");
  if (!phrase) return morceaux(0, texte.length);
  return [...morceaux(0, phrase.start), element("strong", {classe: "phrase"}, ...morceaux(phrase.start, phrase.end)),
          ...morceaux(phrase.end, texte.length)];
}

function afficher(reponse) {
  liste.replaceChildren();
  reponse.results.forEach((r, i) => {
    const zone = element("div", {classe: "complete", id: `entree-${i}`, hidden: ""});
    const bouton = element("button", {type: "button", classe: "entree", "aria-expanded": "false",
                                      "aria-controls": `entree-${i}`}, r.question);
    bouton.addEventListener("click", () => ouvrir(bouton, r, zone));
    const badge = i === 0 && reponse.answered
      ? element("span", {classe: "badge reponse"}, "Réponse")
      : element("span", {classe: "badge suggestion"}, "Suggestion");
    const termes = r.match.terms.length ? ` ; mots en commun : ${r.match.terms.join(", ")}` : "";
    const meta = element("p", {classe: "meta"},
      `Score ${r.score < 0.005 ? "< 1" : Math.round(r.score * 100)} % · trouvé par ${REPRESENTATIONS[r.match.by] || r.match.by}${termes}`);
    const titre = element("h3", {}, bouton, " ", badge);
    const passage = element("p", {classe: "passage"}, r.section ? `${r.section} — ` : "",
                            ...texteSurligne(r.text, r.highlights));
    const item = element("li", {"data-faq-id": r.faq_id}, titre, meta, passage);
    if (r.links && r.links.length) {
      item.append(element("ul", {classe: "liens", "aria-label": "Pour aller plus loin"},
        ...r.links.map((l) => element("li", {}, lien(l.label, l.url)))));
    }
    if (avisActif && reponse.request_id) item.append(avis(reponse.request_id, r));
    item.append(zone);
    liste.append(item);
  });
  section.hidden = false;
  const n = reponse.results.length;
  annoncer(reponse.answered
    ? `${n} résultat${n > 1 ? "s" : ""} ; le premier répond à la question.`
    : `${n} résultat${n > 1 ? "s" : ""} ; aucune réponse sûre (${raison(reponse.reason)}), voici des entrées proches.`
      + (soutien ? ` Pour obtenir une réponse : ${soutien}.` : ""));
}

// « Utile ? oui / non » sous un résultat : l'avis va à POST /feedback avec l'identifiant de la recherche.
function avis(requestId, resultat) {
  const zone = element("p", {classe: "avis", role: "group", "aria-label": `Avis sur « ${resultat.question} »`},
                       "Utile ? ");
  for (const [texte, utile] of [["oui", true], ["non", false]]) {
    const bouton = element("button", {type: "button", classe: "petit"}, texte);
    bouton.addEventListener("click", async () => {
      try {
        await appeler("/feedback", {
          method: "POST", headers: {"Content-Type": "application/json"},
          body: JSON.stringify({request_id: requestId, faq_id: resultat.faq_id, helpful: utile}),
        });
        zone.replaceChildren("Merci, votre avis est enregistré.");
      } catch (e) {
        zone.replaceChildren(`Avis non enregistré : ${e.message}`);
      }
    });
    zone.append(bouton, " ");
  }
  return zone;
}

// Les raisons d'une absence de réponse, par code stable de l'API (docs/api.md).
function raison(r) {
  if (!r) return "raison inconnue";
  if (r.code === "not_covered") {
    return r.terms.length
      ? `l'entrée la plus proche ne parle pas de : ${r.terms.join(", ")}`
      : "l'entrée la plus proche ne couvre pas la question";
  }
  return {
    no_close_entry: "aucune entrée n'est assez proche de la question",
    ambiguous: "deux entrées sont trop proches pour choisir",
    known_non_answer: "une question semblable est signalée comme sans réponse dans cette entrée",
    too_vague: "la question ne contient aucun mot qui distingue les entrées",
  }[r.code] || r.message;
}

formulaire.addEventListener("submit", async (evenement) => {
  evenement.preventDefault();
  annoncer("Recherche…");
  try {
    const reponse = await appeler("/search", {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({query: champ.value, top_k: Number(nombre.value),
                            ...(theme.value ? {filter: {tags: [theme.value]}} : {})}),
    });
    afficher(reponse);
  } catch (e) {
    section.hidden = true;
    annoncer(`La recherche a échoué : ${e.message}`, true);
  }
});
