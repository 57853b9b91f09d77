"""Train the AutoencoderKL (64x64 RGB -> 16x16x4 latents) on the procedural shapes.

    python -m atelier_runtime.embedded.train_vae [--steps 400] [--seed 0]          # phase 1 -> WORK_DIR/vae
    python -m atelier_runtime.embedded.train_vae --phase decoder [--decoder-steps 800]  # -> WORK_DIR/vae_ft

Writes WORK_DIR/vae (diffusers folder, fp32) with ``scaling_factor`` set to 1/std of the latents.
"""

from __future__ import annotations

import argparse
import json
import math
import time


from . import dataset as ds
from .common import WORK_DIR, build_vae, count, setup_torch


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--crop", type=int, default=32, help="train on random crops (the VAE is convolutional)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--kl", type=float, default=1e-6)
    ap.add_argument("--n-images", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--decoder-steps", type=int, default=800)
    ap.add_argument("--out", default=None)
    ap.add_argument("--phase", choices=["full", "decoder"], default="full",
                    help="full: train encoder+decoder on crops (-> WORK_DIR/vae); decoder: fine-tune only the "
                         "decoder on whole 64x64 images with the encoder frozen, so the latent space the UNet "
                         "is trained on does not change (-> WORK_DIR/vae_ft)")
    args = ap.parse_args(argv)
    if args.phase == "decoder":
        return finetune_decoder(args)
    args.out = args.out or str(WORK_DIR / "vae")

    torch = setup_torch(args.seed)
    t0 = time.time()
    _, images = ds.make_split(args.n_images, seed=1000 + args.seed)
    x_all = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).contiguous()  # NCHW-contiguous: channels-last is very slow here
    print(f"data {tuple(x_all.shape)} in {time.time() - t0:.1f}s", flush=True)

    torch.manual_seed(args.seed)
    vae = build_vae()
    print("vae params", count(vae), flush=True)
    opt = torch.optim.AdamW(vae.parameters(), lr=args.lr, weight_decay=0.0)
    warm = 30
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps))
    )
    gen = torch.Generator().manual_seed(args.seed)
    vae.train()
    t0 = time.time()
    for step in range(args.steps):
        idx = torch.randint(0, len(x_all), (args.batch,), generator=gen)
        x = x_all[idx].contiguous()
        if args.crop < x.shape[-1]:
            ox, oy = torch.randint(0, x.shape[-1] - args.crop + 1, (2,), generator=gen).tolist()
            x = x[:, :, oy : oy + args.crop, ox : ox + args.crop].contiguous()
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        rec = vae.decode(z).sample
        l1 = (rec - x).abs().mean()
        mse = ((rec - x) ** 2).mean()
        kl = post.kl().mean()
        loss = l1 + mse + args.kl * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == args.steps - 1:
            print(f"step {step} l1 {l1.item():.4f} mse {mse.item():.5f} kl {kl.item():.1f} {time.time() - t0:.0f}s", flush=True)

    vae.eval()
    with torch.no_grad():
        lat = torch.cat([vae.encode(x_all[i : i + 256]).latent_dist.mean for i in range(0, 2048, 256)])
        rec = torch.cat([vae.decode(lat[i : i + 256]).sample for i in range(0, 2048, 256)])
        err = (rec.clamp(-1, 1) - x_all[:2048]).abs().mul(127.5).mean().item()
    std = lat.std().item()
    vae.register_to_config(scaling_factor=1.0 / std)
    vae.save_pretrained(args.out, safe_serialization=True)
    info = {"latent_mean": lat.mean().item(), "latent_std": std, "recon_mae_0_255": err, "seconds": time.time() - t0, "steps": args.steps}
    (WORK_DIR / "vae_info.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info), flush=True)


def finetune_decoder(args):
    torch = setup_torch(args.seed + 1)
    from diffusers import AutoencoderKL

    steps = args.decoder_steps
    _, images = ds.make_split(args.n_images, seed=1000 + args.seed)
    x_all = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).contiguous()
    vae = AutoencoderKL.from_pretrained(WORK_DIR / "vae")
    vae.encoder.requires_grad_(False).eval()
    vae.quant_conv.requires_grad_(False)
    params = [p for p in vae.parameters() if p.requires_grad]
    print("decoder params", sum(p.numel() for p in params), flush=True)
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 30) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    gen = torch.Generator().manual_seed(args.seed + 1)
    batch = 16
    t0 = time.time()
    for step in range(steps):
        idx = torch.randint(0, len(x_all), (batch,), generator=gen)
        x = x_all[idx].contiguous()
        with torch.no_grad():
            post = vae.encode(x).latent_dist
            z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        rec = vae.decode(z).sample
        l1 = (rec - x).abs().mean()
        mse = ((rec - x) ** 2).mean()
        loss = l1 + mse
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"step {step} l1 {l1.item():.4f} mse {mse.item():.5f} {time.time() - t0:.0f}s", flush=True)
    vae.eval()
    with torch.no_grad():
        lat = torch.cat([vae.encode(x_all[i : i + 256]).latent_dist.mean for i in range(0, 1024, 256)])
        rec = torch.cat([vae.decode(lat[i : i + 256]).sample for i in range(0, 1024, 256)])
        err = (rec.clamp(-1, 1) - x_all[:1024]).abs().mul(127.5).mean().item()
    out = args.out or str(WORK_DIR / "vae_ft")
    vae.save_pretrained(out, safe_serialization=True)
    info = {"recon_mae_0_255": err, "seconds": time.time() - t0, "steps": steps}
    (WORK_DIR / "vae_ft_info.json").write_text(json.dumps(info, indent=1))
    print(json.dumps(info), flush=True)


if __name__ == "__main__":
    main()
