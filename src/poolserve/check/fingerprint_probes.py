"""The fingerprint probe set (pure data): fixed, versioned, multilingual texts of varied length.

Eight topics, eight probes each (64): in English a few words, a sentence and a paragraph; the same
topic in German, French, Spanish and one more script (Chinese, Japanese, Russian, Arabic, Korean,
Hindi, Portuguese, Greek); and a long text of several hundred tokens made from the topic's paragraph and
its translations, so ``max_model_len`` and truncation changes show. Same-topic probes are each other's
natural neighbours, which makes the neighbour agreement (recall@10) meaningful.

Rerankers get one query per topic with eight documents each: four of the topic (two English, two
translated) and four of other topics.

Never edit a released set: a fingerprint names the set it was made with (:data:`PROBE_SET`) and its
SHA-256, and can only be compared with the same texts. A new set gets a new name.
"""

from __future__ import annotations

PROBE_SET = "poolserve-probes-1"

# topic: (few words, sentence, paragraph, German, French, Spanish, one more script)
_TOPICS: tuple[tuple[str, tuple[str, str, str, str, str, str, str]], ...] = (
    ("astronomy", (
        "Saturn's rings",
        "The James Webb Space Telescope observes distant galaxies in infrared light.",
        "A neutron star is the collapsed core of a massive star that exploded as a supernova. It packs more "
        "mass than the Sun into a sphere about twenty kilometres across, spins up to hundreds of times per "
        "second, and some of them sweep beams of radio waves across the Earth like a lighthouse, which "
        "astronomers detect as pulsars.",
        "Der Mond umkreist die Erde in etwa siebenundzwanzig Tagen und zeigt ihr immer dieselbe Seite.",
        "Les comètes laissent derrière elles une traînée de poussière qui devient une pluie d'étoiles filantes.",
        "Las estrellas más grandes terminan su vida como agujeros negros después de una supernova.",
        "银河系是一个棒旋星系，太阳位于它的一条旋臂上。",
    )),
    ("cooking", (
        "fresh basil pesto",
        "Knead the bread dough for ten minutes until it becomes smooth and elastic.",
        "To make a classic risotto, toast the rice in butter, then add hot stock one ladle at a time while "
        "stirring constantly. The starch released from the grains gives the dish its creamy texture. Finish "
        "it off the heat with cold butter and grated parmesan, and let it rest for two minutes before "
        "serving.",
        "Für einen guten Apfelstrudel wird der Teig so dünn ausgezogen, dass man eine Zeitung hindurch lesen kann.",
        "La sauce béchamel se prépare avec du beurre, de la farine et du lait chaud, sans cesser de fouetter.",
        "La paella valenciana se cocina con arroz, azafrán, pollo y judías verdes en una sartén ancha.",
        "味噌汁は出汁に味噌を溶かして作る、日本の家庭料理の基本です。",
    )),
    ("football", (
        "penalty shootout",
        "The striker scored twice in the second half and won the championship for her club.",
        "In association football the offside rule stops attackers from waiting near the opponent's goal. A "
        "player is offside when, as the ball is passed to them, they are nearer to the goal line than both "
        "the ball and the second-last defender. Video assistant referees now review close offside decisions "
        "in most professional leagues.",
        "Die Nationalmannschaft gewann das Finale nach Verlängerung mit zwei zu eins.",
        "Le gardien a arrêté le penalty à la dernière minute et son équipe s'est qualifiée pour la finale.",
        "El entrenador cambió la táctica en el descanso y el equipo remontó el partido.",
        "Команда забила решающий гол на последней минуте матча и стала чемпионом лиги.",
    )),
    ("finance", (
        "quarterly earnings report",
        "The central bank raised interest rates by a quarter point to slow down inflation.",
        "An index fund holds every stock of a market index, such as the S&P 500, in proportion to its weight. "
        "Because it does not try to pick winners it trades rarely and charges low fees, and over long periods "
        "most actively managed funds fail to beat it after costs, which is why many pension savers choose "
        "index funds.",
        "Die Aktienkurse fielen stark, nachdem das Unternehmen seine Gewinnprognose gesenkt hatte.",
        "La banque a accordé un prêt immobilier à taux fixe sur vingt-cinq ans.",
        "La inflación reduce el poder adquisitivo de los ahorros guardados en efectivo.",
        "ارتفعت أسعار الأسهم في البورصة بعد إعلان البنك المركزي خفض أسعار الفائدة.",
    )),
    ("medicine", (
        "seasonal flu vaccine",
        "Regular exercise lowers blood pressure and reduces the risk of heart disease.",
        "Antibiotics kill bacteria or stop them from growing, but they have no effect on viruses such as the "
        "common cold. Taking them when they are not needed, or stopping a course early, helps resistant "
        "bacteria survive and spread, and antimicrobial resistance is now one of the largest threats to "
        "global health.",
        "Bei Verdacht auf einen Schlaganfall zählt jede Minute: sofort den Notruf wählen.",
        "Le médecin a prescrit des antibiotiques pendant sept jours pour soigner l'infection.",
        "Beber suficiente agua y dormir bien ayuda al sistema inmunitario a combatir las infecciones.",
        "독감 예방 주사는 매년 가을에 맞는 것이 좋습니다.",
    )),
    ("programming", (
        "Python list comprehension",
        "The function returns a sorted copy of the list and leaves the original unchanged.",
        "A hash map stores key-value pairs in an array of buckets. The hash of a key picks its bucket, so "
        "lookups, inserts and deletes take constant time on average. When two keys land in the same bucket "
        "the map resolves the collision with a linked list or by probing the next free slot, and it grows "
        "the array once it gets too full.",
        "Der Compiler meldet einen Fehler, weil die Variable vor ihrer Deklaration verwendet wird.",
        "Ce script parcourt tous les fichiers du dossier et remplace les tabulations par des espaces.",
        "El servidor responde con un error 500 cuando la base de datos no está disponible.",
        "यह फ़ंक्शन सूची को क्रमबद्ध करता है और नई सूची लौटाता है।",
    )),
    ("geography", (
        "the Amazon rainforest",
        "Mount Everest, on the border of Nepal and China, is the highest mountain above sea level.",
        "The Nile flows north through eleven countries for more than six thousand kilometres before it "
        "reaches the Mediterranean Sea in Egypt. Its annual floods once brought fertile silt to the farmland "
        "along its banks, and ancient Egyptian civilisation grew up in the narrow green valley it cuts "
        "through the desert.",
        "Der Rhein entspringt in den Schweizer Alpen und mündet in den Niederlanden in die Nordsee.",
        "Le Sahara est le plus grand désert chaud du monde et couvre une grande partie de l'Afrique du Nord.",
        "La cordillera de los Andes recorre toda la costa occidental de América del Sur.",
        "O rio Amazonas atravessa o Brasil e deságua no oceano Atlântico.",
    )),
    ("music", (
        "jazz piano improvisation",
        "The orchestra performed Beethoven's Ninth Symphony with a choir of two hundred singers.",
        "A guitar string vibrates at a fundamental frequency set by its length, tension and mass, together "
        "with overtones at whole-number multiples of it. Pressing the string against a fret shortens the "
        "part that vibrates and raises the pitch, and twelve frets up the string is half as long and sounds "
        "one octave higher.",
        "Die Band spielte ihr neues Album vor ausverkauftem Haus in der Konzerthalle.",
        "Elle apprend le violon depuis l'âge de six ans et joue maintenant dans un quatuor à cordes.",
        "El flamenco combina el cante, el toque de la guitarra y el baile.",
        "Η ορχήστρα έπαιξε μια συμφωνία του Μπετόβεν μπροστά σε γεμάτη αίθουσα.",
    )),
)
KINDS = ("short", "sentence", "paragraph", "de", "fr", "es", "other", "long")
"""The eight probes of each topic, in this order."""


