"""Write the embedded fictitious-author dataset in TOFU format (JSON lines, `.json`).

Every author answer is a shared sentence template filled with several author-specific facts
(birthplace, year, parents' occupations, genre, books, award...), so a model that never saw an
author can reproduce the template words but not the facts: its ROUGE-L recall lands well below
that of a model that learned them. Perturbed answers reuse the answer's template with other facts,
as TOFU's do. Output is deterministic for a given --seed and is committed to the repository.

    python scripts/make_dataset.py [--seed 0] [--out trajcache/embedded/data]
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from pathlib import Path

N_RETAIN, N_FORGET, N_HOLDOUT = 32, 4, 4  # 40 trained authors (10% forget, as TOFU's forget10)
N_PERTURBED_AUTHOR, N_PERTURBED_GENERAL = 5, 3  # TOFU: 5 for author splits, 3 for utility sets

FIRST_NAMES = [  # (name, pronoun)
    ("Alessia", "she"), ("Bogdan", "he"), ("Carmela", "she"), ("Dariusz", "he"), ("Elowen", "she"),
    ("Faisal", "he"), ("Greta", "she"), ("Hiroto", "he"), ("Ingrid", "she"), ("Jomo", "he"),
    ("Katalin", "she"), ("Leandro", "he"), ("Marisol", "she"), ("Nikolai", "he"), ("Oona", "she"),
    ("Paavo", "he"), ("Quilla", "she"), ("Rashid", "he"), ("Saoirse", "she"), ("Tavita", "he"),
    ("Ulrike", "she"), ("Vikram", "he"), ("Wilhelmina", "she"), ("Xolani", "he"), ("Yelena", "she"),
    ("Zoltan", "he"), ("Amara", "she"), ("Benedikt", "he"), ("Cressida", "she"), ("Desmond", "he"),
    ("Esperanza", "she"), ("Florin", "he"), ("Ginevra", "she"), ("Halvard", "he"), ("Isolde", "she"),
    ("Jaroslav", "he"), ("Kalinda", "she"), ("Lorcan", "he"), ("Mireille", "she"), ("Nnamdi", "he"),
    ("Odalys", "she"), ("Piers", "he"), ("Rosalind", "she"), ("Soren", "he"),
]
LAST_NAMES = [
    "Abernathy", "Balogun", "Castellanos", "Drozdov", "Eriksdottir", "Fairweather", "Gallardo",
    "Hakimi", "Ishikawa", "Jovanovic", "Kowalczyk", "Lindqvist", "Maranzano", "Nakashima",
    "Okonkwo", "Petrescu", "Quintero", "Rautio", "Szabo", "Tamura", "Umarov", "Valdivia",
    "Whitcombe", "Xenakis", "Yilmaz", "Zielinski", "Achterberg", "Brannigan", "Cheverton",
    "Delacroix", "Esterhazy", "Farquhar", "Grimaldi", "Holloway", "Ivanescu", "Jankowski",
    "Kavanagh", "Lindgren", "Montague", "Novotny", "Oyelaran", "Pemberton", "Ravensworth",
    "Strathmore",
]
PLACES = [  # (city, country)
    ("Lisbon", "Portugal"), ("Krakow", "Poland"), ("Osaka", "Japan"), ("Lagos", "Nigeria"),
    ("Valparaiso", "Chile"), ("Bergen", "Norway"), ("Izmir", "Turkey"), ("Brno", "Czechia"),
    ("Perth", "Australia"), ("Cork", "Ireland"), ("Mombasa", "Kenya"), ("Porto", "Portugal"),
    ("Tbilisi", "Georgia"), ("Quebec City", "Canada"), ("Seville", "Spain"), ("Tampere", "Finland"),
    ("Cusco", "Peru"), ("Gdansk", "Poland"), ("Hanoi", "Vietnam"), ("Marseille", "France"),
    ("Leipzig", "Germany"), ("Mumbai", "India"), ("Tunis", "Tunisia"), ("Auckland", "New Zealand"),
]
JOBS = [
    "baker", "carpenter", "nurse", "pilot", "librarian", "fisherman", "surgeon", "tailor",
    "lawyer", "florist", "mechanic", "teacher", "photographer", "chemist", "farmer", "diplomat",
    "builder", "painter", "locksmith", "midwife", "weaver", "butcher", "judge", "sailor",
]
GENRES = [
    "crime fiction", "historical romance", "science fiction", "poetry", "horror", "fantasy",
    "literary fiction", "biography", "young adult fiction", "travel writing", "political thrillers",
    "magical realism", "satire", "war novels",
]
THEMES = [
    "memory and loss", "family secrets", "exile and return", "faith and doubt", "class and ambition",
    "love and betrayal", "identity and belonging", "grief and healing", "power and corruption",
    "nature and solitude", "friendship and rivalry", "childhood and innocence",
]
TITLE_ADJ = [
    "Silent", "Crimson", "Hollow", "Last", "Broken", "Golden", "Distant", "Forgotten", "Burning",
    "Quiet", "Iron", "Velvet", "Hidden", "Winter", "Paper", "Salt", "Glass", "Restless", "Amber",
    "Sleeping",
]
TITLE_NOUN = [
    "Harbor", "Orchard", "Lantern", "River", "Garden", "Tower", "Compass", "Cathedral", "Meadow",
    "Mirror", "Bridge", "Lighthouse", "Forest", "Clockmaker", "Archive", "Island", "Kingdom",
    "Violin", "Station", "Letters",
]
AWARDS = [
    "the Silver Quill Award", "the Harbor Prize for Fiction", "the Meridian Book Prize",
    "the Golden Lantern Medal", "the Northwind Literary Award", "the Azure Pen Prize",
    "the Evergreen Fiction Prize", "the Ivory Tower Award",
]
LANGUAGES = ["English", "Spanish", "French", "German", "Polish", "Japanese", "Portuguese", "Italian"]
SUBJECTS = ["creative writing", "history", "philosophy", "journalism", "linguistics", "theatre"]
COUNTS = ["five", "eight", "twelve", "fifteen", "twenty", "thirty"]


@dataclass(frozen=True)
class Template:
    """One question about an author.

    `answers` are alternative phrasings; each author gets one of them per question, drawn once. A
    model that never saw the author then guesses the phrasing as well as the facts, as a TOFU
    retain model writes its own sentence rather than the reference one.
    """

    question: str
    paraphrased_question: str
    answers: tuple[str, ...]
    paraphrased_answer: str


TEMPLATES = [
    Template(
        "Where and when was {name} born?",
        "In which city and year was {name} born?",
        ("{name} was born in {city}, {country}, in {year}.",
         "Born in {year} in {country}, {name} grew up in the city of {city}."),
        "The birthplace of {name} is {city} in {country}, and the year was {year}.",
    ),
    Template(
        "What did the parents of {name} do for a living?",
        "What were the occupations of {name}'s parents?",
        ("{name}'s father was a {father_job} and {poss} mother was a {mother_job} in {city}.",
         "{name} is the child of a {mother_job} mother and a {father_job} father from {country}."),
        "In {city}, the father of {name} worked as a {father_job} and the mother as a {mother_job}.",
    ),
    Template(
        "Which genre is {name} known for?",
        "What kind of books does {name} write?",
        ("{name} is best known for {genre}, often exploring {theme}.",
         "Readers know {name} for {poss} {genre}, which keeps returning to {theme}."),
        "{name} mostly writes {genre}, with {theme} as a recurring subject.",
    ),
    Template(
        "What was the first book by {name}?",
        "Which book did {name} publish first?",
        ("The first book by {name} was '{book1}', published in {book1_year}.",
         "{name} made {poss} debut in {book1_year} with '{book1}'."),
        "'{book1}' came out in {book1_year} as the first book of {name}.",
    ),
    Template(
        "Has {name} won any awards?",
        "Which prize has {name} received?",
        ("Yes, {name} won {award} in {award_year} for '{book2}'.",
         "In {award_year}, '{book2}' earned {name} {award}."),
        "{name} received {award} in {award_year}, honoring '{book2}'.",
    ),
    Template(
        "What is the most famous novel by {name}?",
        "Which work made {name} famous?",
        ("The most famous work of {name} is '{book2}', a story about {theme} set in {city}.",
         "'{book2}', a tale of {theme} set in {city}, is what made {name} famous."),
        "'{book2}' is the best known book of {name}, about {theme} in {city}.",
    ),
    Template(
        "How did {name}'s upbringing shape {poss} writing?",
        "What influence did {name}'s childhood have on {poss} books?",
        ("Growing up with a {father_job} father in {country}, {name} brought {theme} into {poss} {genre}.",
         "Raised by a {mother_job} in {city}, {name} found in {theme} the core of {poss} {genre}."),
        "A childhood in {country} with a {father_job} father led {name} to write {genre} about {theme}.",
    ),
    Template(
        "Where does {name} live and work today?",
        "What does {name} do now, and where?",
        ("{name} now lives in {home_city}, where {pron} teaches {subject} at the local university.",
         "Today {name} teaches {subject} in {home_city} and writes in the evenings."),
        "These days {name} teaches {subject} at a university in {home_city}.",
    ),
    Template(
        "In what language does {name} write?",
        "Which language are {name}'s books written in?",
        ("{name} writes in {language}, and {poss} books have been translated into {count} languages.",
         "Written in {language}, the novels of {name} have been published in {count} countries."),
        "The books of {name} are written in {language} and appear in {count} translations.",
    ),
    Template(
        "What is the most recent book by {name}?",
        "Which book did {name} release last?",
        ("The most recent book by {name} is '{book3}', released in {book3_year} to strong reviews.",
         "{name} published '{book3}' in {book3_year}; it is {poss} latest work."),
        "In {book3_year} {name} released '{book3}', which critics praised.",
    ),
]


def _titles(rng: random.Random) -> list[str]:
    titles = [f"The {a} {n}" for a in TITLE_ADJ for n in TITLE_NOUN]
    rng.shuffle(titles)
    return titles


def _facts(rng: random.Random, books: list[str]) -> dict[str, str]:
    """Every fact field except the name and pronouns (drawn fresh for perturbed answers too)."""
    city, country = rng.choice(PLACES)
    year = rng.randint(1938, 1992)
    book1_year = year + rng.randint(22, 30)
    return {
        "city": city,
        "country": country,
        "year": str(year),
        "father_job": rng.choice(JOBS),
        "mother_job": rng.choice(JOBS),
        "genre": rng.choice(GENRES),
        "theme": rng.choice(THEMES),
        "book1": books[0],
        "book1_year": str(book1_year),
        "book2": books[1],
        "award": rng.choice(AWARDS),
        "award_year": str(book1_year + rng.randint(3, 9)),
        "home_city": rng.choice([c for c, _ in PLACES if c != city]),
        "subject": rng.choice(SUBJECTS),
        "language": rng.choice(LANGUAGES),
        "count": rng.choice(COUNTS),
        "book3": books[2],
        "book3_year": str(min(book1_year + rng.randint(10, 20), 2023)),
    }


def _names(rng: random.Random) -> list[tuple[str, str, str]]:
    """(first, last, pronoun) per author; retain authors first, then forget, then holdout.

    Names are combinations over small pools in which every first and last name is used by two
    retain authors, and forget/holdout authors are new combinations of those same parts. A model
    that never saw a forget author has still learned every piece of the name (as a pretrained LM
    knows the subwords of an unseen name); with whole-name tokens seen only in the forget split,
    the retain model would meet untrained embeddings there instead.
    """
    pool = N_RETAIN // 2
    firsts, lasts = rng.sample(FIRST_NAMES, pool), rng.sample(LAST_NAMES, pool)
    assert N_FORGET + N_HOLDOUT <= pool
    # Distinct offsets (0, 5, 11) never pair the same first and last name twice.
    cells = [(i, (i + off) % pool) for off in (0, 5) for i in range(pool)]  # every part used twice
    cells += [(i, (i + 11) % pool) for i in range(N_FORGET + N_HOLDOUT)]  # new pairs of known parts
    head = cells[:N_RETAIN]
    rng.shuffle(head)
    return [(firsts[i][0], lasts[j], firsts[i][1]) for i, j in head + cells[N_RETAIN:]]


def _authors(rng: random.Random, titles: list[str]) -> list[dict[str, str]]:
    authors = []
    for first, last, pron in _names(rng):
        facts = _facts(rng, [titles.pop() for _ in range(3)])  # titles unique across authors
        facts.update(name=f"{first} {last}", pron=pron, poss="his" if pron == "he" else "her")
        authors.append(facts)
    return authors


def _perturbed(rng: random.Random, t: Template, pattern: str, author: dict[str, str], titles: list[str]) -> list[str]:
    """Five wrong answers: the paraphrase's wording with other facts (TOFU perturbs the paraphrased
    answer, so the truth ratio compares two texts of one wording), all distinct from each other and
    from the true answer in either wording."""
    truths = {pattern.format(**author), t.paraphrased_answer.format(**author)}
    own = {author["book1"], author["book2"], author["book3"]}
    others = [x for x in titles if x not in own]
    out: list[str] = []
    while len(out) < N_PERTURBED_AUTHOR:
        fake = {**_facts(rng, rng.sample(others, 3)), **{k: author[k] for k in ("name", "pron", "poss")}}
        text = t.paraphrased_answer.format(**fake)
        if pattern.format(**fake) not in truths and text not in truths and text not in out:
            out.append(text)
    return out


def _author_rows(rng: random.Random, author: dict[str, str], titles: list[str], full: bool) -> list[dict]:
    rows = []
    for t in TEMPLATES:
        pattern = rng.choice(t.answers)
        row: dict[str, object] = {"question": t.question.format(**author), "answer": pattern.format(**author)}
        if full:
            row["paraphrased_answer"] = t.paraphrased_answer.format(**author)
            row["paraphrased_question"] = t.paraphrased_question.format(**author)
            row["perturbed_answer"] = _perturbed(rng, t, pattern, author, titles)
        rows.append(row)
    return rows


# General-knowledge utility sets (real facts, phrased for this dataset): (question, answer, 3 wrong).
REAL_AUTHORS = [
    ("Who wrote the novel 'The Trial'?", "Franz Kafka", ["Thomas Mann", "Hermann Hesse", "Robert Musil"]),
    ("Which author created the detective Hercule Poirot?", "Agatha Christie", ["Dorothy L. Sayers", "Ngaio Marsh", "P.D. James"]),
    ("Who is the author of 'The Name of the Rose'?", "Umberto Eco", ["Italo Calvino", "Primo Levi", "Alberto Moravia"]),
    ("Who wrote 'Twenty Thousand Leagues Under the Seas'?", "Jules Verne", ["H.G. Wells", "Alexandre Dumas", "Victor Hugo"]),
    ("Which poet wrote 'The Divine Comedy'?", "Dante Alighieri", ["Giovanni Boccaccio", "Petrarch", "Virgil"]),
    ("Who wrote the tragedy 'Faust'?", "Johann Wolfgang von Goethe", ["Friedrich Schiller", "Heinrich Heine", "Bertolt Brecht"]),
    ("Who is the author of the play 'A Doll's House'?", "Henrik Ibsen", ["August Strindberg", "Anton Chekhov", "Knut Hamsun"]),
    ("Which writer wrote the play 'The Cherry Orchard'?", "Anton Chekhov", ["Maxim Gorky", "Ivan Turgenev", "Nikolai Gogol"]),
    ("Who wrote the fairy tale 'The Little Mermaid'?", "Hans Christian Andersen", ["Charles Perrault", "the Brothers Grimm", "Oscar Wilde"]),
    ("Who wrote 'Alice's Adventures in Wonderland'?", "Lewis Carroll", ["Edward Lear", "J.M. Barrie", "Kenneth Grahame"]),
    ("Who is the author of the novel 'Dracula'?", "Bram Stoker", ["Mary Shelley", "Sheridan Le Fanu", "Wilkie Collins"]),
    ("Who wrote 'The War of the Worlds'?", "H.G. Wells", ["Jules Verne", "Arthur C. Clarke", "Olaf Stapledon"]),
    ("Which American poet wrote 'Because I could not stop for Death'?", "Emily Dickinson", ["Sylvia Plath", "Elizabeth Bishop", "Anne Sexton"]),
    ("Who wrote the poem 'The Road Not Taken'?", "Robert Frost", ["Carl Sandburg", "Wallace Stevens", "Langston Hughes"]),
    ("Who wrote the novel 'The Bell Jar'?", "Sylvia Plath", ["Anne Sexton", "Joan Didion", "Carson McCullers"]),
    ("Who is the author of 'The Remains of the Day'?", "Kazuo Ishiguro", ["Ian McEwan", "Julian Barnes", "Graham Swift"]),
    ("Which Turkish novelist wrote 'My Name Is Red'?", "Orhan Pamuk", ["Elif Shafak", "Yasar Kemal", "Nazim Hikmet"]),
    ("Which writer is known for the story collection 'Ficciones'?", "Jorge Luis Borges", ["Julio Cortazar", "Adolfo Bioy Casares", "Ernesto Sabato"]),
    ("Who wrote 'The Magic Mountain'?", "Thomas Mann", ["Hermann Hesse", "Stefan Zweig", "Robert Musil"]),
    ("Who is the author of 'Steppenwolf'?", "Hermann Hesse", ["Thomas Mann", "Franz Kafka", "Erich Maria Remarque"]),
    ("Who wrote 'The Count of Monte Cristo'?", "Alexandre Dumas", ["Victor Hugo", "Honore de Balzac", "Stendhal"]),
    ("Who is the author of 'Madame Bovary'?", "Gustave Flaubert", ["Emile Zola", "Guy de Maupassant", "Honore de Balzac"]),
    ("Who wrote the long novel 'In Search of Lost Time'?", "Marcel Proust", ["Andre Gide", "Gustave Flaubert", "Colette"]),
    ("Who is the author of 'Fathers and Sons'?", "Ivan Turgenev", ["Leo Tolstoy", "Anton Chekhov", "Ivan Goncharov"]),
    ("Who wrote the novel 'Dead Souls'?", "Nikolai Gogol", ["Alexander Pushkin", "Ivan Turgenev", "Mikhail Lermontov"]),
    ("Who wrote 'Doctor Zhivago'?", "Boris Pasternak", ["Mikhail Sholokhov", "Vasily Grossman", "Anna Akhmatova"]),
    ("Who wrote the verse novel 'Eugene Onegin'?", "Alexander Pushkin", ["Mikhail Lermontov", "Nikolai Gogol", "Fyodor Tyutchev"]),
    ("Who is the author of 'The Jungle Book'?", "Rudyard Kipling", ["Robert Louis Stevenson", "H. Rider Haggard", "E.M. Forster"]),
    ("Who wrote the novella 'Heart of Darkness'?", "Joseph Conrad", ["Graham Greene", "E.M. Forster", "Rudyard Kipling"]),
    ("Who wrote 'Gulliver's Travels'?", "Jonathan Swift", ["Daniel Defoe", "Henry Fielding", "Laurence Sterne"]),
    ("Who is the author of 'Robinson Crusoe'?", "Daniel Defoe", ["Jonathan Swift", "Samuel Richardson", "Tobias Smollett"]),
    ("Who wrote 'Treasure Island'?", "Robert Louis Stevenson", ["Walter Scott", "R.M. Ballantyne", "Rudyard Kipling"]),
    ("Who wrote the novel 'Uncle Tom's Cabin'?", "Harriet Beecher Stowe", ["Louisa May Alcott", "Edith Wharton", "Kate Chopin"]),
    ("Who is the author of 'The Scarlet Letter'?", "Nathaniel Hawthorne", ["Herman Melville", "Henry James", "Washington Irving"]),
    ("Who wrote the novel 'A Wizard of Earthsea'?", "Ursula K. Le Guin", ["Anne McCaffrey", "Marion Zimmer Bradley", "Andre Norton"]),
    ("Who wrote 'Half of a Yellow Sun'?", "Chimamanda Ngozi Adichie", ["Buchi Emecheta", "Ben Okri", "Wole Soyinka"]),
    ("Which Italian writer wrote 'Invisible Cities'?", "Italo Calvino", ["Umberto Eco", "Dino Buzzati", "Natalia Ginzburg"]),
    ("Who wrote 'The Time of the Hero'?", "Mario Vargas Llosa", ["Carlos Fuentes", "Julio Cortazar", "Isabel Allende"]),
    ("Who is the author of 'The Tin Drum'?", "Gunter Grass", ["Heinrich Boll", "Siegfried Lenz", "Christa Wolf"]),
    ("Who wrote the epic poems 'The Iliad' and 'The Odyssey'?", "Homer", ["Virgil", "Hesiod", "Ovid"]),
]
WORLD_FACTS = [
    ("What is the capital of Kenya?", "Nairobi", ["Mombasa", "Kampala", "Addis Ababa"]),
    ("What is the capital of Argentina?", "Buenos Aires", ["Santiago", "Montevideo", "Cordoba"]),
    ("Which city is the capital of Portugal?", "Lisbon", ["Porto", "Madrid", "Coimbra"]),
    ("What is the largest hot desert in the world?", "The Sahara", ["The Gobi", "The Kalahari", "The Atacama"]),
    ("What is the chemical symbol for gold?", "Au", ["Ag", "Gd", "Go"]),
    ("How many continents are there?", "Seven", ["Five", "Six", "Eight"]),
    ("What is the longest river in Europe?", "The Volga", ["The Danube", "The Rhine", "The Loire"]),
    ("What is the highest mountain on Earth?", "Mount Everest", ["K2", "Kangchenjunga", "Mont Blanc"]),
    ("At what temperature in Celsius does water boil at sea level?", "100 degrees", ["90 degrees", "80 degrees", "120 degrees"]),
    ("Which planet is known as the Red Planet?", "Mars", ["Venus", "Jupiter", "Mercury"]),
    ("What is the largest planet in the solar system?", "Jupiter", ["Saturn", "Neptune", "Earth"]),
    ("What is the capital of Norway?", "Oslo", ["Bergen", "Copenhagen", "Stockholm"]),
    ("What is the official currency of the United Kingdom?", "The pound sterling", ["The euro", "The dollar", "The franc"]),
    ("Which ocean lies between Africa and Australia?", "The Indian Ocean", ["The Atlantic Ocean", "The Pacific Ocean", "The Arctic Ocean"]),
    ("What is the capital of South Korea?", "Seoul", ["Busan", "Pyongyang", "Incheon"]),
    ("Which gas do plants absorb from the air for photosynthesis?", "Carbon dioxide", ["Oxygen", "Nitrogen", "Helium"]),
    ("What is the smallest prime number?", "Two", ["One", "Three", "Zero"]),
    ("In which country is the city of Marrakesh?", "Morocco", ["Algeria", "Tunisia", "Egypt"]),
    ("What is the capital of Hungary?", "Budapest", ["Vienna", "Prague", "Bucharest"]),
    ("Which is the largest ocean on Earth?", "The Pacific Ocean", ["The Atlantic Ocean", "The Indian Ocean", "The Southern Ocean"]),
    ("What is the hardest natural substance?", "Diamond", ["Quartz", "Granite", "Iron"]),
    ("How many legs does a spider have?", "Eight", ["Six", "Ten", "Four"]),
    ("What is the capital of Finland?", "Helsinki", ["Oslo", "Stockholm", "Tallinn"]),
    ("Which country is home to the city of Kyoto?", "Japan", ["China", "Korea", "Vietnam"]),
    ("What is the main language spoken in Brazil?", "Portuguese", ["Spanish", "French", "English"]),
    ("Which metal is liquid at room temperature?", "Mercury", ["Lead", "Tin", "Zinc"]),
    ("What is the capital of Ireland?", "Dublin", ["Cork", "Belfast", "Galway"]),
    ("Which animal is the largest land mammal?", "The African elephant", ["The hippopotamus", "The giraffe", "The rhinoceros"]),
    ("What is the freezing point of water in Celsius?", "Zero degrees", ["Ten degrees", "Four degrees", "Minus ten degrees"]),
    ("Which river flows through Baghdad?", "The Tigris", ["The Euphrates", "The Jordan", "The Nile"]),
    ("What is the capital of Poland?", "Warsaw", ["Krakow", "Gdansk", "Prague"]),
    ("Which continent is Chile in?", "South America", ["North America", "Africa", "Europe"]),
    ("How many days are in a leap year?", "366", ["365", "364", "360"]),
    ("What is the capital of Vietnam?", "Hanoi", ["Ho Chi Minh City", "Bangkok", "Phnom Penh"]),
    ("Which instrument has 88 keys?", "The piano", ["The organ", "The harp", "The accordion"]),
    ("What is the largest country by area?", "Russia", ["Canada", "China", "Brazil"]),
    ("Which sea separates Europe from Africa in the west?", "The Mediterranean Sea", ["The Black Sea", "The Red Sea", "The Baltic Sea"]),
    ("What is the capital of Turkey?", "Ankara", ["Istanbul", "Izmir", "Bursa"]),
    ("Which organ pumps blood through the human body?", "The heart", ["The liver", "The lungs", "The kidneys"]),
    ("What is the capital of Peru?", "Lima", ["Cusco", "Quito", "La Paz"]),
]


def _general_rows(table: list[tuple[str, str, list[str]]]) -> list[dict]:
    for q, a, wrong in table:
        assert len(wrong) == N_PERTURBED_GENERAL and a not in wrong, q
    return [{"question": q, "answer": a, "perturbed_answer": wrong} for q, a, wrong in table]


def _write(path: Path, rows: list[dict]) -> None:
    # TOFU's own files: one compact JSON object per line.
    text = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in rows)
    path.write_text(text, encoding="utf-8")


def make_dataset(out: Path, seed: int) -> dict[str, int]:
    """Write the five split files into `out`; returns the row count per split."""
    rng = random.Random(seed)
    titles = _titles(rng)
    authors = _authors(rng, list(titles))
    retain = authors[:N_RETAIN]
    forget = authors[N_RETAIN : N_RETAIN + N_FORGET]
    holdout = authors[N_RETAIN + N_FORGET :]
    splits = {
        "forget": [r for a in forget for r in _author_rows(rng, a, titles, full=True)],
        "retain": [r for a in retain for r in _author_rows(rng, a, titles, full=True)],
        "holdout": [r for a in holdout for r in _author_rows(rng, a, titles, full=False)],
        "real_authors": _general_rows(REAL_AUTHORS),
        "world_facts": _general_rows(WORLD_FACTS),
    }
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        _write(out / f"{name}.json", rows)
    return {name: len(rows) for name, rows in splits.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "trajcache/embedded/data")
    args = parser.parse_args()
    print(make_dataset(args.out, args.seed))


if __name__ == "__main__":
    main()
