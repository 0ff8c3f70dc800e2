"""Spatial geometry shared by Conv and pooling: explicit pads, and the ConvTranspose that inverts a window op."""
from .registry import attrs_of


def spatial_geometry(b, node, kernel):
    """Explicit begin/end pads, strides, dilations, kernel and input/output spatial sizes of a Conv or pooling node."""
    a = attrs_of(node)
    x = node.input[0]
    in_spatial = b.static_shape(x, node)[2:]
    out_spatial = b.static_shape(node.output[0], node)[2:]
    k = list(kernel)
    nd = len(k)
    s = list(a.get("strides", [1] * nd))
    d = list(a.get("dilations", [1] * nd))
    pads = list(a.get("pads", [0] * (2 * nd)))
    auto_pad = a.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = same_pads(in_spatial, k, s, d, auto_pad)
    elif auto_pad == "VALID":
        pads = [0] * (2 * nd)
    return dict(kernel=k, strides=s, dilations=d, pads=pads, in_spatial=in_spatial, out_spatial=out_spatial)


def same_pads(in_spatial, k, s, d, mode):
    """Explicit pads for auto_pad SAME_UPPER / SAME_LOWER (the odd pixel goes to the end / the beginning)."""
    total = [max((-(-i // st) - 1) * st + (kk - 1) * dd + 1 - i, 0) for i, kk, st, dd in zip(in_spatial, k, s, d)]
    small, big = [t // 2 for t in total], [t - t // 2 for t in total]
    return small + big if mode == "SAME_UPPER" else big + small


def transpose_pads(geo):
    """End pads and output_padding so that ConvTranspose maps the pooled grid back onto the input exactly,
    also when ceil_mode made the last window run past the padded input."""
    nd = len(geo["kernel"])
    begin, end = list(geo["pads"][:nd]), list(geo["pads"][nd:])
    out_pad = []
    for i in range(nd):
        k_eff = (geo["kernel"][i] - 1) * geo["dilations"][i] + 1
        reach = (geo["out_spatial"][i] - 1) * geo["strides"][i] + k_eff - begin[i] - end[i]
        if reach > geo["in_spatial"][i]:
            end[i] += reach - geo["in_spatial"][i]
            reach = geo["in_spatial"][i]
        out_pad.append(geo["in_spatial"][i] - reach)
    return begin + end, out_pad
