"""A small built-in sentence set for the MiniLM example and its tests.

Sentences ``2*i`` and ``2*i + 1`` for ``i < len(PARAPHRASE_PAIRS)`` are
paraphrases of each other (see ``PARAPHRASE_PAIRS``); the remaining sentences
are unrelated distractors on other topics. A good encoder puts each paraphrase
partner as the other's nearest neighbour (cosine) within the whole set.
"""

SENTENCES = (
    # paraphrase pairs
    "A man is playing a guitar on stage.",
    "A musician performs with his guitar in front of an audience.",
    "The cat is sleeping on the sofa.",
    "A kitten naps on the couch.",
    "How do I reset my email password?",
    "What are the steps to change the password of my mail account?",
    "The stock market fell sharply today.",
    "Share prices dropped steeply this afternoon.",
    "Heavy rain is expected in the city tomorrow.",
    "The forecast says it will pour in town tomorrow.",
    "She is cooking pasta for dinner.",
    "A woman prepares spaghetti for her evening meal.",
    # distractors
    "Quantum computers use qubits instead of classical bits.",
    "The football team won the championship last night.",
    "Photosynthesis converts sunlight into chemical energy.",
    "The library opens at nine in the morning.",
)

#: index pairs ``(i, j)`` of sentences in ``SENTENCES`` that are paraphrases
PARAPHRASE_PAIRS = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11))
