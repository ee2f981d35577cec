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
