"""Board-game demo: a small two-head (policy + value) Othello net, for explaining a chosen output of the model.

    /work/venv-torch/bin/python tools/train_board_demo.py      # torch only (positions are generated here)

Writes models/demo/othello_net.onnx and models/demo/othello_boards.npz, then compiles the ONNX file with onnx-lrp
(imported from this checkout) once per head (output="policy", output="value") and checks that the relevance of the
shipped boards is finite and non-zero.

Positions (generate(seed, games), numpy only; nothing downloaded): Othello games played from the standard opening by
a random player (each move uniform over the legal moves; a player without a move passes; the game ends when neither
can move). Every position where the player to move has a legal move is recorded from that player's side. Train:
games of seed 0; test: games of seed 1 (different games, so at most the opening positions repeat).

Input: float32 [N, 3, 8, 8]: plane 0 = own stones (the player to move), 1 = opponent stones, 2 = legal moves of the
player to move (1 where a move flips at least one disc). Squares are row-major: square = 8 * row + column.

Targets (the small move generator below computes them; they are heuristics, so that the heatmaps mean something,
not strong play):
- policy (logits over the 64 squares): the greedy "most discs" rule: the target distribution is uniform over the
  legal moves that flip the most discs, zero elsewhere (soft cross-entropy);
- value (in [-1, 1]): tanh(positional score / VALUE_SCALE), where the score is sum(WEIGHTS * (own - opponent)) with
  the classic Othello square weights (corners +100, the squares next to a corner -20 / -50, edges +5 / +10, centre
  -1 / -2): owning corners is good, owning the squares that give corners away is bad.

Model (torch.manual_seed(0)): trunk Conv2d(3, 32, 3, pad 1) - ReLU - 3 x [Conv2d(32, 32, 3, pad 1) - ReLU];
policy head Conv2d(32, 1, 1) - Flatten -> `policy` [N, 64] (logits, no Softmax); value head Conv2d(32, 2, 1) - ReLU -
Flatten - Linear(128, 32) - ReLU - Linear(32, 1) - Tanh -> `value` [N, 1]. Adam (lr 2e-3), batch 128, EPOCHS epochs,
loss = cross-entropy(policy) + mean squared error(value); one thread, deterministic. Export:
torch.onnx.export(dynamo=False, opset_version=17), input `board` [N, 3, 8, 8], outputs `policy` and `value`, dynamic
batch N. onnx-lrp compiles the value head with its final Tanh (an element-wise activation: relevance passes through
it), so the value head is exported as trained.

othello_boards.npz: `board` float32 [16, 3, 8, 8] (test game k = 0..15 at ply 4 + 3k: from the opening to move 49),
`best` bool [16, 64] (legal moves that flip the most discs), `value` float32 [16] (the value target), `ply` [16].
"""
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_PATH = os.path.join(ROOT, "models", "demo", "othello_net.onnx")
SAMPLES_PATH = os.path.join(ROOT, "models", "demo", "othello_boards.npz")
SEED, EPOCHS, TRAIN_GAMES, TEST_GAMES, VALUE_SCALE = 0, 12, 500, 100, 60.0
DIRECTIONS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]
WEIGHTS = np.array([[100, -20, 10, 5, 5, 10, -20, 100],
                    [-20, -50, -2, -2, -2, -2, -50, -20],
                    [10, -2, -1, -1, -1, -1, -2, 10],
                    [5, -2, -1, -1, -1, -1, -2, 5],
                    [5, -2, -1, -1, -1, -1, -2, 5],
                    [10, -2, -1, -1, -1, -1, -2, 10],
                    [-20, -50, -2, -2, -2, -2, -50, -20],
                    [100, -20, 10, 5, 5, 10, -20, 100]], np.float32)


def shifted(a, dr, dc):
    """a[..., r + dr, c + dc] at [..., r, c], False off the board."""
    out = np.zeros_like(a)
    rs, re = max(0, -dr), 8 - max(0, dr)
    cs, ce = max(0, -dc), 8 - max(0, dc)
    out[..., rs:re, cs:ce] = a[..., rs + dr:re + dr, cs + dc:ce + dc]
    return out


def flips(board):
    """Boards [..., 8, 8] (1 own, -1 opponent, 0 empty) -> discs each move of the player to move flips [..., 8, 8]
    (0 on occupied squares and on illegal moves)."""
    own, opp = board == 1, board == -1
    total = np.zeros(board.shape, np.int64)
    for dr, dc in DIRECTIONS:
        run = np.ones(board.shape, bool)  # squares 1..k-1 along the direction are all opponent discs
        for k in range(1, 8):
            total += np.where(run & shifted(own, dr * k, dc * k), k - 1, 0)
            run &= shifted(opp, dr * k, dc * k)
    return total * (board == 0)


def play(board, r, c):
    """The board after the player to move (1) plays (r, c), from the OTHER player's side."""
    board = board.copy()
    for dr, dc in DIRECTIONS:
        line, rr, cc = [], r + dr, c + dc
        while 0 <= rr < 8 and 0 <= cc < 8 and board[rr, cc] == -1:
            line.append((rr, cc))
            rr, cc = rr + dr, cc + dc
        if line and 0 <= rr < 8 and 0 <= cc < 8 and board[rr, cc] == 1:
            for p in line:
                board[p] = 1
    board[r, c] = 1
    return -board


