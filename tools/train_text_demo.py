"""Text demo: a small 1-D CNN review classifier on token ids, explained with a CNN composite (epsilon).

    /work/venv-torch/bin/python tools/train_text_demo.py      # torch only (the corpus is generated, nothing downloaded)

Writes models/demo/review_classifier.onnx, models/demo/review_vocab.json and models/demo/review_test.npz, then
compiles the ONNX file with onnx-lrp (imported from this checkout, composite `epsilon`) and checks that the token
relevance of the shipped sentences is finite and non-zero.

Corpus: SYNTHETIC. The same generated review corpus as the BERT demo (tools/train_sentiment_demo.py, whose
generate_corpus(seed=0) is imported here; its docstring describes the templates, word lists, negations and the
held-out split): short lower-case review sentences ("the movie was really great", "i did not enjoy the show") with
label 1 positive / 0 negative, where every test sentence puts its sentiment word into a template that word never
appears in during training. No real reviews are involved.

Tokens (review_vocab.json): lower-case words split on spaces, mapped to ids by "tokens" (id 0 = [PAD], 1 = [UNK],
then the training words by descending count, ties alphabetical), then padded with [PAD] to max_length = 16 (no
[CLS]/[SEP]). Unknown words map to [UNK]; during training each word is replaced by [UNK] with probability 0.03.

Model (torch.manual_seed(0)): Embedding(V, 32, padding_idx=0: [PAD] embeds to zeros) - transpose -
Conv1d(32, 64, 3, pad 1) - ReLU - MaxPool1d(16) (max over the sentence) - Flatten - Linear(64, 2);
Adam (lr 3e-3), batch 64, EPOCHS epochs, cross-entropy; one thread, deterministic.
Export: torch.onnx.export(dynamo=False, opset_version=17), input `input_ids` int64 [N, 16], output `logits` [N, 2],
dynamic batch N. onnx-lrp gives each token the relevance of its embedding vector summed over the embedding
dimension: `relevance_input_ids` is float32 [N, 16]; with `epsilon`, [PAD] tokens get exactly 0.

review_test.npz: `input_ids` int64 [24, 16], `text` (the sentences), `label` int64 [24], `negated` bool [24] (the
template has a negation), `sentiment` bool [24, 16] (the token is one of the corpus's sentiment words): the first 16
held-out sentences from templates without negation and the first 8 with, in split order.
"""
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_PATH = os.path.join(ROOT, "models", "demo", "review_classifier.onnx")
VOCAB_PATH = os.path.join(ROOT, "models", "demo", "review_vocab.json")
SAMPLES_PATH = os.path.join(ROOT, "models", "demo", "review_test.npz")
SEED, EPOCHS, MAX_LEN, N_PLAIN, N_NEGATED = 0, 8, 16, 16, 8
PAD, UNK = "[PAD]", "[UNK]"

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_sentiment_demo as corpus  # the generated corpus (numpy and the standard library only)


def build_vocab(train):
    counts = {}
    for words, _, _ in train:
        for w in words:
            counts[w] = counts.get(w, 0) + 1
    return [PAD, UNK] + sorted(counts, key=lambda w: (-counts[w], w))


def encode(texts, vocab):
    """Word lists -> int64 [N, MAX_LEN], unknown words [UNK], then [PAD] (0)."""
    index = {w: i for i, w in enumerate(vocab)}
    ids = np.zeros((len(texts), MAX_LEN), np.int64)
    for row, words in enumerate(texts):
        assert len(words) <= MAX_LEN, words
        ids[row, :len(words)] = [index.get(w, index[UNK]) for w in words]
    return ids


def lexicon():
    return set(corpus.POSITIVE + corpus.NEGATIVE + corpus.POSITIVE_VERBS + corpus.NEGATIVE_VERBS +
               corpus.LIKE_VERBS + corpus.HATE_VERBS)


