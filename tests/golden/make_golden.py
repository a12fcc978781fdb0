#!/usr/bin/env python3
"""Write the golden reference files for tessera's objective (DESIGN.md section 1).

Every case builds a backbone (VGG-19 or NIN with deterministic synthetic
weights, or the real normalised VGG-19 prefix in vgg_r31.pth), deterministic
images, and evaluates the neural-style objective (content + style + total
variation) and its gradient with respect to the image in float64 with PyTorch.
The results are stored as float32 in <case>.bin, described by <case>.json.
README.md in this folder documents the format and the rules for the inputs.

Usage (from the repository root):
    /usr/bin/python3 tests/golden/make_golden.py [--model-dir ../shared/models] [--out tests/golden]
"""

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as tf

REPO_ROOT = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------------------
# Deterministic values: a counter-based splitmix64 hash, the twin of
# uniform_at() in tests/support/test_support.cpp.
# ---------------------------------------------------------------------------

_U64 = np.uint64
_GOLDEN_GAMMA = _U64(0x9E3779B97F4A7C15)
_MIX1 = _U64(0xBF58476D1CE4E5B9)
_MIX2 = _U64(0x94D049BB133111EB)


def uniform_at(seed, index, lo, hi):
    """float32 values in [lo, hi) for (seed, index); index may be an array.

    All integer arithmetic is uint64 and wraps mod 2^64 (numpy arrays wrap
    silently). The final affine map is done in float32, one rounding per
    operation, exactly like C++ `lo + (hi - lo) * unit` with float operands.
    """
    index = np.asarray(index, dtype=np.uint64)
    seed = np.asarray(seed, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = seed * _GOLDEN_GAMMA + index + _U64(1)
        z = (z ^ (z >> _U64(30))) * _MIX1
        z = (z ^ (z >> _U64(27))) * _MIX2
        z = z ^ (z >> _U64(31))
    # The top 24 bits convert to float32 exactly; dividing by 2^24 is exact.
    unit = (z >> _U64(40)).astype(np.float32) / np.float32(1 << 24)
    lo32, hi32 = np.float32(lo), np.float32(hi)
    span = np.float32(hi32 - lo32)  # rounded to float32, as in C++
    return (lo32 + span * unit).astype(np.float32)


def uniform_array(seed, shape, lo, hi):
    """uniform_at(seed, i, lo, hi) for i = 0 .. prod(shape)-1, in C order."""
    count = int(np.prod(shape))
    return uniform_at(seed, np.arange(count, dtype=np.uint64), lo, hi).reshape(shape)


def f32_hex(value):
    """The bit pattern of a float32 as 0xXXXXXXXX."""
    return "0x%08x" % np.float32(value).view(np.uint32)


# Values the C++ side can assert (README.md lists them too).
SELF_CHECK = [
    (7, 0, 0.0, 1.0),
    (7, 12345, -2.0, 3.0),
    (11, 0, -100.0, 100.0),
    (2000, 63, 0.0, 0.1),
]


def synthetic_conv_bound(fan_in):
    """a = sqrt(6 / fan_in), computed in double then rounded to float32."""
    return np.float32(math.sqrt(6.0 / fan_in))


def synthetic_conv(k, out_ch, in_ch, kh, kw):
    """Weights (OIHW) and bias of the k-th convolution of a synthetic network."""
    a = synthetic_conv_bound(in_ch * kh * kw)
    weight = uniform_array(1000 + k, (out_ch, in_ch, kh, kw), -a, a)
    bias = uniform_array(2000 + k, (out_ch,), 0.0, 0.1)
    return weight, bias


# ---------------------------------------------------------------------------
# Networks, as lists of operations in order:
#   ("conv", name, in_ch, out_ch, kernel, stride, pad)   always followed by
#   ("relu", name)
#   ("pool", kernel, stride, ceil_mode)                   max pooling, no padding
# Zero padding everywhere.
# ---------------------------------------------------------------------------


def vgg19_ops():
    blocks = [(1, 2, 64), (2, 2, 128), (3, 4, 256), (4, 4, 512), (5, 4, 512)]
    ops, in_ch = [], 3
    for block, convs, out_ch in blocks:
        for j in range(1, convs + 1):
            ops.append(("conv", "conv%d_%d" % (block, j), in_ch, out_ch, 3, 1, 1))
            ops.append(("relu", "relu%d_%d" % (block, j)))
            in_ch = out_ch
        if block < 5:  # pools after relu1_2, relu2_2, relu3_4, relu4_4
            ops.append(("pool", 2, 2, False))
    return ops


def nin_ops():
    # (conv name, out channels, kernel, stride, pad); "POOL" = 3x3/2 ceil-mode max pool.
    spec = [
        ("conv1", 96, 11, 4, 0), ("cccp1", 96, 1, 1, 0), ("cccp2", 96, 1, 1, 0), "POOL",
        ("conv2", 256, 5, 1, 2), ("cccp3", 256, 1, 1, 0), ("cccp4", 256, 1, 1, 0), "POOL",
        ("conv3", 384, 3, 1, 1), ("cccp5", 384, 1, 1, 0), ("cccp6", 384, 1, 1, 0), "POOL",
        ("conv4-1024", 1024, 3, 1, 1), ("cccp7-1024", 1024, 1, 1, 0), ("cccp8-1024", 1000, 1, 1, 0),
    ]
    # neural-style's names for the ReLUs of nin_imagenet_conv: there is no relu4.
    relu_names = ["relu0", "relu1", "relu2", "relu3", "relu5", "relu6", "relu7",
                  "relu8", "relu9", "relu10", "relu11", "relu12"]
    ops, in_ch, r = [], 3, 0
    for item in spec:
        if item == "POOL":
            ops.append(("pool", 3, 2, True))
            continue
        name, out_ch, kernel, stride, pad = item
        ops.append(("conv", name, in_ch, out_ch, kernel, stride, pad))
        ops.append(("relu", relu_names[r]))
        r += 1
        in_ch = out_ch
    return ops


def truncate_ops(ops, layers):
    """Keep the operations up to (and including) the deepest ReLU in layers."""
    last = max(i for i, op in enumerate(ops) if op[0] == "relu" and op[1] in layers)
    return ops[: last + 1]


class Backbone:
    """A chain of conv/ReLU/max-pool operations with weights in a given dtype."""

    def __init__(self, ops, params, dtype):
        self.ops = ops
        # params: conv name -> (weight ndarray/tensor, bias ndarray/tensor)
        self.params = {name: (torch.as_tensor(w).to(dtype), torch.as_tensor(b).to(dtype))
                       for name, (w, b) in params.items()}

    def forward(self, image, layers):
        """image: C x H x W tensor. Returns {layer: C x H_l x W_l} for layers."""
        out, h = {}, image.unsqueeze(0)
        for op in self.ops:
            if op[0] == "conv":
                _, name, _, _, _, stride, pad = op
                w, b = self.params[name]
                h = tf.conv2d(h, w, b, stride=stride, padding=pad)
            elif op[0] == "relu":
                h = torch.relu(h)
                if op[1] in layers:
                    out[op[1]] = h[0]
            else:
                _, kernel, stride, ceil_mode = op
                h = tf.max_pool2d(h, kernel, stride, ceil_mode=ceil_mode)
        return out


def synthetic_params(ops):
    """Synthetic weights for every conv in ops; k counts convs in network order."""
    params, k = {}, 0
    for op in ops:
        if op[0] == "conv":
            _, name, in_ch, out_ch, kernel, _, _ = op
            params[name] = synthetic_conv(k, out_ch, in_ch, kernel, kernel)
            k += 1
    return params


# ---------------------------------------------------------------------------
# The objective (neural-style conventions), on input-domain images.
# ---------------------------------------------------------------------------


def gram(feature):
    """G = F F^T / (C * N) for a C x H x W feature map."""
    c = feature.shape[0]
    f = feature.reshape(c, -1)
    return f @ f.t() / (c * f.shape[1])


def tv_energy(x, weight):
    """0.5 * w * sum over the (H-1) x (W-1) grid of right and down squared differences."""
    core = x[:, :-1, :-1]
    right = core - x[:, :-1, 1:]
    down = core - x[:, 1:, :-1]
    return 0.5 * weight * ((right * right).sum() + (down * down).sum())


def objective(net, x, cfg, content_target, style_targets):
    """Loss terms (0-dim tensors) and the feature maps of x."""
    layers = set(cfg["style_layers"]) | {cfg["content_layer"]}
    feats = net.forward(x, layers)
    diff = feats[cfg["content_layer"]] - content_target
    e_content = cfg["content_weight"] * (diff * diff).mean()
    e_style_layer = {}
    for layer in cfg["style_layers"]:
        d = gram(feats[layer]) - style_targets[layer]
        e_style_layer[layer] = cfg["style_weight"] * (d * d).mean()
    e_style = sum(e_style_layer.values())
    e_tv = tv_energy(x, cfg["tv_weight"])
    total = e_content + e_style + e_tv
    return {"content": e_content, "style": e_style, "style_per_layer": e_style_layer,
            "tv": e_tv, "total": total}, feats


def targets(net, cfg, content_image, style_image):
    """P = F_c(content image) and A_l = G_l(style image)."""
    with torch.no_grad():
        p = net.forward(content_image, {cfg["content_layer"]})[cfg["content_layer"]]
        s = net.forward(style_image, set(cfg["style_layers"]))
        return p, {layer: gram(s[layer]) for layer in cfg["style_layers"]}


def evaluate(net, x_np, content_np, style_np, cfg, dtype):
    """Loss terms, features, targets and d total / d x, all in dtype."""
    x = torch.tensor(x_np, dtype=dtype, requires_grad=True)
    p, a = targets(net, cfg, torch.tensor(content_np, dtype=dtype), torch.tensor(style_np, dtype=dtype))
    losses, feats = objective(net, x, cfg, p, a)
    (grad,) = torch.autograd.grad(losses["total"], x)
    return losses, feats, p, a, grad


# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------

VGG_STYLE = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]

