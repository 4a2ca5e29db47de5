"""Container ids and Docker-style random names (adjective_surname)."""

import os

# a subset of moby's pkg/namesgenerator lists
ADJECTIVES = (
    "admiring", "adoring", "affectionate", "agitated", "amazing", "angry", "awesome",
    "beautiful", "blissful", "bold", "boring", "brave", "busy", "charming", "clever",
    "cool", "compassionate", "competent", "condescending", "confident", "cranky", "crazy",
    "dazzling", "determined", "distracted", "dreamy", "eager", "ecstatic", "elastic",
    "elated", "elegant", "eloquent", "epic", "exciting", "fervent", "festive", "flamboyant",
    "focused", "friendly", "frosty", "funny", "gallant", "gifted", "goofy", "gracious",
    "great", "happy", "hardcore", "heuristic", "hopeful", "hungry", "infallible", "inspiring",
    "intelligent", "interesting", "jolly", "jovial", "keen", "kind", "laughing", "loving",
    "lucid", "magical", "mystifying", "modest", "musing", "naughty", "nervous", "nice",
    "nifty", "nostalgic", "objective", "optimistic", "peaceful", "pedantic", "pensive",
    "practical", "priceless", "quirky", "quizzical", "recursing", "relaxed", "reverent",
    "romantic", "sad", "serene", "sharp", "silly", "sleepy", "stoic", "strange", "stupefied",
    "suspicious", "sweet", "tender", "thirsty", "trusting", "unruffled", "upbeat", "vibrant",
    "vigilant", "vigorous", "wizardly", "wonderful", "xenodochial", "youthful", "zealous",
    "zen",
)
SURNAMES = (
    "albattani", "allen", "almeida", "agnesi", "archimedes", "ardinghelli", "babbage",
    "banach", "bardeen", "bartik", "bassi", "bell", "benz", "bhabha", "black", "blackwell",
    "bohr", "booth", "borg", "bose", "boyd", "brahmagupta", "brattain", "brown", "carson",
    "cerf", "chandrasekhar", "clarke", "colden", "cori", "cray", "curie", "darwin",
    "davinci", "dijkstra", "dirac", "easley", "einstein", "elion", "engelbart", "euclid",
    "euler", "fermat", "fermi", "feynman", "franklin", "galileo", "gates", "goldberg",
    "goldstine", "goodall", "hamilton", "hawking", "heisenberg", "hermann", "hodgkin",
    "hoover", "hopper", "hugle", "hypatia", "jackson", "jang", "jennings", "johnson",
    "joliot", "jones", "kalam", "keller", "kepler", "khorana", "kilby", "knuth", "lalande",
    "lamarr", "lamport", "leakey", "leavitt", "lehmann", "lewin", "lichterman", "liskov",
    "lovelace", "lumiere", "mahavira", "margulis", "matsumoto", "mayer", "mccarthy",
    "mcclintock", "meitner", "mendel", "merkle", "mirzakhani", "montalcini", "moore",
    "morse", "murdock", "napier", "nash", "neumann", "newton", "nightingale", "nobel",
    "noether", "northcutt", "noyce", "pare", "pascal", "pasteur", "payne", "perlman",
    "pike", "poincare", "ptolemy", "raman", "ramanujan", "ride", "ritchie", "robinson",
    "rosalind", "sammet", "shamir", "shannon", "shaw", "shockley", "sinoussi", "snyder",
    "spence", "stallman", "stonebraker", "swanson", "swartz", "tesla", "thompson",
    "torvalds", "turing", "varahamihira", "visvesvaraya", "volhard", "wescoff", "wiles",
    "williams", "wilson", "wing", "wozniak", "wright", "wu", "yalow", "yonath", "zhukovsky",
)


def new_id() -> str:
    """64 hex characters, never all digits (Docker's rule: a short id that
    parses as a number would be ambiguous in some tools)."""
    while True:
        cid = os.urandom(32).hex()
        if not cid[:12].isdigit():
            return cid


def _choice(seq: tuple[str, ...]) -> str:
    # not `secrets`: its import (hmac, hashlib) costs more than a container
    # start spends here; a name needs no cryptographic strength
    return seq[int.from_bytes(os.urandom(4), "little") % len(seq)]


def random_name(retry: int = 0) -> str:
    """adjective_surname; after a collision, Docker appends a digit."""
    name = f"{_choice(ADJECTIVES)}_{_choice(SURNAMES)}"
    if name == "boring_wozniak":  # Steve Wozniak is not boring (moby's rule)
        return random_name(retry)
    if retry:
        name += str(os.urandom(1)[0] % 10)
    return name


def is_valid_name(name: str) -> bool:
    """Docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]+` (a leading '/' allowed)."""
    name = name.removeprefix("/")
    if len(name) < 2 or not (name[0].isascii() and name[0].isalnum()):
        return False
    return all(c.isascii() and (c.isalnum() or c in "_.-") for c in name[1:])
