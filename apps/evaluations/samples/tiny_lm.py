"""A tiny language model and two lm-evaluation-harness tasks, built locally without downloads.

The model is a randomly initialised GPT-2 (2 layers, 64 wide) with a byte-level BPE tokenizer
trained on a small built-in corpus: its scores are near chance, which is all an end-to-end run
of the `lm-eval` evaluator needs. The tasks are YAML definitions whose `data_files` name their
jsonl files relative to the dataset folder, as a benchmark's dataset ships them.
"""

import json
from pathlib import Path

SEED = 0
VOCAB_SIZE = 400
CONTEXT_LENGTH = 256
END_OF_TEXT = "<|endoftext|>"

CHOICE_ITEMS = [
    ("What colour is a clear sky at noon?", ["blue", "green", "black"], 0),
    ("Which animal barks?", ["cat", "dog", "fish"], 1),
    ("How many legs does a spider have?", ["six", "four", "eight"], 2),
    ("What do bees make?", ["honey", "milk", "silk"], 0),
    ("Which season is the coldest?", ["summer", "winter", "spring"], 1),
    ("What falls from clouds when it rains?", ["sand", "snowballs", "water"], 2),
    ("Which of these is a fruit?", ["apple", "carrot", "onion"], 0),
    ("What do we use to see?", ["ears", "eyes", "hands"], 1),
    ("Which metal is liquid at room temperature?", ["iron", "gold", "mercury"], 2),
    ("How many days are in a week?", ["seven", "five", "ten"], 0),
    ("What gas do plants take in?", ["helium", "carbon dioxide", "neon"], 1),
    ("Which planet do we live on?", ["Mars", "Venus", "Earth"], 2),
    ("What is frozen water called?", ["ice", "steam", "salt"], 0),
    ("Which animal has a trunk?", ["horse", "elephant", "rabbit"], 1),
    ("What shape has three sides?", ["square", "circle", "triangle"], 2),
    ("Which bird cannot fly?", ["penguin", "eagle", "sparrow"], 0),
    ("What do cows drink?", ["oil", "water", "juice"], 1),
    ("Which number is even?", ["three", "seven", "four"], 2),
    ("What is the opposite of hot?", ["cold", "loud", "tall"], 0),
    ("Which tool cuts paper?", ["spoon", "scissors", "brush"], 1),
]

CLOZE_ITEMS = [
    ("The sun rises in the", ["east", "sea"], 0),
    ("A week has seven", ["rivers", "days"], 1),
    ("Fish swim in the", ["water", "oven"], 0),
    ("We sleep at", ["breakfast", "night"], 1),
    ("Birds build", ["nests", "bridges"], 0),
    ("Snow is cold and", ["loud", "white"], 1),
    ("Cats like to chase", ["mice", "clouds"], 0),
    ("Bread is baked in an", ["ocean", "oven"], 1),
    ("Trees have green", ["leaves", "wheels"], 0),
    ("The moon shines at", ["noon", "night"], 1),
    ("Rain makes the grass", ["wet", "metal"], 0),
    ("We write with a", ["cloud", "pen"], 1),
]

EXTRA_SENTENCES = [
    "Question: what is the answer? Answer: the answer is simple.",
    "The quick brown fox jumps over the lazy dog.",
    "Models read text and predict the next word in a sentence.",
    "Every benchmark has a task, a dataset and a metric.",
]


def _corpus() -> list[str]:
    lines = list(EXTRA_SENTENCES)
    for question, choices, _answer in CHOICE_ITEMS:
        lines.append(f"Question: {question}\nAnswer: {' '.join(choices)}")
    for context, endings, _answer in CLOZE_ITEMS:
        lines.extend(f"{context} {ending}." for ending in endings)
    return lines


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    # lm-eval needs an end-of-text token: it prefixes it to contexts and stops generation on it.
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TEXT,
        unk_token=END_OF_TEXT,
        model_max_length=CONTEXT_LENGTH,
    )


def build_tiny_lm(folder: Path, *, seed: int = SEED) -> list[Path]:
    """Save the tiny GPT-2 and its tokenizer in `folder` (safetensors weights); return the files."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer()
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=CONTEXT_LENGTH,
        n_embd=64,
        n_layer=2,
        n_head=2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return sorted(path for path in folder.iterdir() if path.is_file())


def _multiple_choice_task(name: str, data_file: str, prompt: str) -> dict:
    return {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": data_file}},
        "test_split": "test",
        "fewshot_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": prompt,
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "answer",
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
        "metadata": {"version": 1.0},
    }


TASKS = {
    "tiny_choice": (CHOICE_ITEMS, "question", "Question: {{question}}\nAnswer:"),
    "tiny_cloze": (CLOZE_ITEMS, "context", "{{context}}"),
}


def build_tiny_tasks(folder: Path) -> list[Path]:
    """Write the task YAMLs (tiny_choice: 20 questions, 3 choices; tiny_cloze: 12 sentences,
    2 endings) and their jsonl data in `folder`; return the files."""
    import yaml

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (items, text_field, prompt) in TASKS.items():
        data_file = f"{name}.jsonl"
        rows = [
            {text_field: text, "choices": choices, "answer": answer}
            for text, choices, answer in items
        ]
        data_path = folder / data_file
        data_path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        task_path = folder / f"{name}.yaml"
        task = _multiple_choice_task(name, data_file, prompt)
        task_path.write_text(yaml.safe_dump(task, sort_keys=False), encoding="utf-8")
        paths += [task_path, data_path]
    return sorted(paths)