CASES = {
    "vgg19": {
        "description": "VGG-19 with synthetic weights (uniform_at seeds 1000+k, 2000+k), zero padding, "
                       "2x2/2 floor max pools; images uniform_at seeds 11 (x), 12 (content), 13 (style) "
                       "in [-100, 100)",
        "size": (48, 40), "style_size": (36, 44),
        "content_layer": "relu4_2", "style_layers": VGG_STYLE,
        "content_weight": 5.0, "style_weight": 100.0, "tv_weight": 1e-3,
    },
    "nin": {
        "description": "NIN (nin_imagenet_conv) with synthetic weights (uniform_at seeds 1000+k, 2000+k), "
                       "zero padding, 3x3/2 ceil-mode max pools; images uniform_at seeds 11 (x), "
                       "12 (content), 13 (style) in [-100, 100)",
        "size": (67, 59), "style_size": (71, 63),
        "content_layer": "relu7", "style_layers": ["relu0", "relu3", "relu7", "relu12"],
        "content_weight": 5.0, "style_weight": 100.0, "tv_weight": 1e-3,
    },
    "vgg_r31": {
        "description": "normalised VGG-19 up to relu3_1, real weights from vgg_r31.pth (conv2..conv6), zero "
                       "padding; RGB images uniform_at seeds 21 (x), 22 (content), 23 (style) in [0, 1) "
                       "mapped to the input domain by conv1 (colour transform) and rounded to float32",
        "size": (48, 40), "style_size": (36, 44),
        "content_layer": "relu3_1", "style_layers": ["relu1_1", "relu2_1", "relu3_1"],
        "content_weight": 5.0, "style_weight": 1e6, "tv_weight": 1e-3,
    },
}


