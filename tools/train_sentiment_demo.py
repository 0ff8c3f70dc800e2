"""A tiny BERT sentiment classifier trained here on a generated corpus, explained with onnx-lrp's attnlrp composite.

Two steps, two environments:

    /work/venv-lxt/bin/python tools/train_sentiment_demo.py            # corpus, training, export (torch, transformers)
    python tools/train_sentiment_demo.py --explain                     # compile + explain (onnx_lrp, onnxruntime)

The first writes models/demo/sentiment_bert.onnx and models/demo/sentiment_vocab.json; the second (no torch needed:
torch and transformers are imported only inside train()) compiles the shipped ONNX file with
onnx_lrp.compile(path, "attnlrp", seed="logit"), runs it on EXAMPLES and prints a Markdown report (predicted class,
per-token relevance, top positive / negative tokens, and the largest relevance when the other class is explained) as
used in docs/sentiment_demo.md. It first prints the ONNX model's accuracy on the regenerated held-out split.

Corpus (nothing downloaded; generate_corpus(seed=0), Python's random.Random): short lower-case review sentences from
TEMPLATES, whose slots are filled from the word lists below: NOUNS (what is reviewed), POSITIVE / NEGATIVE adjectives,
POSITIVE_VERBS / NEGATIVE_VERBS (past tense: "i loved this film"), LIKE_VERBS / HATE_VERBS (base form: "i really
love this phone", "i did not enjoy the show"), INTENSIFIERS (empty or one adverb: "very", "extremely", ...),
VERB_ADVERBS ("really", "truly", ...), PREFIXES / SUFFIXES (neutral filler: "honestly", "overall", "to me", "for the
price", ...). The label is the polarity of the sentiment word(s), flipped in the negated templates ("not", "never",
"did not", "would not call"): "the film was not bad" is positive, "i did not enjoy the show" negative. Class 1 =
positive. Each of N_SAMPLES draws picks a template uniformly, then a polarity with probability 1/2, then the slots
uniformly ("did not" takes LIKE_VERBS only, so it is always negative); duplicates are dropped.
Split: for every template, a seeded ~25% of the sentiment words it can take are held out, but never every non-negated
template of a word, so that training shows each word un-negated. A sentence whose (template, sentiment word) pair is
held out goes to the test split, every other to training: every test sentence puts its sentiment word into a template
(negated or not) that word never appears in during training, and the two splits share no sentence.

Tokens: lower-case words split on spaces; a sequence is [CLS] words [SEP] then [PAD] (id 0) up to MAX_LEN = 16,
attention_mask 1 on [CLS]..[SEP]. Words not in the vocabulary map to [UNK]; during training each word is replaced by
[UNK] with probability 0.03 so that [UNK] has a trained embedding.

Model: transformers BertForSequenceClassification (hidden 32, 2 layers, 4 heads, intermediate 64, max positions 16,
2 labels, one token type, eager attention, dropout 0.1), torch.manual_seed(0); AdamW (lr 2e-3, weight decay 0.01),
batch 64, EPOCHS epochs, cross-entropy. Export: torch.onnx.export(dynamo=False, opset_version=17) with inputs
input_ids and attention_mask (int64 [N, 16], dynamic batch) and output logits [N, 2]; onnxruntime is checked against
torch. Training is deterministic on CPU (torch.use_deterministic_algorithms): a rerun writes the same bytes.
"""
import argparse
import json
import os
import random

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_PATH = os.path.join(ROOT, "models", "demo", "sentiment_bert.onnx")
VOCAB_PATH = os.path.join(ROOT, "models", "demo", "sentiment_vocab.json")
MAX_LEN, SEED, EPOCHS, N_SAMPLES = 16, 0, 10, 6000
PAD, CLS, SEP, UNK = "[PAD]", "[CLS]", "[SEP]", "[UNK]"

NOUNS = ["movie", "film", "book", "show", "story", "plot", "acting", "ending", "cast", "soundtrack", "phone",
         "camera", "battery", "screen", "laptop", "product", "service", "meal", "restaurant", "hotel", "game", "album"]
POSITIVE = ["good", "great", "excellent", "wonderful", "amazing", "fantastic", "brilliant", "superb", "enjoyable",
            "delightful", "lovely", "perfect", "charming", "beautiful", "impressive", "outstanding"]
NEGATIVE = ["bad", "terrible", "awful", "horrible", "boring", "dull", "poor", "disappointing", "weak", "mediocre",
            "annoying", "ugly", "painful", "bland", "dreadful", "useless"]