def main():
    import torch
    from torch import nn
    from demo_training import check_compiles, check_export, export_onnx

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    train_set, test_set = corpus.generate_corpus(seed=SEED)
    vocab = build_vocab(train_set)
    ids = torch.from_numpy(encode([w for w, _, _ in train_set], vocab))
    labels = torch.tensor([l for _, l, _ in train_set])
    test_ids = encode([w for w, _, _ in test_set], vocab)
    test_labels = np.array([l for _, l, _ in test_set])
    print(f"corpus: {len(train_set)} train, {len(test_set)} test sentences; vocabulary {len(vocab)} tokens")

    class ReviewCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(len(vocab), 32, padding_idx=0)
            self.conv = nn.Conv1d(32, 64, 3, padding=1)
            self.pool = nn.MaxPool1d(MAX_LEN)
            self.fc = nn.Linear(64, 2)

        def forward(self, input_ids):
            h = self.embedding(input_ids).transpose(1, 2)  # [N, 32, T]
            return self.fc(self.pool(torch.relu(self.conv(h))).flatten(1))

    model = ReviewCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(SEED)
    for _ in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(ids), generator=g)
        for i in range(0, len(perm), 64):
            b = perm[i:i + 64]
            batch = ids[b].clone()
            batch[(torch.rand(batch.shape, generator=g) < 0.03) & (batch != 0)] = vocab.index(UNK)
            opt.zero_grad()
            nn.functional.cross_entropy(model(batch), labels[b]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        train_acc = float((model(ids).argmax(1) == labels).float().mean())
        logits = model(torch.from_numpy(test_ids)).numpy()
    test_acc = float((logits.argmax(1) == test_labels).mean())
    negated = np.array([corpus.TEMPLATES[name][1] for _, _, name in test_set])
    right = logits.argmax(1) == test_labels
    print(f"review CNN: train accuracy {train_acc:.4f}, test accuracy {test_acc:.4f} ({len(test_set)} held-out "
          f"sentences; plain templates {right[~negated].mean():.4f}, negated {right[negated].mean():.4f})")

    export_onnx(model, test_ids[:2], MODEL_PATH, "input_ids", ["logits"], {
        "demo.tool": "tools/train_text_demo.py", "demo.seed": str(SEED), "demo.test_accuracy": f"{test_acc:.4f}",
        "demo.corpus": "synthetic: tools/train_sentiment_demo.py generate_corpus(seed=0)",
        "demo.input": f"int64 [N, {MAX_LEN}] token ids (models/demo/review_vocab.json), [PAD] = 0",
        "demo.classes": "0 negative, 1 positive", "demo.samples": "models/demo/review_test.npz"})
    with open(VOCAB_PATH, "w") as f:
        json.dump({"tokens": vocab, "max_length": MAX_LEN, "pad": PAD, "unk": UNK,
                   "format": "lower-case words split on spaces, then [PAD] (id 0) up to max_length; no [CLS]/[SEP]",
                   "classes": ["negative", "positive"]}, f, indent=1)
        f.write("\n")

    pick = np.concatenate([np.flatnonzero(~negated)[:N_PLAIN], np.flatnonzero(negated)[:N_NEGATED]])
    words = lexicon()
    sentiment = np.array([[vocab[t] in words for t in row] for row in test_ids[pick]])
    np.savez_compressed(SAMPLES_PATH, input_ids=test_ids[pick], label=test_labels[pick], negated=negated[pick],
                        sentiment=sentiment, text=np.array([" ".join(test_set[k][0]) for k in pick]))
    check_export(MODEL_PATH, {"input_ids": test_ids}, logits, test_labels, pick, "sentences")
    print(f"wrote {MODEL_PATH} ({os.path.getsize(MODEL_PATH)} bytes), {VOCAB_PATH}, {SAMPLES_PATH}")
    check_compiles(MODEL_PATH, {"input_ids": test_ids[pick]}, composite="epsilon")


if __name__ == "__main__":
    main()