def load_vgg_r31(path):
    """Backbone ops/params (float32 numpy) and the colour transform from vgg_r31.pth."""
    state = torch.load(str(path), map_location="cpu")
    names = {"conv2": "conv1_1", "conv3": "conv1_2", "conv4": "conv2_1", "conv5": "conv2_2",
             "conv6": "conv3_1"}
    params = {vgg: (state[key + ".weight"].numpy(), state[key + ".bias"].numpy())
              for key, vgg in names.items()}
    ops = truncate_ops(vgg19_ops(), {"relu3_1"})
    for op in ops:  # the file's shapes must match the VGG-19 description
        if op[0] == "conv":
            assert params[op[1]][0].shape == (op[3], op[2], op[4], op[4]), op
    matrix = state["conv1.weight"].numpy()[:, :, 0, 0]  # [out channel][in channel]
    bias = state["conv1.bias"].numpy()
    return ops, params, matrix, bias


def colour_transform(rgb, matrix, bias):
    """conv1 (a 1x1 conv) on a planar 3 x H x W image, in float64, rounded to float32."""
    m = torch.tensor(matrix, dtype=torch.float64)
    b = torch.tensor(bias, dtype=torch.float64)
    out = torch.einsum("oi,ihw->ohw", m, torch.tensor(rgb, dtype=torch.float64)) + b[:, None, None]
    return out.numpy().astype(np.float32)


