"""Say which scores to explain, for a model compiled with output_relevance=True: the relevance put on each score of
the explained output (Zennit's attr_output), built from a short spec instead of by hand.

A spec has one item per axis after the batch, comma-separated:
- `K`: index K (negative counts from the end), `A:B`: the indices A..B-1, `*`: every index;
- `max`: the top-scoring index along that axis, `max:A:B`: the top-scoring one among A..B-1.

The `max` axes are decided per sample and jointly, among the positions the other items allow. Examples:
- `[N, classes]`: `3` (class 3, the same as target 3), `max` (the top class);
- `[N, T, C]` (a text recognizer's steps): `7,max` (step 7, its best character), `*,5` (character 5 at every step);
- `[N, boxes, 4 + C]` (a detector): `3,max:4:` (box 3, its best class; columns 0-3 are the box);
- `[N, C, H, W]` (a segmenter): `2,*,*` with mask=M [H, W] (class 2 over the region M).
A contrast (class A minus class B) is `select(s, "A") - select(s, "B")`: relevance is linear in output_relevance.
"""
import numpy as np

from .errors import OnnxLrpError


def parse(spec, rank):
    """The spec's items for a score of `rank` dims (batch included): a list of (kind, value) per non-batch axis."""
    items = [p.strip() for p in str(spec).split(",")]
    if len(items) != rank - 1:
        raise OnnxLrpError(f"selection '{spec}' has {len(items)} item(s); the explained output has {rank - 1} axes "
                           "after the batch: give one item per axis (K, A:B, *, max, max:A:B)")
    return [_item(p, spec) for p in items]


def _item(text, spec):
    is_max = text == "max" or text.startswith("max:")
    body = text[4:] if text.startswith("max:") else ("*" if text in ("max", "*") else text)
    try:
        if body == "*":
            picked = slice(None)
        elif ":" in body:
            start, _, end = body.partition(":")
            picked = slice(int(start) if start else None, int(end) if end else None)
        else:
            if is_max:
                raise ValueError
            picked = int(body)
    except ValueError:
        raise OnnxLrpError(f"selection '{spec}': item '{text}' is none of K, A:B, *, max, max:A:B") from None
    return ("max" if is_max else "pick", picked)


def select(scores, spec, mask=None, batch_axis=0):
    """output_relevance for `scores` (the explained output of a batch, [N, ...]; batch_axis: where the batch is, as
    a time-first recognizer's [T, N, C]): 1 at the selected scores, 0 elsewhere, times `mask` (broadcast to the
    scores without their batch) where given. The spec's items are for the other axes, in order."""
    if batch_axis:
        moved = select(np.moveaxis(np.asarray(scores), batch_axis, 0), spec, mask)
        return np.ascontiguousarray(np.moveaxis(moved, 0, batch_axis))
    scores = np.asarray(scores)
    items = parse(spec, scores.ndim)
    allowed = np.zeros(scores.shape[1:], bool)
    index = tuple(slice(None) if kind == "max" else picked for kind, picked in items)
    try:
        allowed[index] = True
    except IndexError as exc:
        raise OnnxLrpError(f"selection '{spec}' is outside the explained output's shape {list(scores.shape)} "
                           f"({exc})") from None
    for axis, (kind, picked) in enumerate(items):
        if kind == "max":
            keep = np.zeros(scores.shape[axis + 1], bool)
            keep[picked] = True
            allowed &= keep.reshape([-1 if k == axis else 1 for k in range(scores.ndim - 1)])
    if not allowed.any():
        raise OnnxLrpError(f"selection '{spec}' selects no score of the explained output {list(scores.shape)}")
    chosen = np.broadcast_to(allowed, scores.shape).astype(np.float32)
    max_axes = [k + 1 for k, (kind, _) in enumerate(items) if kind == "max"]
    if max_axes:
        chosen = _top_along(np.where(allowed, scores, -np.inf), max_axes)
    if mask is not None:
        try:
            chosen = chosen * np.broadcast_to(np.asarray(mask, np.float32), scores.shape[1:])
        except ValueError:
            raise OnnxLrpError(f"the mask's shape {list(np.shape(mask))} does not broadcast to the explained "
                               f"output without its batch, {list(scores.shape[1:])}") from None
    return np.ascontiguousarray(chosen, np.float32)


def _top_along(scores, axes):
    """One-hot of the joint argmax over `axes`, for every position of the other axes (ties: the first)."""
    rest = [k for k in range(scores.ndim) if k not in axes]
    moved = np.transpose(scores, rest + axes)
    flat = moved.reshape(moved.shape[:len(rest)] + (-1,))
    top = np.zeros_like(flat, dtype=np.float32)
    best = np.argmax(flat, axis=-1)
    np.put_along_axis(top, best[..., None], np.isfinite(np.take_along_axis(flat, best[..., None], -1)), -1)
    return np.transpose(top.reshape(moved.shape), np.argsort(rest + axes))


def one_hot(scores, target):
    """output_relevance equal to `target` [N] (a negative entry: the top class) on a [N, classes] score."""
    scores = np.asarray(scores)
    target = np.asarray(target).reshape(-1)
    chosen = np.where(target < 0, scores.argmax(axis=1), target)
    return (np.arange(scores.shape[1])[None, :] == chosen[:, None]).astype(np.float32)
