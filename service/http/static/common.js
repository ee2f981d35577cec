// Shared by the search page (app.js) and the review page (review.js): building elements, the status line, and
// calling this service with its JSON error shape turned into a readable message.
"use strict";

function element(tag, attributs, ...enfants) {
  const el = document.createElement(tag);
  for (const [nom, valeur] of Object.entries(attributs || {})) {
    if (nom === "classe") el.className = valeur; else el.setAttribute(nom, valeur);
  }
  for (const enfant of enfants) el.append(enfant);
  return el;
}

function annoncer(texte, erreur = false) {
  const etat = document.getElementById("etat");
  etat.textContent = texte;
  etat.classList.toggle("erreur", erreur);
}

// A link of the FAQ, only when it is http or https (anything else is shown as its label, as text).
function lien(libelle, url) {
  let sur = false;
  try {
    const u = new URL(url);
    sur = u.protocol === "http:" || u.protocol === "https:";
  } catch (e) {
    sur = false;
  }
  return sur ? element("a", {href: url, rel: "noopener noreferrer"}, libelle) : libelle;
}

// A text with its markdown links ([libellé](https://…)) as links; everything else stays text (never HTML).
function texteAvecLiens(texte) {
  const morceaux = [];
  let fin = 0;
  for (const m of texte.matchAll(/\[([^\[\]\n]{1,200})\]\((https?:\/\/[^\s()<>"]{1,2000})\)/g)) {
    morceaux.push(texte.slice(fin, m.index), lien(m[1], m[2]));
    fin = m.index + m[0].length;
  }
  morceaux.push(texte.slice(fin));
  return morceaux;
}

// Under /faqs/<name>/ the page is one FAQ's: its calls go to that FAQ's routes (/faqs/<name>/search, …).
const BASE = (location.pathname.match(/^\/faqs\/[^/]+/) || [""])[0];

async function appeler(url, options) {
  const reponse = await fetch(url.startsWith("/") ? BASE + url : url, options);
  const corps = await reponse.json();
  if (!reponse.ok) {
    const err = corps.error || {};
    throw new Error(err.message ? `${err.message} (${err.code})` : `erreur ${reponse.status}`);
  }
  return corps;
}