def build_case(name, cfg, model_dir):
    """Network and images (float32 numpy, planar C x H x W) for a case, or None to skip."""
    (w, h), (sw, sh) = cfg["size"], cfg["style_size"]
    extra = {}
    if name == "vgg_r31":
        path = Path(model_dir) / "vgg_r31.pth"
        if not path.is_file():
            return None
        ops, params, matrix, bias = load_vgg_r31(path)
        net = Backbone(ops, params, torch.float64)
        # Five layers deep, float32 rounding stays near 1e-7 of a layer's
        # scale, and real filters put units closer to zero than synthetic ones.
        seed = pick_x_seed(net, 21, lambda seed: colour_transform(uniform_array(seed, (3, h, w), 0.0, 1.0),
                                                                 matrix, bias), margin=2e-7)
        x_rgb = uniform_array(seed, (3, h, w), 0.0, 1.0)
        content_rgb = uniform_array(22, (3, h, w), 0.0, 1.0)
        style_rgb = uniform_array(23, (3, sh, sw), 0.0, 1.0)
        x = colour_transform(x_rgb, matrix, bias)
        content = colour_transform(content_rgb, matrix, bias)
        style = colour_transform(style_rgb, matrix, bias)
        extra["colour_transform"] = {"matrix": matrix.astype(np.float64).tolist(),
                                     "bias": bias.astype(np.float64).tolist()}
        extra["input_x"] = x
    else:
        full = vgg19_ops() if name == "vgg19" else nin_ops()
        ops = truncate_ops(full, set(cfg["style_layers"]) | {cfg["content_layer"]})
        params = synthetic_params(ops)
        net = Backbone(ops, params, torch.float64)
        seed = pick_x_seed(net, 11, lambda seed: uniform_array(seed, (3, h, w), -100.0, 100.0))
        x = uniform_array(seed, (3, h, w), -100.0, 100.0)
        content = uniform_array(12, (3, h, w), -100.0, 100.0)
        style = uniform_array(13, (3, sh, sw), -100.0, 100.0)
    extra["x_seed"] = seed
    return ops, params, x, content, style, extra


# The smallest |pre-activation| a ReLU of x may have, relative to the largest
# in its layer. A unit closer to zero than float32 rounding (1e-7 to 1e-6 of the
# layer's scale, accumulated over the layers) may switch on in one
# implementation and off in the other, which moves the gradient over that
# unit's whole receptive field: a real float32 effect, not an error, so the
# golden x avoids it.
RELU_MARGIN = 1e-6


def relu_margin(net, x):
    """min over ReLUs of |pre-activation| / max |pre-activation| of its layer, for image x."""
    worst, h = float("inf"), torch.tensor(x, dtype=torch.float64).unsqueeze(0)
    with torch.no_grad():
        for op in net.ops:
            if op[0] == "conv":
                _, name, _, _, _, stride, pad = op
                w, b = net.params[name]
                h = tf.conv2d(h, w, b, stride=stride, padding=pad)
            elif op[0] == "relu":
                # Exact zeros (a filter that is all zero) are zero in every
                # implementation and never switch.
                a = h.abs()
                nonzero = a[a > 0]
                if nonzero.numel():
                    worst = min(worst, float(nonzero.min() / a.max()))
                h = torch.relu(h)
            else:
                _, kernel, stride, ceil_mode = op
                h = tf.max_pool2d(h, kernel, stride, ceil_mode=ceil_mode)
    return worst


