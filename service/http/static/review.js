// The review page: GET /admin/review, /admin/gaps, /admin/review/actions and POST /admin/review/actions (and
// .../revert) of this service, with the admin token the user types (kept in sessionStorage); nothing external.
"use strict";

const connexion = document.getElementById("connexion");
const jeton = document.getElementById("jeton");
const auteur = document.getElementById("auteur");
const reconstruction = document.getElementById("reconstruction");
const relancer = document.getElementById("relancer");
// The page of the queue shown (500 questions a page, the most flagged first).
let page = 1;

// What a decision did, agreed with its number of questions ("1 question rattachée", "2 questions rattachées").
const ACTIONS = {attach: (s) => `rattachée${s} à`, not_answered: () => "dont l'entrée ne répond pas :",
                 dismiss: (s) => `écartée${s}`, revert: () => "annulation de"};

// Every admin call carries the token typed on this page.
function appelerAdmin(url, options = {}) {
  const entetes = {...(options.headers || {}), Authorization: `Bearer ${sessionStorage.getItem("jeton") || ""}`};
  return appeler(url, {...options, headers: entetes});
}

function date(iso) {
  return new Date(iso).toLocaleString("fr-FR", {dateStyle: "short", timeStyle: "short"});
}

let indexId = null;
// Every entry of the FAQ (id -> question), for a choice beyond the suggestions.
let questions = new Map();

function groupe(g, i) {
  const titre = element("h3", {id: `groupe-${i}`},
    `« ${g.examples[0].text} »` + (g.queries > 1 ? ` et ${g.queries - 1} autre${g.queries > 2 ? "s" : ""} formulation${g.queries > 2 ? "s" : ""}` : ""));
  const meta = element("p", {classe: "meta"},
    `Posée ${g.asked} fois · sans réponse ${g.unanswered} · jugée inutile ${g.not_helpful} · du ${date(g.first_seen)} au ${date(g.last_seen)}`);
  const exemples = element("ul", {classe: "exemples"},
    ...g.examples.map((e) => element("li", {}, `${e.text} (${e.asked}×)`)));
  // A decision covers every wording of the group: all of them can be read before deciding.
  const toutes = element("details", {},
    element("summary", {}, `Les ${g.wordings.length} formulations que la décision couvre`),
    element("ul", {}, ...g.wordings.map((w) => element("li", {}, `${w.text} (${w.asked}×)`))));
  // The entries users were given first, then the nearest ones, then every other entry of the FAQ.
  // Nothing chosen in advance: the entry most often shown is often the wrong one, and one click would attach to it.
  const choix = element("select", {id: `entree-${i}`});
  choix.append(element("option", {value: ""}, "— choisir l'entrée —"));
  const vus = new Set();
  const proposer = (groupe, id, texte) => {
    if (vus.has(id)) return;
    vus.add(id);
    groupe.append(element("option", {value: id}, texte));
  };
  const donnees = element("optgroup", {label: "Données aux usagers ou proches"});
  for (const id of Object.keys(g.shown)) proposer(donnees, id, `${questions.get(id) || id} (donnée ${g.shown[id]} fois)`);
  for (const s of g.suggested) proposer(donnees, s.faq_id, `${s.question} (${Math.round(s.score * 100)} %)`);
  const autres = element("optgroup", {label: "Autres entrées"});
  for (const [id, question] of questions) proposer(autres, id, question);
  choix.append(donnees, autres);
  const etiquette = element("label", {for: `entree-${i}`}, "Entrée concernée");
  const boutons = element("div", {classe: "ligne", role: "group", "aria-labelledby": `groupe-${i}`});
  for (const [action, texte] of [["attach", "Rattacher à cette entrée"], ["not_answered", "Cette entrée n'y répond pas"], ["dismiss", "Écarter"]]) {
    const bouton = element("button", {type: "button", "data-action": action}, texte);
    bouton.addEventListener("click", () => {
      if (action !== "dismiss" && !choix.value) {
        annoncer("Choisissez d'abord l'entrée concernée.", true);
        choix.focus();
        return;
      }
      decider(action, g, choix.value);
    });
    boutons.append(bouton);
  }
  return element("li", {"data-groupe": g.id, "aria-labelledby": `groupe-${i}`}, titre, meta, exemples, toutes, etiquette, choix, boutons);
}

async function decider(action, g, faqId) {
  annoncer("Enregistrement…");
  try {
    const corps = {action, query_keys: g.query_keys, index_id: indexId, by: auteur.value.trim() || "admin"};
    if (action !== "dismiss") corps.faq_id = faqId;
    await appelerAdmin("/admin/review/actions", {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(corps),
    });
    annoncer(action === "dismiss" ? "Groupe écarté." : "Décision enregistrée ; l'index va être reconstruit (état ci-dessous).");
    await charger(false);
  } catch (e) {
    annoncer(`Décision refusée : ${e.message}`, true);
  }
}

async function annuler(id) {
  try {
    await appelerAdmin(`/admin/review/actions/${encodeURIComponent(id)}/revert`, {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({by: auteur.value.trim() || "admin"}),
    });
    annoncer("Décision annulée.");
    await charger(false);
  } catch (e) {
    annoncer(`Annulation refusée : ${e.message}`, true);
  }
}

function pluriel(n) {
  return n > 1 ? "s" : "";
}

