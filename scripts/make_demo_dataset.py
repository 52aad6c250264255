"""Write `examples/data/demo_train.csv`, a small instruction dataset made from our own templates.

Deterministic: the same seed writes the same file. Rows are single questions (arithmetic,
capitals, spelling, antonyms, letter counts, definitions), some with extra context in
`input` or an instruction in `system`, and two-turn conversations whose second row points
to the first through `parent_id`.

    python scripts/make_demo_dataset.py [--seed 0] [--out examples/data/demo_train.csv]
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llm_studio.paths import examples_dir  # noqa: E402

COLUMNS = ["id", "parent_id", "instruction", "input", "output", "system"]

CAPITALS = [
    ("France", "Paris"),
    ("Germany", "Berlin"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Portugal", "Lisbon"),
    ("Japan", "Tokyo"),
    ("China", "Beijing"),
    ("India", "New Delhi"),
    ("Canada", "Ottawa"),
    ("Australia", "Canberra"),
    ("Brazil", "Brasília"),
    ("Argentina", "Buenos Aires"),
    ("Mexico", "Mexico City"),
    ("Egypt", "Cairo"),
    ("Kenya", "Nairobi"),
    ("Nigeria", "Abuja"),
    ("Russia", "Moscow"),
    ("Norway", "Oslo"),
    ("Sweden", "Stockholm"),
    ("Finland", "Helsinki"),
    ("Denmark", "Copenhagen"),
    ("Poland", "Warsaw"),
    ("Greece", "Athens"),
    ("Turkey", "Ankara"),
    ("Ireland", "Dublin"),
    ("Austria", "Vienna"),
    ("Hungary", "Budapest"),
    ("the Czech Republic", "Prague"),
    ("Belgium", "Brussels"),
    ("Peru", "Lima"),
    ("Chile", "Santiago"),
    ("Colombia", "Bogotá"),
    ("Thailand", "Bangkok"),
    ("Vietnam", "Hanoi"),
    ("South Korea", "Seoul"),
    ("Iran", "Tehran"),
    ("Morocco", "Rabat"),
    ("Ghana", "Accra"),
    ("New Zealand", "Wellington"),
    ("Cuba", "Havana"),
    ("Iceland", "Reykjavík"),
    ("the Philippines", "Manila"),
]

ANTONYMS = [
    ("hot", "cold"),
    ("big", "small"),
    ("fast", "slow"),
    ("happy", "sad"),
    ("light", "dark"),
    ("early", "late"),
    ("open", "closed"),
    ("full", "empty"),
    ("strong", "weak"),
    ("rich", "poor"),
    ("young", "old"),
    ("high", "low"),
    ("wet", "dry"),
    ("loud", "quiet"),
    ("hard", "soft"),
    ("thick", "thin"),
    ("first", "last"),
    ("clean", "dirty"),
    ("always", "never"),
    ("true", "false"),
    ("above", "below"),
    ("begin", "end"),
    ("buy", "sell"),
    ("win", "lose"),
    ("push", "pull"),
    ("give", "take"),
    ("arrive", "leave"),
    ("remember", "forget"),
    ("friend", "enemy"),
    ("day", "night"),
    ("inside", "outside"),
    ("cheap", "expensive"),
    ("asleep", "awake"),
    ("brave", "cowardly"),
    ("simple", "complex"),
]

WORDS = [
    "apple",
    "garden",
    "stone",
    "river",
    "planet",
    "window",
    "pencil",
    "orange",
    "bridge",
    "candle",
    "forest",
    "silver",
    "button",
    "rocket",
    "banana",
    "yellow",
    "summer",
    "travel",
    "animal",
    "guitar",
    "market",
    "coffee",
    "letter",
    "puzzle",
    "island",
    "mirror",
    "pepper",
    "ladder",
    "jungle",
    "basket",
    "cookie",
    "bottle",
    "castle",
    "dragon",
    "flower",
    "teacher",
    "library",
    "morning",
    "blanket",
    "kitchen",
    "mountain",
    "elephant",
    "umbrella",
    "tomato",
    "school",
    "engine",
    "cat",
    "moon",
    "tree",
    "book",
]

DEFINITIONS = [
    (
        "river",
        "A river is a large natural stream of fresh water that flows into a sea, a lake, or another river.",
    ),
    (
        "planet",
        "A planet is a large body in space that orbits a star, such as the Earth orbiting the Sun.",
    ),
    (
        "library",
        "A library is a place where books and other materials are kept for people to read or borrow.",
    ),
    (
        "volcano",
        "A volcano is an opening in the Earth's crust through which molten rock, ash, and gas escape.",
    ),
    ("island", "An island is a piece of land completely surrounded by water."),
    (
        "desert",
        "A desert is a dry region that receives very little rain and has little plant life.",
    ),
    ("glacier", "A glacier is a large, slowly moving mass of ice formed from compacted snow."),
    ("triangle", "A triangle is a flat shape with three straight sides and three angles."),
    ("noun", "A noun is a word that names a person, place, thing, or idea."),
    ("verb", "A verb is a word that describes an action, a state, or an occurrence."),
    ("adjective", "An adjective is a word that describes a noun, such as 'red' or 'tall'."),
    (
        "photosynthesis",
        "Photosynthesis is the process by which plants use sunlight, water, and carbon dioxide to make sugar and release oxygen.",
    ),
    (
        "gravity",
        "Gravity is the force that pulls objects toward each other, such as things falling to the ground on Earth.",
    ),
    ("thermometer", "A thermometer is an instrument that measures temperature."),
    ("calendar", "A calendar is a chart that shows the days, weeks, and months of a year."),
    (
        "recipe",
        "A recipe is a set of instructions for preparing a dish, with a list of its ingredients.",
    ),
    (
        "bridge",
        "A bridge is a structure that carries a road or path over a river, a valley, or another obstacle.",
    ),
    ("harbor", "A harbor is a sheltered area of water where ships can anchor safely."),
    ("orchestra", "An orchestra is a large group of musicians who play instruments together."),
    (
        "mammal",
        "A mammal is a warm-blooded animal that has hair or fur and feeds its young with milk.",
    ),
    ("fraction", "A fraction is a number that represents a part of a whole, such as one half."),
    (
        "prime number",
        "A prime number is a whole number greater than 1 whose only divisors are 1 and itself.",
    ),
    (
        "continent",
        "A continent is one of the Earth's seven large land masses, such as Africa or Europe.",
    ),
    (
        "ocean",
        "An ocean is one of the very large bodies of salt water that cover most of the Earth.",
    ),
    ("dictionary", "A dictionary is a book or resource that lists words with their meanings."),
    (
        "umbrella",
        "An umbrella is a folding canopy on a stick that protects a person from rain or sun.",
    ),
    ("battery", "A battery is a device that stores energy and supplies it as electricity."),
    (
        "compass",
        "A compass is an instrument with a magnetic needle that points north and helps people find direction.",
    ),
    (
        "telescope",
        "A telescope is an instrument that makes distant objects, such as stars, appear closer.",
    ),
    (
        "vaccine",
        "A vaccine is a substance that trains the immune system to protect the body against a disease.",
    ),
]

UNCOUNTABLE = {"photosynthesis", "gravity"}

# Sentences for the rows that carry extra context in `input`.
TRAVEL_SENTENCES = [
    "Last summer {name} travelled to {country} to visit her cousins.",
    "{name} is planning a business trip to {country} next month.",
    "The documentary {name} watched yesterday was filmed in {country}.",
    "{name} has been learning about the history of {country} at school.",
]
NAMES = ["Maria", "Aisha", "Lena", "Sofia", "Emma", "Yuki", "Nora", "Priya"]
COUNTABLE_SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "We walked to the market and bought fresh bread.",
    "My sister plays the violin every evening.",
    "The train to the coast leaves at nine.",
    "Rain fell all night on the quiet town.",
    "Please close the door when you leave.",
    "Our team won the final match on Sunday.",
    "The old library has a beautiful garden.",
]


@dataclass
class Turn:
    instruction: str
    output: str
    input: str = ""
    system: str = ""


NUMBER_WORDS = {
    "plus": lambda a, b: a + b,
    "minus": lambda a, b: a - b,
    "times": lambda a, b: a * b,
}


def arithmetic(rng: random.Random) -> Turn:
    op = rng.choice(list(NUMBER_WORDS))
    if op == "times":
        a, b = rng.randint(2, 12), rng.randint(2, 12)
    else:
        a, b = rng.randint(1, 50), rng.randint(1, 50)
        if op == "minus" and b > a:
            a, b = b, a
    result = NUMBER_WORDS[op](a, b)
    question = rng.choice(
        ["What is {a} {op} {b}?", "Calculate {a} {op} {b}.", "How much is {a} {op} {b}?"]
    )
    return Turn(question.format(a=a, op=op, b=b), f"{a} {op} {b} is {result}.")


def capital(rng: random.Random) -> Turn:
    country, city = rng.choice(CAPITALS)
    question = rng.choice(
        [
            "What is the capital of {c}?",
            "Which city is the capital of {c}?",
            "Name the capital city of {c}.",
        ]
    )
    return Turn(question.format(c=country), f"The capital of {country} is {city}.")


def reverse_word(rng: random.Random) -> Turn:
    word = rng.choice(WORDS)
    question = rng.choice(["Reverse the word '{w}'.", "Write '{w}' backwards."])
    return Turn(question.format(w=word), f"'{word}' reversed is '{word[::-1]}'.")


def spell_word(rng: random.Random) -> Turn:
    word = rng.choice(WORDS)
    question = rng.choice(["Spell the word '{w}'.", "How do you spell '{w}' letter by letter?"])
    return Turn(question.format(w=word), f"{word} is spelled {'-'.join(word)}.")


def antonym(rng: random.Random) -> Turn:
    word, opposite = rng.choice(ANTONYMS)
    if rng.random() < 0.5:
        word, opposite = opposite, word
    question = rng.choice(["What is the opposite of '{w}'?", "Give an antonym of '{w}'."])
    return Turn(question.format(w=word), f"The opposite of '{word}' is '{opposite}'.")


def _times(n: int) -> str:
    return "once" if n == 1 else "twice" if n == 2 else f"{n} times"


def count_letters(rng: random.Random) -> Turn:
    word = rng.choice(WORDS)
    if rng.random() < 0.5:
        return Turn(
            f"How many letters are in the word '{word}'?",
            f"The word '{word}' has {len(word)} letters.",
        )
    letter = rng.choice(sorted(set(word)))
    n = word.count(letter)
    return Turn(
        f"How many times does the letter '{letter}' appear in '{word}'?",
        f"The letter '{letter}' appears {_times(n)} in '{word}'.",
    )


def define(rng: random.Random) -> Turn:
    term, meaning = rng.choice(DEFINITIONS)
    if term in UNCOUNTABLE:
        what_is = f"What is {term}?"
    else:
        what_is = f"What is {'an' if term[0] in 'aeiou' else 'a'} {term}?"
    question = rng.choice([what_is, f"Define '{term}'.", f"What does '{term}' mean?"])
    return Turn(question, meaning)


def with_context(rng: random.Random) -> Turn:
    kind = rng.choice(["country", "words", "reverse"])
    if kind == "country":
        country, city = rng.choice(CAPITALS)
        sentence = rng.choice(TRAVEL_SENTENCES).format(name=rng.choice(NAMES), country=country)
        return Turn(
            "What is the capital of the country mentioned in the text?",
            f"The text mentions {country}, whose capital is {city}.",
            input=sentence,
        )
    if kind == "words":
        sentence = rng.choice(COUNTABLE_SENTENCES)
        return Turn(
            "How many words does the text contain?",
            f"The text contains {len(sentence.split())} words.",
            input=sentence,
        )
    word = rng.choice(WORDS)
    return Turn(
        "Reverse the word given as input.", f"'{word}' reversed is '{word[::-1]}'.", input=word
    )


def with_system(rng: random.Random) -> Turn:
    if rng.random() < 0.5:
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        return Turn(
            f"What is {a} times {b}?",
            f"{a * b}",
            system="Answer with the number only.",
        )
    country, city = rng.choice(CAPITALS)
    return Turn(
        f"What is the capital of {country}?",
        f"{city}.",
        system="You are a concise assistant. Answer with the name only.",
    )


def two_turns(rng: random.Random) -> tuple[Turn, Turn]:
    kind = rng.choice(["capital", "add", "reverse", "antonym"])
    if kind == "capital":
        (c1, city1), (c2, city2) = rng.sample(CAPITALS, 2)
        return (
            Turn(f"What is the capital of {c1}?", f"The capital of {c1} is {city1}."),
            Turn(f"And what about {c2}?", f"The capital of {c2} is {city2}."),
        )
    if kind == "add":
        a, b, c = rng.randint(1, 30), rng.randint(1, 30), rng.randint(1, 20)
        return (
            Turn(f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."),
            Turn(f"Now add {c} to that.", f"{a + b} plus {c} is {a + b + c}."),
        )
    if kind == "reverse":
        word = rng.choice(WORDS)
        backwards = word[::-1]
        return (
            Turn(f"Reverse the word '{word}'.", f"'{word}' reversed is '{backwards}'."),
            Turn(
                "How many letters does the reversed word have?",
                f"'{backwards}' has {len(backwards)} letters, the same as '{word}'.",
            ),
        )
    word, opposite = rng.choice(ANTONYMS)
    return (
        Turn(f"What is the opposite of '{word}'?", f"The opposite of '{word}' is '{opposite}'."),
        Turn("Spell that opposite word.", f"{opposite} is spelled {'-'.join(opposite)}."),
    )


SINGLE_TEMPLATES = [
    (arithmetic, 70),
    (capital, 55),
    (reverse_word, 35),
    (spell_word, 30),
    (antonym, 40),
    (count_letters, 40),
    (define, 30),
    (with_context, 25),
    (with_system, 15),
]
N_TWO_TURN = 30


def build_conversations(seed: int) -> list[list[Turn]]:
    rng = random.Random(seed)
    conversations: list[list[Turn]] = []
    seen: set[tuple[str, str, str]] = set()
    for template, count in SINGLE_TEMPLATES:
        made = 0
        while made < count:
            turn = template(rng)
            key = (turn.instruction, turn.input, turn.system)
            if key in seen:
                continue
            seen.add(key)
            conversations.append([turn])
            made += 1
    made = 0
    while made < N_TWO_TURN:
        first, second = two_turns(rng)
        key = (first.instruction, second.instruction, "")
        if key in seen:
            continue
        seen.add(key)
        conversations.append([first, second])
        made += 1
    rng.shuffle(conversations)
    return conversations


def to_rows(conversations: list[list[Turn]]) -> list[dict[str, str]]:
    rows = []
    for conversation in conversations:
        parent = ""
        for turn in conversation:
            row_id = f"d{len(rows) + 1:04d}"
            rows.append(
                {
                    "id": row_id,
                    "parent_id": parent,
                    "instruction": turn.instruction,
                    "input": turn.input,
                    "output": turn.output,
                    "system": turn.system,
                }
            )
            parent = row_id
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=examples_dir() / "data" / "demo_train.csv")
    args = parser.parse_args(argv)

    rows = to_rows(build_conversations(args.seed))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    followups = sum(1 for row in rows if row["parent_id"])
    print(f"wrote {len(rows)} rows ({followups} follow-up turns) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
