"""3D Grad-CAM (paper 4.6, eqs. 13-14) on the clips the att or the clip evidence selects, drawn over the frames.

y^m is the predicted class's logit of the head on ALL of the video's clips (head_outputs). Its gradient reaches a
selected clip's last conv feature map A (the backbone's `cam_layer`, caught with a forward hook) through the head,
the standardisation and the backbone's pooling: first d y^m / d v_i for every clip descriptor v_i (one backward
through the head), then, clip batch by clip batch, v_i.backward(that gradient) from A (the chain rule, exactly,
with bounded memory). alpha_{t,k} = mean over (i, j) of dy^m/dA^{t,k}_{ij} (eq. 13), M_t = ReLU(sum_k alpha_{t,k}
A^{t,k}) (eq. 14), upsampled trilinearly to the clip's frames and crop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gcf.analysis.predict import Model, Prediction, head_gradient
from gcf.errors import GcfError


@dataclass(frozen=True)
class Explanation:
    """Heat maps of the explained clips: indices [s], heat [s, T, S, S] in [0, 1] (one scale for the video)."""

    clips: np.ndarray
    heat: np.ndarray
    target: int


def select_clips(pred: Prediction, threshold: float, max_clips: int) -> np.ndarray:
    """Indices of the clips whose score (att or evidence, as the prediction's `by`) passes the threshold, at most
    `max_clips` of the highest, in temporal order."""
    score = pred.score
    above = np.flatnonzero(score > threshold)
    keep = above[np.argsort(-score[above], kind="stable")[:max_clips]]
    return np.sort(keep)


def grad_cam(backbone: torch.nn.Module, frames: np.ndarray, grads: np.ndarray, batch_size: int = 4) -> np.ndarray:
    """Eqs. 13-14 for clips uint8 [s, T, S, S, 3] given d y / d v of each, [s, d] -> maps [s, t, h, w] (unscaled)."""
    device = next(backbone.parameters()).device
    maps = []
    caught: list[torch.Tensor] = []

    def hook(module, inputs, output):     # A becomes a leaf: the graph (and memory) starts at the last conv map
        a = output.detach().requires_grad_(True)
        caught.append(a)
        return a

    handle = backbone.cam_layer.register_forward_hook(hook)
    try:
        for i in range(0, len(frames), batch_size):
            caught.clear()
            x = backbone.spec.normalize(torch.from_numpy(frames[i:i + batch_size]).to(device))
            with torch.enable_grad():
                v = backbone.descriptor(x)
                v.backward(torch.from_numpy(grads[i:i + batch_size]).to(device, v.dtype))
            a = caught[0]
            alpha = a.grad.mean(dim=(3, 4), keepdim=True)                   # eq. 13: [b, k, t, 1, 1]
            maps.append(torch.relu((alpha * a.detach()).sum(1)).cpu())      # eq. 14: [b, t, h, w]
    finally:
        handle.remove()
    return torch.cat(maps).numpy()


def upsample(maps: np.ndarray, frames: int, size: int) -> np.ndarray:
    """Maps [s, t, h, w] -> [s, frames, size, size], trilinear, scaled to [0, 1] by their common maximum."""
    x = torch.nn.functional.interpolate(torch.from_numpy(maps)[:, None], size=(frames, size, size),
                                        mode="trilinear", align_corners=False)[:, 0].clamp(min=0)
    top = float(x.max())
    return (x / top if top > 0 else x).numpy()


def overlay(frames: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """uint8 frames [..., H, W, 3] blended with the 'jet' colour of heat [..., H, W] in [0, 1]."""
    from matplotlib import colormaps

    colour = colormaps["jet"](heat)[..., :3] * 255.0
    return ((1 - alpha) * frames + alpha * colour).round().astype(np.uint8)


def caption(frame: np.ndarray, text: str) -> np.ndarray:
    """The frame with `text` on a black band above it (even height, for yuv420p video)."""
    from PIL import Image, ImageDraw

    band = 14 + (frame.shape[0] + 14) % 2
    img = Image.new("RGB", (frame.shape[1], frame.shape[0] + band))
    img.paste(Image.fromarray(frame), (0, band))
    ImageDraw.Draw(img).text((2, 1), text, fill=(255, 255, 255))
    return np.asarray(img)


def contact_sheet(frames: np.ndarray, heat: np.ndarray, titles: list[str], title: str, path: str | Path,
                  per_clip: int = 4) -> None:
    """A PNG grid: one row per explained clip, `per_clip` evenly spaced frames with their heat, row titles."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, t = frames.shape[:2]
    cols = np.linspace(0, t - 1, per_clip).round().astype(int)
    fig, axes = plt.subplots(s, per_clip, figsize=(1.9 * per_clip, 2.0 * s + 0.4), squeeze=False)
    for r in range(s):
        for c, f in enumerate(cols):
            ax = axes[r, c]
            ax.imshow(overlay(frames[r, f], heat[r, f]))
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(titles[r], fontsize=7)
            if r == 0:
                ax.set_title(f"frame +{f}", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_gif(frames: np.ndarray, path: str | Path, fps: float) -> None:
    """uint8 frames [N, H, W, 3] as a looping GIF."""
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)


def explain_video(model: Model, backbone: torch.nn.Module, path: str | Path, pred: Prediction, features: np.ndarray,
                  threshold: float, max_clips: int, size: int) -> tuple[Explanation, np.ndarray]:
    """Grad-CAM of the clips whose score (pred.by) passes `threshold` -> (Explanation, frames [s, T, size, size, 3]).

    The selected clips are decoded again: at the store's crop size for the backbone and at `size` for display
    (the same centre crop, so the heat lines up).
    """
    from gcf.extract.video import index_video, iter_clips

    meta = model.meta
    chosen = select_clips(pred, threshold, max_clips)
    if len(chosen) == 0:
        raise GcfError(f"{path}: no clip has {pred.by} above {threshold:g} (highest {pred.score.max():.3f}); "
                       "lower --threshold")
    target = pred.top(1)[0][0]
    grads = head_gradient(model.head, features, target)[2][chosen].numpy()
    wanted = set(chosen.tolist())
    inputs, shown, index = [], [], index_video(path)
    decode = lambda side: iter_clips(path, meta.clip_len, meta.stride, side, threads=0, index=index,  # noqa: E731
                                     frame_step=meta.frame_step)
    for i, (a, b) in enumerate(zip(decode(meta.input_size), decode(size))):
        if i in wanted:
            inputs.append(a.frames)
            shown.append(b.frames)
    maps = grad_cam(backbone, np.stack(inputs), grads)
    heat = upsample(maps, meta.clip_len, size)
    return Explanation(chosen, heat, target), np.stack(shown)