function decision(a) {
  const texte = a.action === "revert"
    ? `${date(a.at)} · ${a.by} · annulation de ${a.reverts}`
    : `${date(a.at)} · ${a.by} · ${a.questions.length} question${pluriel(a.questions.length)} ${ACTIONS[a.action](pluriel(a.questions.length))} ${a.faq_id || ""}`;
  const item = element("li", {"data-action-id": a.id}, texte);
  if (a.action !== "revert" && !a.reverted_by) {
    const bouton = element("button", {type: "button", classe: "petit"}, "Annuler");
    bouton.addEventListener("click", () => annuler(a.id));
    item.append(" ", bouton);
  } else if (a.reverted_by) {
    item.append(" (annulée)");
  }
  return item;
}

function heure(iso) {
  return new Date(iso).toLocaleTimeString("fr-FR", {timeStyle: "short"});
}

// What the last rebuild did, and whether the decisions are all in the index served.
function etatReconstruction(r) {
  if (!r) return "";
  const manque = r.pending ? " Des décisions ne sont pas encore dans l'index." : "";
  if (r.state === "failed" || r.state === "interrupted") {
    const cause = r.state === "failed" ? `a échoué (${r.error})` : "a été interrompue (son processus s'est arrêté)";
    const suite = !r.pending ? "" : r.next_retry_at && r.attempts_left > 0
      ? ` Nouvel essai automatique vers ${heure(r.next_retry_at)}.` : " Plus de nouvel essai automatique : relancez-la.";
    return `La dernière reconstruction de l'index ${cause}.${manque}${suite}`;
  }
  const duree = typeof r.seconds === "number"
    ? ` en ${r.seconds.toLocaleString("fr-FR", {maximumFractionDigits: 1})} s` : "";
  return ({running: "Reconstruction de l'index en cours…", queued: "Reconstruction de l'index en attente…",
           done: `Dernière reconstruction de l'index terminée${duree}.${manque}`}[r.state] || "");
}

async function relancerReconstruction() {
  try {
    const reponse = await appelerAdmin("/admin/review/rebuild", {method: "POST"});
    annoncer(reponse.started ? "Reconstruction relancée." : "L'index contient déjà toutes les décisions.");
    await charger(false);
  } catch (e) {
    annoncer(`Relance refusée : ${e.message}`, true);
  }
}

async function charger(annonce = true) {
  const file = await appelerAdmin(`/admin/review?page=${page}`);
  if (page > file.pages) {  // the queue shrank under the page shown
    page = file.pages;
    return charger(annonce);
  }
  indexId = file.index_id;
  questions = new Map(file.entries.map((e) => [e.faq_id, e.question]));
  const liste = document.getElementById("liste-groupes");
  liste.replaceChildren(...file.groups.map(groupe));
  document.getElementById("groupes").hidden = false;
  const r = file.rebuild;
  reconstruction.textContent = etatReconstruction(r);
  relancer.hidden = !(r && r.pending && ["failed", "interrupted", "done"].includes(r.state));
  const problemes = document.getElementById("problemes");
  problemes.replaceChildren(...file.reviewed_file_problems.map((p) =>
    element("li", {}, `Ligne ignorée du fichier des décisions : ${p}`)));
  problemes.hidden = !file.reviewed_file_problems.length;
  document.getElementById("pagination").textContent =
    (file.pages > 1 ? `Page ${file.page} sur ${file.pages} (${file.queries} questions). ` : "") +
    (file.preparing ? `${file.preparing} question${file.preparing > 1 ? "s" : ""} en préparation : rechargez dans un instant.` : "");
  document.getElementById("page-precedente").hidden = file.page <= 1;
  document.getElementById("page-suivante").hidden = file.page >= file.pages;
  const manques = await appelerAdmin("/admin/gaps?limit=20");
  document.getElementById("liste-manques").replaceChildren(...manques.gaps.map((g) =>
    element("tr", {}, element("td", {}, String(g.asked)), element("td", {}, String(g.unanswered)),
            element("td", {}, String(g.not_helpful)), element("td", {}, g.examples[0].text))));
  document.getElementById("manques").hidden = false;
  const decisions = await appelerAdmin("/admin/review/actions");
  document.getElementById("liste-decisions").replaceChildren(...decisions.actions.map(decision));
  document.getElementById("decisions").hidden = false;
  if (annonce) {
    const n = file.groups.length;
    annoncer(n ? `${n} groupe${n > 1 ? "s" : ""} de questions à revoir.` : "Aucune question à revoir.");
  }
  if (r && (r.state === "running" || r.state === "queued")) setTimeout(() => charger(false).catch(() => {}), 1500);
}

relancer.addEventListener("click", relancerReconstruction);
document.getElementById("page-precedente").addEventListener("click", () => { page -= 1; charger().catch(() => {}); });
document.getElementById("page-suivante").addEventListener("click", () => { page += 1; charger().catch(() => {}); });

connexion.addEventListener("submit", async (evenement) => {
  evenement.preventDefault();
  sessionStorage.setItem("jeton", jeton.value);
  sessionStorage.setItem("auteur", auteur.value);
  annoncer("Chargement…");
  try {
    await charger();
  } catch (e) {
    annoncer(`Impossible d'afficher la revue : ${e.message}`, true);
  }
});

auteur.value = sessionStorage.getItem("auteur") || "";
if (sessionStorage.getItem("jeton")) {
  jeton.value = sessionStorage.getItem("jeton");
  charger().catch((e) => annoncer(`Impossible d'afficher la revue : ${e.message}`, true));
}
