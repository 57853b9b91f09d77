"""Train the canny ControlNetModel (initialised from the trained UNet, UNet and text encoder frozen)
on cv2.Canny(100, 200) edge maps of the procedural shapes.

    python -m atelier_runtime.embedded.train_controlnet [--steps N] [--seed 0]

Needs the pipeline from train_unet (resources/models/atelier-shapes, or WORK_DIR/unet_ckpt with
--from-ckpt). Writes resources/models/atelier-shapes-canny (fp16 safetensors).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from . import dataset as ds
from .common import CONTROLNET_DIR, PIPELINE_DIR, WORK_DIR, build_scheduler, count, setup_torch
from .train_unet import Captioner, cached_latents, vae_tag


def save(controlnet, out):
    import copy

    import torch

    copy.deepcopy(controlnet).to(torch.float16).save_pretrained(out, safe_serialization=True)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--n-images", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pipeline", default=str(PIPELINE_DIR))
    ap.add_argument("--out", default=str(CONTROLNET_DIR))
    ap.add_argument("--ckpt-every", type=int, default=50)
    args = ap.parse_args(argv)

    torch = setup_torch(args.seed)
    from diffusers import AutoencoderKL, ControlNetModel, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    pipe = Path(args.pipeline)
    # the pipeline's own VAE (its encoder is train_vae's, stored in fp16), as the UNet saw it with --base
    vae = AutoencoderKL.from_pretrained(pipe / "vae", torch_dtype=torch.float32).eval()
    unet = UNet2DConditionModel.from_pretrained(pipe / "unet", torch_dtype=torch.float32).eval().requires_grad_(False)
    text_encoder = CLIPTextModel.from_pretrained(pipe / "text_encoder", torch_dtype=torch.float32).eval().requires_grad_(False)
    tokenizer = CLIPTokenizer.from_pretrained(pipe / "tokenizer")
    # the same cached training latents as the UNet (same images, same held-out pairs)
    samples, _, lat_mean, lat_std = cached_latents(torch, vae, args.n_images, 2000 + args.seed, vae_tag(pipe))
    t0 = time.time()
    edges = np.stack([ds.canny_edges(s)[..., 0] for s in samples])  # N x 64 x 64 uint8
    edges = torch.from_numpy(edges)
    print(f"edges {tuple(edges.shape)} in {time.time() - t0:.0f}s", flush=True)

    torch.manual_seed(args.seed)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 64))
    controlnet.train()
    print("controlnet params", count(controlnet), flush=True)

    noise_sched = DDPMScheduler.from_config(build_scheduler().config)
    alphas = noise_sched.alphas_cumprod
    snr = alphas / (1 - alphas)
    opt = torch.optim.AdamW(controlnet.parameters(), lr=args.lr, weight_decay=0.0)
    warm = 50
    # constant LR after warmup: the weights after K steps do not depend on --steps, so the
    # checkpoint written at step K is exactly what `--steps K` writes at its end
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
    captioner = Captioner(torch, tokenizer, seed=args.seed + 7, drop=0.1)
    gen = torch.Generator().manual_seed(args.seed + 7)
    t0 = time.time()
    running = 0.0
    for step in range(args.steps):
        idx = torch.randint(0, len(lat_mean), (args.batch,), generator=gen)
        z0 = lat_mean[idx] + lat_std[idx] * torch.randn(lat_mean[idx].shape, generator=gen)
        cond = edges[idx].float().div(255.0)[:, None].expand(-1, 3, -1, -1)  # pipeline feeds [0, 1] RGB
        ids, _ = captioner([samples[i] for i in idx.tolist()])
        noise = torch.randn(z0.shape, generator=gen)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (args.batch,), generator=gen)
        zt = noise_sched.add_noise(z0, noise, t)
        with torch.no_grad():
            hidden = text_encoder(ids)[0]
        down, mid = controlnet(zt, t, encoder_hidden_states=hidden, controlnet_cond=cond, return_dict=False)
        pred = unet(zt, t, hidden, down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
        # the base model's objective (train_unet): v-prediction, x0 weight clamp(snr, 1, 5)
        target = noise_sched.get_velocity(z0, noise, t)
        w = torch.clamp(snr[t], min=1.0, max=5.0) / (snr[t] + 1)
        loss = (((pred - target) ** 2).mean(dim=(1, 2, 3)) * w).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(controlnet.parameters(), 1.0)
        opt.step()
        sched.step()
        running = 0.98 * running + 0.02 * loss.item() if step else loss.item()
        if step % 25 == 0 or step == args.steps - 1:
            el = time.time() - t0
            print(f"step {step} loss {running:.4f} {el:.0f}s eta {el / (step + 1) * (args.steps - step - 1) / 60:.1f}min", flush=True)
        if (step + 1) % args.ckpt_every == 0 and step < args.steps - 1:
            save(controlnet, args.out)
            (WORK_DIR / "controlnet_step.txt").write_text(json.dumps({"step": step + 1, "seconds": time.time() - t0, "loss": running}))

    total = time.time() - t0
    save(controlnet, args.out)
    info = {"steps": args.steps, "batch": args.batch, "seconds": total, "final_loss": running}
    (WORK_DIR / "controlnet_info.json").write_text(json.dumps(info, indent=1))
    print("saved", args.out, json.dumps(info), flush=True)


if __name__ == "__main__":
    main()