POSITIVE_VERBS = ["loved", "enjoyed", "liked", "adored", "appreciated"]
NEGATIVE_VERBS = ["hated", "disliked", "despised", "loathed", "regretted"]
LIKE_VERBS = ["like", "love", "enjoy", "recommend"]  # base form: "i really love this phone", "i did not enjoy it"
HATE_VERBS = ["hate", "dislike"]
VERB_ADVERBS = ["", "", "really", "truly", "absolutely", "totally"]  # "i really loved the film"
INTENSIFIERS = ["", "", "", "very", "really", "truly", "extremely", "so", "quite", "incredibly", "absolutely",
                "pretty", "rather"]
PREFIXES = ["", "", "", "honestly", "overall", "i think", "to be honest", "in the end", "well", "frankly",
            "all in all"]
SUFFIXES = ["", "", "", "to me", "for the price", "this time", "overall", "in my opinion", "i guess"]

# name: (pattern, negated, slot holding the sentiment word). Slots: {p} prefix, {s} suffix, {i} intensifier,
# {j} verb adverb, {n} noun, {a} / {a2} adjective(s) of the sentence's polarity, {v} past-tense verb, {b} base verb
# (LIKE_VERBS or HATE_VERBS; "did_not" takes LIKE_VERBS only). "a" becomes "an" before a vowel.
TEMPLATES = {
    "was": ("{p} the {n} was {i} {a} {s}", False, "a"),
    "is": ("{p} this {n} is {i} {a} {s}", False, "a"),
    "it_was_a": ("{p} it was a {i} {a} {n} {s}", False, "a"),
    "what_a": ("what a {i} {a} {n} {s}", False, "a"),
    "short": ("{i} {a} {n} {s}", False, "a"),
    "found": ("{p} i found the {n} {i} {a} {s}", False, "a"),
    "verb": ("{p} i {v} this {n} {s}", False, "v"),
    "really_verb": ("i {j} {v} the {n} {s}", False, "v"),
    "present": ("{p} i {j} {b} this {n} {s}", False, "b"),
    "and": ("{p} the {n} is {a} and {a2}", False, "a"),
    "noun_first": ("{n} {s} : {i} {a}", False, "a"),
    "was_not": ("{p} the {n} was not {i} {a} {s}", True, "a"),
    "is_not": ("this {n} is not {i} {a} {s}", True, "a"),
    "never": ("{p} the {n} was never {a} {s}", True, "a"),
    "did_not": ("{p} i did not {b} the {n} {s}", True, "b"),
    "would_not_call": ("i would not call the {n} {i} {a}", True, "a"),
}
SPECIALS = [PAD, CLS, SEP, UNK]  # [PAD] = 0

# Explained sentences (label: the class the corpus rule gives; None where the rule does not cover the sentence).
EXAMPLES = [
    ("the movie was really great", 1),
    ("this phone is extremely disappointing for the price", 0),
    ("honestly i loved this book", 1),
    ("the acting was not good", 0),
    ("the ending was not bad", 1),
    ("what a boring film", 0),
    ("i did not enjoy the restaurant", 0),
    ("the pizza was awful", 0),
    ("the plot was great but the ending was terrible", None),
]


def words_for(slot, positive):
    if slot in ("a", "a2"):
        return POSITIVE if positive else NEGATIVE
    if slot == "v":
        return POSITIVE_VERBS if positive else NEGATIVE_VERBS
    return LIKE_VERBS if positive else HATE_VERBS  # "b"


def polarities(name):
    """The polarities of the sentiment word a template takes: "did not" + a negative verb is left out."""
    return (True,) if name == "did_not" else (True, False)


def held_out_pairs(rng):
    """{(template, sentiment word)} kept for the test split: a seeded ~25% of each template's sentiment words, but
    never all the non-negated templates a word can appear in, so that training shows every word un-negated."""
    takes = {name: sorted({w for positive in polarities(name) for w in words_for(slot, positive)})
             for name, (_, _, slot) in TEMPLATES.items()}
    room = {}  # word -> how many more of its non-negated templates may hold it out
    for name, words in takes.items():
        for w in words:
            room[w] = room.get(w, -1) + (not TEMPLATES[name][1])
    held = set()
    for name in sorted(takes):
        negated = TEMPLATES[name][1]
        candidates = [w for w in takes[name] if negated or room[w] > 0]
        for w in rng.sample(candidates, min(len(candidates), max(1, round(0.25 * len(takes[name]))))):
            held.add((name, w))
            room[w] -= not negated
    return held