def pick_x_seed(net, first_seed, make_x, margin=RELU_MARGIN):
    """The first of first_seed, first_seed + 100, ... whose x keeps every ReLU `margin` from its kink."""
    for seed in range(first_seed, first_seed + 100 * 50, 100):
        if relu_margin(net, make_x(seed)) > margin:
            return seed
    raise SystemExit("no x seed keeps the ReLUs away from their kinks")


def layer_order(ops, layers):
    """layers sorted by their position in the network."""
    order = [op[1] for op in ops if op[0] == "relu"]
    return sorted(layers, key=order.index)


def finite_difference_check(net, x, content, style, cfg, grad, count=8, step=1e-3):
    """Largest relative error of central differences of the float64 total against autograd.

    Pixels: a few fixed positions (corners, edges) plus seeded random ones.
    Relative to max(|g|, 1e-3 * max|grad|) so that near-zero entries don't dominate.
    """
    c, h, w = x.shape
    picks = [(0, 0, 0), (1, h - 1, w - 1), (2, 0, w - 1), (0, h - 1, 0)]
    rng = np.random.default_rng(12345)
    while len(picks) < count:
        picks.append((int(rng.integers(c)), int(rng.integers(h)), int(rng.integers(w))))
    p, a = targets(net, cfg, torch.tensor(content, dtype=torch.float64),
                   torch.tensor(style, dtype=torch.float64))
    scale = float(grad.abs().max())
    worst = 0.0
    with torch.no_grad():
        for pos in picks:
            values = []
            for sign in (1.0, -1.0):
                xp = torch.tensor(x, dtype=torch.float64)
                xp[pos] += sign * step
                values.append(float(objective(net, xp, cfg, p, a)[0]["total"]))
            fd = (values[0] - values[1]) / (2 * step)
            g = float(grad[pos])
            worst = max(worst, abs(fd - g) / max(abs(g), 1e-3 * scale))
    return worst


def relative_error(approx, exact):
    exact = exact.detach().double()
    return float((approx.detach().double() - exact).abs().max() / exact.abs().max().clamp_min(1e-300))


