"""The status page's words, in English and Dutch, and how a request picks its language.

A ``?lang=`` on the URL wins (the switch on the page sets it, and a cookie remembers it),
then the browser's Accept-Language, then English.
"""

from __future__ import annotations

LANGUAGES = ("en", "nl")
DEFAULT = "en"

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Migration status",
        "window": "Migration window",
        "applications": "Applications",
        "progress": "Overall progress",
        "expected": "Expected to be done",
        "last_update": "Last update",
        "no_update": "no news yet",
        "status.planned": "planned",
        "status.frozen": "frozen",
        "status.moving": "moving data",
        "status.checking": "checking",
        "status.live": "live on the new site",
        "status.rolling_back": "being rolled back",
        "status.rolled_back": "rolled back",
        "status.attention": "needs attention",
        "run.not_started": "Not started yet",
        "run.running": "In progress",
        "run.waiting": "Waiting for a decision by the migration team",
        "run.completed": "Done: every application runs on the new site",
        "run.rolled_back": "Rolled back: the applications run on the old site",
        "run.attention": "The migration team is looking into a problem",
        "eta.on_schedule": "on schedule",
        "eta.behind": "about {minutes} minutes behind schedule",
        "eta.past_window": "{minutes} minutes after the end of the window",
        "eta.finished": "finished",
        "eta.unknown": "not known yet",
        "live": "This page updates by itself.",
        "refresh": "Refresh the page for the latest state.",
        "language": "Nederlands",
        "to": "to",
        "steps_done": "{done} of {total} steps done",
    },
    "nl": {
        "title": "Stand van de migratie",
        "window": "Migratievenster",
        "applications": "Applicaties",
        "progress": "Voortgang",
        "expected": "Naar verwachting klaar",
        "last_update": "Laatst bijgewerkt",
        "no_update": "nog geen nieuws",
        "status.planned": "gepland",
        "status.frozen": "bevroren",
        "status.moving": "gegevens worden verplaatst",
        "status.checking": "wordt gecontroleerd",
        "status.live": "live op de nieuwe locatie",
        "status.rolling_back": "wordt teruggedraaid",
        "status.rolled_back": "teruggedraaid",
        "status.attention": "vraagt aandacht",
        "run.not_started": "Nog niet begonnen",
        "run.running": "Bezig",
        "run.waiting": "Wacht op een besluit van het migratieteam",
        "run.completed": "Klaar: alle applicaties draaien op de nieuwe locatie",
        "run.rolled_back": "Teruggedraaid: de applicaties draaien op de oude locatie",
        "run.attention": "Het migratieteam onderzoekt een probleem",
        "eta.on_schedule": "volgens planning",
        "eta.behind": "ongeveer {minutes} minuten achter op de planning",
        "eta.past_window": "{minutes} minuten na het einde van het venster",
        "eta.finished": "afgerond",
        "eta.unknown": "nog niet bekend",
        "live": "Deze pagina werkt zichzelf bij.",
        "refresh": "Ververs de pagina voor de laatste stand.",
        "language": "English",
        "to": "tot",
        "steps_done": "{done} van {total} stappen klaar",
    },
}

WEEKDAYS = {
    "en": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
    "nl": ["ma", "di", "wo", "do", "vr", "za", "zo"],
}


def pick_language(query: str | None, cookie: str | None, accept_language: str | None) -> str:
    """The language for a request (see the module docstring)."""
    for explicit in (query, cookie):
        if explicit in LANGUAGES:
            return explicit
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, index, primary))
    return sorted(ranked)[0][2] if ranked else DEFAULT


def text(lang: str, key: str, **values: object) -> str:
    template = TEXTS.get(lang, TEXTS[DEFAULT]).get(key) or TEXTS[DEFAULT].get(key, key)
    return template.format(**values) if values else template