def sentence(rng, name, positive):
    """One sentence of template `name`; `positive` is the polarity of its sentiment word(s)."""
    pattern, negated, slot = TEMPLATES[name]
    fill = {"p": rng.choice(PREFIXES), "s": rng.choice(SUFFIXES), "i": rng.choice(INTENSIFIERS),
            "j": rng.choice(VERB_ADVERBS), "n": rng.choice(NOUNS), "v": rng.choice(words_for("v", positive)),
            "b": rng.choice(words_for("b", positive))}
    fill["a"], fill["a2"] = rng.sample(words_for("a", positive), 2)
    words = pattern.format(**fill).split()
    words = [("an" if w == "a" and nxt[0] in "aeiou" else w) for w, nxt in zip(words, words[1:] + ["."])]
    return words, int(positive != negated), fill[slot]


def generate_corpus(seed=SEED, n=N_SAMPLES):
    """(train, test): lists of (words, label, template); deterministic for a seed."""
    rng = random.Random(seed)
    held = held_out_pairs(rng)
    seen, train, test = set(), [], []
    names = sorted(TEMPLATES)
    for _ in range(n):
        name = rng.choice(names)
        positive = rng.random() < 0.5 if len(polarities(name)) == 2 else polarities(name)[0]
        words, label, key = sentence(rng, name, positive)
        text = " ".join(words)
        if text in seen:
            continue
        seen.add(text)
        (test if (name, key) in held else train).append((words, label, name))
    return train, test


def build_vocab(train):
    """Specials, then the training words by descending count, ties alphabetical."""
    counts = {}
    for words, _, _ in train:
        for w in words:
            counts[w] = counts.get(w, 0) + 1
    return SPECIALS + sorted(counts, key=lambda w: (-counts[w], w))


def encode(texts, vocab, max_len=MAX_LEN):
    """Texts (strings or word lists) -> (input_ids, attention_mask), int64 [N, max_len]; unknown words -> [UNK]."""
    index = {w: i for i, w in enumerate(vocab)}
    ids = np.zeros((len(texts), max_len), np.int64)
    for row, text in enumerate(texts):
        words = text.split() if isinstance(text, str) else list(text)
        seq = [index[CLS]] + [index.get(w, index[UNK]) for w in words] + [index[SEP]]
        if len(seq) > max_len:
            raise ValueError(f"{text!r}: {len(seq)} tokens with [CLS] and [SEP], at most {max_len}")
        ids[row, :len(seq)] = seq
    return ids, (ids != 0).astype(np.int64)


def load_vocab(path=VOCAB_PATH):
    with open(path) as f:
        return json.load(f)["tokens"]