def generate(seed, games):
    """(boards int8 [n, 8, 8] from the mover's side, plies [n]) of random games."""
    rng = np.random.default_rng(seed)
    boards, plies = [], []
    for _ in range(games):
        board = np.zeros((8, 8), np.int8)
        board[3, 3] = board[4, 4] = -1
        board[3, 4] = board[4, 3] = 1  # the player to move (black) owns d5/e4
        passes, ply = 0, 0
        while passes < 2:
            legal = np.argwhere(flips(board) > 0)
            if len(legal) == 0:
                board, passes = -board, passes + 1
                continue
            boards.append(board)
            plies.append(ply)
            r, c = legal[rng.integers(len(legal))]
            board, passes, ply = play(board, r, c), 0, ply + 1
    return np.array(boards), np.array(plies)


def features(boards):
    """int8 boards -> (input float32 [n, 3, 8, 8], policy target [n, 64], value target [n], best moves [n, 64])."""
    f = flips(boards)
    x = np.stack([boards == 1, boards == -1, f > 0], axis=1).astype(np.float32)
    best = (f > 0) & (f == f.max(axis=(1, 2), keepdims=True))
    policy = best.reshape(len(boards), 64) / best.reshape(len(boards), 64).sum(1, keepdims=True)
    value = np.tanh((WEIGHTS * boards).sum((1, 2)) / VALUE_SCALE)
    return x, policy.astype(np.float32), value.astype(np.float32), best.reshape(len(boards), 64)


def main():
    import onnxruntime as ort
    import torch
    from torch import nn

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from demo_training import check_compiles, export_onnx

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    b_tr, _ = generate(0, TRAIN_GAMES)
    b_te, p_te = generate(1, TEST_GAMES)
    x_tr, pol_tr, val_tr, _ = features(b_tr)
    x_te, _, val_te, best_te = features(b_te)
    print(f"positions: {len(b_tr)} train ({TRAIN_GAMES} games), {len(b_te)} test ({TEST_GAMES} games); value target "
          f"std {val_tr.std():.2f}")

    class OthelloNet(nn.Module):
        def __init__(self):
            super().__init__()
            layers = [nn.Conv2d(3, 32, 3, padding=1), nn.ReLU()]
            for _ in range(3):
                layers += [nn.Conv2d(32, 32, 3, padding=1), nn.ReLU()]
            self.trunk = nn.Sequential(*layers)
            self.policy = nn.Sequential(nn.Conv2d(32, 1, 1), nn.Flatten())
            self.value = nn.Sequential(nn.Conv2d(32, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(128, 32), nn.ReLU(),
                                       nn.Linear(32, 1), nn.Tanh())

        def forward(self, board):
            h = self.trunk(board)
            return self.policy(h), self.value(h)

    model = OthelloNet()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    xt, pt, vt = torch.from_numpy(x_tr), torch.from_numpy(pol_tr), torch.from_numpy(val_tr)[:, None]
    g = torch.Generator().manual_seed(SEED)
    for _ in range(EPOCHS):
        model.train()
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(perm), 128):
            b = perm[i:i + 128]
            policy, value = model(xt[b])
            loss = nn.functional.cross_entropy(policy, pt[b]) + nn.functional.mse_loss(value, vt[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        policy, value = (t.numpy() for t in model(torch.from_numpy(x_te)))
    top = policy.argmax(1)
    rows = np.arange(len(top))
    legal_rate = float(x_te[:, 2].reshape(len(top), 64)[rows, top].mean())
    best_rate = float(best_te[rows, top].mean())
    mae = float(np.abs(value[:, 0] - val_te).mean())
    corr = float(np.corrcoef(value[:, 0], val_te)[0, 1])
    print(f"othello net (test positions): policy top move legal {legal_rate:.4f}, a most-flips move {best_rate:.4f}; "
          f"value MAE {mae:.3f}, correlation {corr:.3f}")

    export_onnx(model, x_te[:2], MODEL_PATH, "board", ["policy", "value"], {
        "demo.tool": "tools/train_board_demo.py", "demo.seed": str(SEED),
        "demo.test_policy_legal": f"{legal_rate:.4f}", "demo.test_policy_most_flips": f"{best_rate:.4f}",
        "demo.test_value_mae": f"{mae:.4f}", "demo.test_value_correlation": f"{corr:.4f}",
        "demo.input": "float32 [N, 3, 8, 8]: own stones, opponent stones, legal moves of the player to move",
        "demo.outputs": "policy [N, 64] logits over squares (8 * row + column); value [N, 1] in [-1, 1] (Tanh)",
        "demo.samples": "models/demo/othello_boards.npz"})

    game = np.cumsum(p_te == 0) - 1  # every game starts at ply 0
    pick = np.array([np.flatnonzero((game == k) & (p_te == 4 + 3 * k))[0] for k in range(16)])
    np.savez_compressed(SAMPLES_PATH, board=x_te[pick], best=best_te[pick], value=val_te[pick],
                        ply=p_te[pick].astype(np.int64))
    session = ort.InferenceSession(MODEL_PATH, providers=["CPUExecutionProvider"])
    got_policy, got_value = session.run(None, {"board": x_te})
    print(f"ONNX vs torch max|diff| policy {np.abs(got_policy - policy).max():.1e}, value "
          f"{np.abs(got_value - value).max():.1e}; shipped boards: {len(pick)}, top move legal "
          f"{x_te[pick, 2].reshape(len(pick), 64)[np.arange(len(pick)), got_policy[pick].argmax(1)].mean():.4f}")
    print(f"wrote {MODEL_PATH} ({os.path.getsize(MODEL_PATH)} bytes), {SAMPLES_PATH}")
    check_compiles(MODEL_PATH, {"board": x_te[pick]}, outputs=("policy", "value"))


if __name__ == "__main__":
    main()