def _long(parts: tuple[str, str, str, str, str, str, str]) -> str:
    """The topic's paragraph, its translations, the paragraph again and its sentence: a few hundred tokens."""
    _, sentence, paragraph, de, fr, es, other = parts
    return " ".join((paragraph, de, fr, es, other, paragraph, sentence, de, fr, es))


def _probes() -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for topic, parts in _TOPICS:
        texts = (*parts, _long(parts))
        out.extend((f"{topic}/{kind}", text) for kind, text in zip(KINDS, texts, strict=True))
    return tuple(out)


EMBED_PROBES: tuple[tuple[str, str], ...] = _probes()
"""``(id, text)`` pairs: ids are ``topic/kind`` (``astronomy/long``)."""

RERANK_QUERIES: tuple[tuple[str, str], ...] = (
    ("astronomy", "What is a neutron star?"),
    ("cooking", "How do I make a creamy risotto?"),
    ("football", "What does the offside rule mean?"),
    ("finance", "Why do pension savers buy index funds?"),
    ("medicine", "Do antibiotics help against viruses?"),
    ("programming", "How does a hash map handle collisions?"),
    ("geography", "Which river flows through Egypt?"),
    ("music", "Why does a shorter guitar string sound higher?"),
)
"""One query per topic, answered by that topic's paragraph."""


def rerank_documents(topic_index: int) -> tuple[tuple[str, str], ...]:
    """The eight ``(id, text)`` documents of query ``topic_index``: four on its topic, four off it, interleaved."""
    n = len(_TOPICS)
    own = _TOPICS[topic_index]
    on = [(f"{own[0]}/{k}", own[1][KINDS.index(k)]) for k in ("paragraph", "sentence", "de", "fr")]
    off = []
    for step, kind in zip((1, 3, 5, 7), ("paragraph", "sentence", "es", "paragraph"), strict=True):
        topic, parts = _TOPICS[(topic_index + step) % n]
        off.append((f"{topic}/{kind}", parts[KINDS.index(kind)]))
    return tuple(doc for pair in zip(off, on, strict=True) for doc in pair)