# -- training and export (torch) --------------------------------------------------------------------------------------
def train():
    import importlib.metadata as md

    import onnx
    import onnxruntime as ort
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    train_set, test_set = generate_corpus()
    vocab = build_vocab(train_set)
    unseen = {w for words, _, _ in test_set for w in words} - set(vocab)
    assert not unseen, f"test words missing from the training vocabulary: {sorted(unseen)}"
    longest = max(len(w) for w, _, _ in train_set + test_set) + 2
    assert longest <= MAX_LEN, longest
    n_pos = sum(label for _, label, _ in train_set)
    print(f"corpus: {len(train_set)} train ({n_pos} positive), {len(test_set)} test "
          f"({sum(l for _, l, _ in test_set)} positive); vocabulary {len(vocab)} tokens; longest {longest} tokens")

    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=MAX_LEN, num_labels=2, pad_token_id=0,
                        type_vocab_size=1, attn_implementation="eager")
    model = BertForSequenceClassification(config)
    ids, mask = (torch.from_numpy(a) for a in encode([w for w, _, _ in train_set], vocab))
    labels = torch.tensor([l for _, l, _ in train_set])
    test_ids, test_mask = (torch.from_numpy(a) for a in encode([w for w, _, _ in test_set], vocab))
    test_labels = np.array([l for _, l, _ in test_set])
    special = torch.tensor([vocab.index(t) for t in SPECIALS])
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    g = torch.Generator().manual_seed(SEED)

    def accuracy(i, m, y):
        model.eval()
        with torch.no_grad():
            return float((model(input_ids=i, attention_mask=m).logits.argmax(1).numpy() == y).mean())

    for epoch in range(EPOCHS):
        model.train()
        order, total = torch.randperm(len(labels), generator=g), 0.0
        for start in range(0, len(order), 64):
            b = order[start:start + 64]
            batch_ids = ids[b].clone()
            drop = (torch.rand(batch_ids.shape, generator=g) < 0.03) & ~torch.isin(batch_ids, special)
            batch_ids[drop] = vocab.index(UNK)
            loss = model(input_ids=batch_ids, attention_mask=mask[b], labels=labels[b]).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(b)
        if epoch % 5 == 4 or epoch == EPOCHS - 1:
            print(f"epoch {epoch + 1}: loss {total / len(labels):.4f}, "
                  f"train acc {accuracy(ids, mask, labels.numpy()):.4f}, "
                  f"test acc {accuracy(test_ids, test_mask, test_labels):.4f}")
    model.eval()
    test_acc = accuracy(test_ids, test_mask, test_labels)

    class Logits(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    with torch.no_grad():
        ref = model(input_ids=test_ids, attention_mask=test_mask).logits.numpy()
    wrapper = Logits(model).eval()  # export restores the wrapper's mode afterwards, recursively: keep it eval
    os.makedirs(os.path.dirname(MODEL_PATH), exist_ok=True)
    torch.onnx.export(wrapper, (test_ids[:4], test_mask[:4]), MODEL_PATH,
                      input_names=["input_ids", "attention_mask"], output_names=["logits"],
                      dynamic_axes={n: {0: "N"} for n in ("input_ids", "attention_mask", "logits")},
                      opset_version=17, dynamo=False)
    proto = onnx.load(MODEL_PATH)
    onnx.helper.set_model_props(proto, {
        "demo.tool": "tools/train_sentiment_demo.py", "demo.seed": str(SEED), "demo.classes": "0 negative, 1 positive",
        "demo.vocab": "models/demo/sentiment_vocab.json", "demo.test_accuracy": f"{test_acc:.4f}",
        "demo.corpus": f"generate_corpus(seed={SEED}, n={N_SAMPLES}): {len(train_set)} train, {len(test_set)} test",
        "demo.config": json.dumps(config.to_diff_dict(), sort_keys=True),
        **{f"demo.{p}": md.version(p) for p in ("torch", "transformers")},
    })
    onnx.save(proto, MODEL_PATH)
    with open(VOCAB_PATH, "w") as f:
        json.dump({"tokens": vocab, "max_length": MAX_LEN, "pad": PAD, "cls": CLS, "sep": SEP, "unk": UNK,
                   "format": "[CLS] lower-case words split on spaces [SEP], then [PAD] (id 0) up to max_length",
                   "classes": ["negative", "positive"]}, f, indent=1)
        f.write("\n")

    session = ort.InferenceSession(MODEL_PATH, providers=["CPUExecutionProvider"])
    got = session.run(None, {"input_ids": test_ids.numpy(), "attention_mask": test_mask.numpy()})[0]
    one = session.run(None, {"input_ids": test_ids[:1].numpy(), "attention_mask": test_mask[:1].numpy()})[0]
    print(f"ONNX vs torch max|diff| {np.abs(got - ref).max():.1e} (batch {len(got)}), "
          f"{np.abs(one - ref[:1]).max():.1e} (batch 1); ONNX test acc {(got.argmax(1) == test_labels).mean():.4f}")
    print(f"wrote {MODEL_PATH} ({os.path.getsize(MODEL_PATH)} bytes), {VOCAB_PATH} "
          f"({os.path.getsize(VOCAB_PATH)} bytes); test accuracy {test_acc:.4f}")


# -- explanation (onnx_lrp, no torch) ---------------------------------------------------------------------------------
def test_summary(session, test_set, vocab, ids, mask):
    """Over the held-out split: which kind of token gets the largest relevance for the predicted class, and the
    share of the sentence's total |relevance| that sentiment words carry (negated and plain templates apart), and how
    much of the explained logit the tokens' relevance adds up to."""
    logits, R = session.run(["logits", "relevance_input_ids"], {"input_ids": ids, "attention_mask": mask,
                                                                "target": np.full(len(ids), -1, np.int64)})
    ratio = R.sum(1) / logits.max(1)
    print(f"sum of token relevance / explained logit: median {np.median(ratio):.2f}, 10th-90th percentile "
          f"{np.percentile(ratio, 10):.2f}-{np.percentile(ratio, 90):.2f}")
    lexicon = set(POSITIVE + NEGATIVE + POSITIVE_VERBS + NEGATIVE_VERBS + LIKE_VERBS + HATE_VERBS)
    cues = {"not", "never", "did", "would"}
    print(f"pad relevance exactly 0 on the test split: {bool((R[mask == 0] == 0).all())}")
    for negated in (False, True):
        rows = [k for k, (_, _, name) in enumerate(test_set) if TEMPLATES[name][1] == negated]
        kinds, share = {"sentiment word": 0, "negation cue": 0, "other": 0}, []
        for k in rows:
            tokens = [vocab[i] for i in ids[k][:int(mask[k].sum())]]
            r = R[k][:len(tokens)]
            top = tokens[int(np.argmax(r))]
            kinds["sentiment word" if top in lexicon else "negation cue" if top in cues else "other"] += 1
            share.append(sum(abs(x) for t, x in zip(tokens, r) if t in lexicon) / np.abs(r).sum())
        print(f"{'negated' if negated else 'plain'} templates ({len(rows)} sentences): top-relevance token "
              + ", ".join(f"{kind} {100 * n / len(rows):.1f}%" for kind, n in kinds.items())
              + f"; sentiment words carry {100 * np.median(share):.0f}% of sum |R| (median), "
              f"{100 * np.percentile(share, 10):.0f}% (10th percentile)")


def explain(examples=EXAMPLES):
    import onnxruntime as ort

    import onnx_lrp

    vocab = load_vocab()
    _, test_set = generate_corpus()
    plain = ort.InferenceSession(MODEL_PATH, providers=["CPUExecutionProvider"])
    t_ids, t_mask = encode([w for w, _, _ in test_set], vocab)
    t_labels = np.array([l for _, l, _ in test_set])
    pred = plain.run(None, {"input_ids": t_ids, "attention_mask": t_mask})[0].argmax(1)
    print(f"ONNX test accuracy: {(pred == t_labels).mean():.4f} on {len(t_labels)} held-out sentences")
    by_template = {}
    for (_, label, name), p in zip(test_set, pred):
        ok, n = by_template.get(name, (0, 0))
        by_template[name] = (ok + int(p == label), n + 1)
    print("per template: " + ", ".join(f"{k} {ok}/{n}" for k, (ok, n) in sorted(by_template.items())))

    compiled = onnx_lrp.compile(MODEL_PATH, "attnlrp", seed="logit")
    session = ort.InferenceSession(compiled.SerializeToString(), providers=["CPUExecutionProvider"])
    test_summary(session, test_set, vocab, t_ids, t_mask)
    texts = [t for t, _ in examples]
    ids, mask = encode(texts, vocab)
    feeds = {"input_ids": ids, "attention_mask": mask}
    logits, R = session.run(["logits", "relevance_input_ids"], {**feeds, "target": np.full(len(texts), -1, np.int64)})
    other = session.run(["relevance_input_ids"], {**feeds, "target": 1 - logits.argmax(1)})[0]
    print('\ncommand: onnx_lrp.compile("models/demo/sentiment_bert.onnx", "attnlrp", seed="logit"), target -1 '
          "(predicted class); relevance_input_ids [N, 16]\n")
    classes = ["negative", "positive"]
    for k, (text, label) in enumerate(examples):
        c = int(logits[k].argmax())
        tokens = [vocab[i] for i in ids[k]]
        n_real = int(mask[k].sum())
        cells = [f"{t} {r:+.2f}" for t, r in zip(tokens, R[k])]
        pads = R[k][n_real:]
        order = np.argsort(-R[k][:n_real])
        top_pos = [f"{tokens[j]} {R[k][j]:+.2f}" for j in order[:2] if R[k][j] > 0]
        top_neg = [f"{tokens[j]} {R[k][j]:+.2f}" for j in order[::-1][:2] if R[k][j] < 0]
        expected = "" if label is None else (" (as expected)" if label == c else f" (EXPECTED {classes[label]})")
        print(f"{k + 1}. \"{text}\": **{classes[c]}**{expected}, logits [{logits[k][0]:+.2f}, {logits[k][1]:+.2f}], "
              f"sum R {R[k].sum():+.2f} (explained logit {logits[k][c]:+.2f})")
        print(f"   - tokens: {', '.join(cells[:n_real])}; {len(pads)} x [PAD], relevance "
              f"{'exactly 0' if (pads == 0).all() else pads.tolist()}")
        print(f"   - top positive: {', '.join(top_pos) or 'none'}; top negative: {', '.join(top_neg) or 'none'}")
        big = np.argsort(-np.abs(other[k][:n_real]))[:2]
        print(f"   - explaining the other class ({classes[1 - c]}, logit {logits[k][1 - c]:+.2f}): largest |R| "
              + ", ".join(f"{tokens[j]} {other[k][j]:+.2f}" for j in big))
    return logits, R, other


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--explain", action="store_true", help="compile the shipped model and explain EXAMPLES")
    if parser.parse_args().explain:
        explain()
    else:
        train()
