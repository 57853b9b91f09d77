"""Cheap previews: a linear latent -> RGB map, no VAE decode.

The 4x3 factors (and SDXL's bias) are the ones ComfyUI uses for its "latent2rgb" previews; they
apply to the scaled latents the denoising loop works on.
"""

from __future__ import annotations

import base64
import io

_FACTORS = {
    "sd15": (
        [
            #   R        G        B
            [0.3512, 0.2297, 0.3227],
            [0.3250, 0.4974, 0.2350],
            [-0.2829, 0.1762, 0.2721],
            [-0.2120, -0.2616, -0.7177],
        ],
        [0.0, 0.0, 0.0],
    ),
    "sdxl": (
        [
            [0.3651, 0.4232, 0.4341],
            [-0.2533, -0.0042, 0.1068],
            [0.1076, 0.1111, -0.0362],
            [-0.3165, -0.2492, -0.2188],
        ],
        [0.1084, -0.0175, -0.0011],
    ),
}


def latents_to_rgb(latents, family: str):
    """(4, h, w) or (1, 4, h, w) latents -> (h, w, 3) uint8 numpy array."""
    import torch

    factors, bias = _FACTORS[family]
    x = latents.detach()
    if x.ndim == 4:
        x = x[0]
    x = x.to(device="cpu", dtype=torch.float32)
    rgb = torch.einsum("chw,cr->hwr", x, torch.tensor(factors)) + torch.tensor(bias)
    rgb = ((rgb + 1.0) / 2.0).clamp(0.0, 1.0)
    return (rgb * 255.0).round().to(torch.uint8).numpy()


def preview_jpeg_base64(latents, family: str, max_side: int, quality: int = 75) -> str:
    """A base64 JPEG of the latents, scaled so that its longest side is ``max_side``."""
    from PIL import Image

    img = Image.fromarray(latents_to_rgb(latents, family))  # (h, w, 3) uint8 -> RGB
    w, h = img.size
    scale = max_side / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if size != img.size:
        img = img.resize(size, Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return base64.b64encode(buf.getvalue()).decode("ascii")