def run_case(name, cfg, model_dir, out_dir):
    built = build_case(name, cfg, model_dir)
    if built is None:
        print("%s: skipped (no %s)" % (name, Path(model_dir) / "vgg_r31.pth"))
        return None
    ops, params, x, content, style, extra = built

    net64 = Backbone(ops, params, torch.float64)
    losses, feats, p, a, grad = evaluate(net64, x, content, style, cfg, torch.float64)

    # Arrays, in the order they are laid out in the .bin.
    used = layer_order(ops, set(cfg["style_layers"]) | {cfg["content_layer"]})
    arrays = {}
    for layer in used:
        arrays["features/" + layer] = feats[layer]
    for layer in cfg["style_layers"]:
        g = gram(feats[layer])
        rows = min(32, g.shape[0])
        arrays["gram_diag/" + layer] = torch.diagonal(g)
        arrays["gram_rows/" + layer] = g[:rows]
        arrays["target_gram_rows/" + layer] = a[layer][:rows]
    arrays["content_target"] = p
    arrays["gradient"] = grad
    if "input_x" in extra:
        arrays["input_x"] = torch.from_numpy(extra["input_x"])
    arrays = {k: v.detach().numpy().astype("<f4") for k, v in arrays.items()}

    # Write the .bin (float32 little-endian, concatenated) and the manifest.
    index, offset = {}, 0
    for key, arr in arrays.items():
        index[key] = {"shape": list(arr.shape), "offset_floats": offset, "count": int(arr.size)}
        offset += int(arr.size)
    bin_path = Path(out_dir) / (name + ".bin")
    with open(bin_path, "wb") as f:
        for arr in arrays.values():
            f.write(np.ascontiguousarray(arr).tobytes())

    # Informational: how far PyTorch's own float32 evaluation lands from these
    # float64 values (depends on the CPU and PyTorch build; a hint for tolerances).
    net32 = Backbone(ops, params, torch.float32)
    l32, f32, p32, a32, g32 = evaluate(net32, x, content, style, cfg, torch.float32)
    f32_dev = {"gradient": relative_error(g32, grad), "content_target": relative_error(p32, p),
               "total": abs(float(l32["total"]) - float(losses["total"])) / abs(float(losses["total"]))}
    for layer in used:
        f32_dev["features/" + layer] = relative_error(f32[layer], feats[layer])

    fd_error = finite_difference_check(net64, x, content, style, cfg, grad)

    (w, h), (sw, sh) = cfg["size"], cfg["style_size"]
    manifest = {
        "case": name,
        "description": cfg["description"],
        "content_layer": cfg["content_layer"],
        "style_layers": list(cfg["style_layers"]),
        "content_weight": cfg["content_weight"],
        "style_weight": cfg["style_weight"],
        "tv_weight": cfg["tv_weight"],
        "image_size": {"x": [w, h], "style": [sw, sh]},
        "losses": {
            "content": float(losses["content"]),
            "style": float(losses["style"]),
            "style_per_layer": {k: float(v) for k, v in losses["style_per_layer"].items()},
            "tv": float(losses["tv"]),
            "total": float(losses["total"]),
        },
        "arrays": index,
    }
    manifest["x_seed"] = extra["x_seed"]
    if "colour_transform" in extra:
        manifest["colour_transform"] = extra["colour_transform"]
    manifest["float32_torch_max_rel_error"] = f32_dev
    manifest["finite_difference_max_rel_error"] = fd_error
    json_path = Path(out_dir) / (name + ".json")
    with open(json_path, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")

    # Re-read the .bin through the manifest and compare bit for bit.
    with open(json_path) as f:
        reread = json.load(f)
    data = np.fromfile(bin_path, dtype="<f4")
    assert data.size == offset, (data.size, offset)
    for key, entry in reread["arrays"].items():
        got = data[entry["offset_floats"]: entry["offset_floats"] + entry["count"]].reshape(entry["shape"])
        assert np.array_equal(got.view(np.uint32), arrays[key].view(np.uint32)), key
    assert fd_error < 1e-4, "%s: finite differences disagree with autograd (%g)" % (name, fd_error)

    print("%s: x %dx%d style %dx%d  content %.9g style %.9g tv %.9g total %.9g  |grad|max %.4g  "
          "fd-rel %.1e  f32-grad-rel %.1e  %s %d bytes"
          % (name, w, h, sw, sh, manifest["losses"]["content"], manifest["losses"]["style"],
             manifest["losses"]["tv"], manifest["losses"]["total"], float(grad.abs().max()),
             fd_error, f32_dev["gradient"], bin_path.name, bin_path.stat().st_size))
    return manifest


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_models = os.environ.get("TESSERA_MODEL_DIR") or str(REPO_ROOT.parent / "shared" / "models")
    parser.add_argument("--model-dir", default=default_models,
                        help="folder holding vgg_r31.pth (default: $TESSERA_MODEL_DIR or ../shared/models)")
    parser.add_argument("--out", default=str(REPO_ROOT / "tests" / "golden"),
                        help="where to write the golden files (default: tests/golden)")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES),
                        help="cases to write (default: all)")
    args = parser.parse_args()

    torch.set_grad_enabled(True)
    Path(args.out).mkdir(parents=True, exist_ok=True)

    for seed, index, lo, hi in SELF_CHECK:
        v = uniform_at(seed, index, lo, hi)
        print("uniform_at(%d, %d, %g, %g) = %s (%s)" % (seed, index, lo, hi, repr(float(v)), f32_hex(v)))
    a = synthetic_conv_bound(27)
    print("a(fan_in=27) = %s (%s); conv1_1 weight[0] = %s (%s)"
          % (repr(float(a)), f32_hex(a), repr(float(uniform_at(1000, 0, -a, a))), f32_hex(uniform_at(1000, 0, -a, a))))

    for name in args.cases:
        run_case(name, CASES[name], args.model_dir, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
