"""Chorus Pro questions as users type them (informal, no accents, typos, synonyms), with the entry that answers.

Written by the team for the retrieval tests; none is copied from the FAQ. ``PASSAGE`` pins the section when
the answer has sub-headings and the paraphrase is about one of them.
"""

PARAPHRASES: list[tuple[str, str]] = [
    # chorus-pro-1: creating an account
    ("comment je m'inscris sur chorus pro", "chorus-pro-1"),
    ("creer un compte chorus pro pour mon entreprise", "chorus-pro-1"),
    ("je veux ouvrir un compte sur chorus, il faut quoi ?", "chorus-pro-1"),
    ("inscription chorus pro premiere fois", "chorus-pro-1"),
    ("jai pas encore de compte chorus comment faire", "chorus-pro-1"),
    ("quels documents pour créer un compte ? siret mail mot de passe", "chorus-pro-1"),
    ("comment se rattacher au siret de ma boite quand on crée son compte", "chorus-pro-1"),
    ("cree compte chrous pro", "chorus-pro-1"),
    ("besoin d'un compte chorus pour facturer l'etat, ou je m'enregistre ?", "chorus-pro-1"),
    ("premiere connexion chorus pro, comment on crée ses identifiants", "chorus-pro-1"),
    # chorus-pro-2: the activation link
    ("pas reçu le mail d'activation", "chorus-pro-2"),
    ("je ne trouve pas le lien pour activer mon compte", "chorus-pro-2"),
    ("lien d'activation expiré ou perdu comment le renvoyer", "chorus-pro-2"),
    ("mail de confirmation d'inscription jamais arrivé", "chorus-pro-2"),
    ("comment finaliser mon inscription je n'ai pas le lien", "chorus-pro-2"),
    ("renvoyer le lien d activation chorus", "chorus-pro-2"),
    ("j'ai pas eu l'email pour activer le compte, il est peut etre dans les spams", "chorus-pro-2"),
    ("activation compte chorus pro mail pas recu", "chorus-pro-2"),
    ("pas reçu le mail", "chorus-pro-2"),
    ("le lien dans le mail ne marche plus, je fais comment", "chorus-pro-2"),
    # chorus-pro-3: adding spaces (features)
    ("comment ajouter un espace à mon compte", "chorus-pro-3"),
    ("activer une nouvelle fonctionnalité sur chorus pro", "chorus-pro-3"),
    ("je vois pas l'espace factures émises, comment l'avoir ?", "chorus-pro-3"),
    ("s'abonner à un espace quand on est utilisateur simple", "chorus-pro-3"),
    ("mon gestionnaire doit valider mon abonnement a un espace ?", "chorus-pro-3"),
    ("ouvrir un espace sur la structure", "chorus-pro-3"),
    ("il me manque des menus dans chorus, comment les rajouter", "chorus-pro-3"),
    ("ajout espaces fonctionalites compte", "chorus-pro-3"),
    ("comment avoir accès à l'espace engagements juridiques", "chorus-pro-3"),
    ("rajouter une fonctionnalité à mon profil chorus", "chorus-pro-3"),
    # chorus-pro-4: transferring the main manager role
    ("notre admin est parti sans passer la main", "chorus-pro-4"),
    ("changer de gestionnaire principal", "chorus-pro-4"),
    ("le gestionnaire principal a quitté la boite, qui peut nommer un remplaçant ?", "chorus-pro-4"),
    ("transferer le role de gestionnaire principal a un collegue", "chorus-pro-4"),
    ("mon administrateur est parti à la retraite et personne n'a les droits", "chorus-pro-4"),
    ("comment devenir gestionnaire principal de la structure", "chorus-pro-4"),
    ("passer les droits d'administrateur à quelqu'un d'autre", "chorus-pro-4"),
    ("gestionaire principal démissionné plus personne pour gérer la structure", "chorus-pro-4"),
    ("notre gestionnaire principal va partir, comment il transmet son rôle ?", "chorus-pro-4"),
    ("nommer un nouveau gestionnaire principal", "chorus-pro-4"),
    # chorus-pro-5: subcontracting / co-contracting invoices
    ("facture de sous traitant comment ça marche", "chorus-pro-5"),
    ("je suis sous-traitant, comment envoyer ma facture ?", "chorus-pro-5"),
    ("cotraitance facturation chorus pro", "chorus-pro-5"),
    ("qui valide la facture d'un sous traitant", "chorus-pro-5"),
    ("marché public avec un mandataire, comment facturer en co-traitance", "chorus-pro-5"),
    ("le titulaire doit-il valider les factures des sous-traitants ?", "chorus-pro-5"),
    ("deposer une facture en tant que cotraitant", "chorus-pro-5"),
    ("paiement direct sous traitance facture", "chorus-pro-5"),
    ("je suis co-traitant d'un marché public, je facture comment ?", "chorus-pro-5"),
    ("facture sous-traitance validation par le titulaire du marché", "chorus-pro-5"),
]

#: Paraphrases about one sub-section of an entry, with the passage that must come first for that entry.
PASSAGE: dict[str, str] = {
    "notre admin est parti sans passer la main": "chorus-pro-4#2",
    "le gestionnaire principal a quitté la boite, qui peut nommer un remplaçant ?": "chorus-pro-4#2",
    "mon administrateur est parti à la retraite et personne n'a les droits": "chorus-pro-4#2",
    "notre gestionnaire principal va partir, comment il transmet son rôle ?": "chorus-pro-4#1",
}
