"""Train the CLIP text encoder, then the UNet2DConditionModel, from scratch on the procedural
shapes (cached VAE latents), and write the StableDiffusionPipeline folder.

Two phases:
  1. text encoder: a few thousand cheap steps teaching it to say, at the end-of-text positions,
     which colour is the shape's, which shape, and which colour the background's (three linear
     heads on the hidden states, thrown away afterwards). Binding "red" to the shape and "blue"
     to the background across word orders is the hard part of the prompt; learning it through
     the UNet's loss alone took most of the first model's budget and still failed.
  2. UNet, with the text encoder frozen: v-prediction on the zero-terminal-SNR schedule
     (common.build_scheduler), EMA.

    python -m atelier_runtime.embedded.train_unet [--steps N] [--seed 0]

Needs WORK_DIR/vae from train_vae, or --base (a pipeline folder an earlier run wrote: its VAE and
text encoder, no text-encoder phase). Writes WORK_DIR/unet_ckpt (fp32 training state, EMA weights)
and resources/models/atelier-shapes (fp16 safetensors; the shipped pipeline).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

from . import dataset as ds
from .common import MAX_TOKENS, PIPELINE_DIR, WORK_DIR, build_scheduler, build_text_encoder, build_tokenizer, build_unet, count, setup_torch, UNET_SIZES


def encode_latents(torch, vae, images, batch=256):
    """(mean, std) of the VAE posterior for uint8 N x H x W x 3 images, scaled by scaling_factor."""
    means, stds = [], []
    sf = vae.config.scaling_factor
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(images[i : i + batch]).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).contiguous()
            d = vae.encode(x).latent_dist
            means.append(d.mean * sf)
            stds.append(d.std * sf)
    return torch.cat(means), torch.cat(stds)


def vae_tag(folder: Path) -> str:
    """A latent-cache tag for a pipeline folder's VAE: its weights' hash, so two folders with the same
    VAE (every stage of one recipe) share the cache and a different VAE never reads stale latents."""
    import hashlib

    return "vae" + hashlib.sha256((folder / "vae" / "diffusion_pytorch_model.safetensors").read_bytes()).hexdigest()[:12]


def cached_latents(torch, vae, n, seed, tag):
    path = WORK_DIR / f"latents_{tag}_{n}_{seed}.pt"
    samples, images = ds.make_split(n, seed=seed)
    if path.exists():
        d = torch.load(path)
    else:
        t0 = time.time()
        mean, std = encode_latents(torch, vae, images)
        d = {"mean": mean, "std": std}
        torch.save(d, path)
        print(f"encoded {n} latents in {time.time() - t0:.0f}s", flush=True)
    return samples, images, d["mean"], d["std"]


class Captioner:
    """Random training captions (with 10% dropped to "" for classifier-free guidance), tokenized."""

    def __init__(self, torch, tokenizer, seed, drop=0.1):
        self.torch, self.tok, self.rng, self.drop = torch, tokenizer, random.Random(seed), drop
        self.cache: dict[str, list[int]] = {}

    def ids(self, text):
        if text not in self.cache:
            self.cache[text] = self.tok(text, padding="max_length", max_length=MAX_TOKENS, truncation=True).input_ids
        return self.cache[text]

    def __call__(self, samples):
        texts = ["" if self.rng.random() < self.drop else ds.caption(s.color, s.shape, s.background, self.rng) for s in samples]
        return self.torch.tensor([self.ids(t) for t in texts]), texts


def pretrain_text_encoder(torch, text_encoder, tokenizer, steps, seed, batch=128, lr=1e-3):
    """Phase 1 (see module doc). Returns held-out accuracies (unseen pairs x unseen phrasings)."""
    rng = random.Random(seed + 7)
    heads = torch.nn.ModuleDict({
        "color": torch.nn.Linear(text_encoder.config.hidden_size, len(ds.COLOR_NAMES)),
        "shape": torch.nn.Linear(text_encoder.config.hidden_size, len(ds.SHAPES)),
        "background": torch.nn.Linear(text_encoder.config.hidden_size, len(ds.COLOR_NAMES)),
    })
    params = list(text_encoder.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    eos = tokenizer.eos_token_id

    def batch_of(samples, templates=None):
        texts = [ds.caption(s.color, s.shape, s.background, rng, rng.choice(templates) if templates else None) for s in samples]
        ids = torch.tensor(tokenizer(texts, padding="max_length", max_length=MAX_TOKENS, truncation=True).input_ids)
        labels = {
            "color": torch.tensor([ds.COLOR_NAMES.index(s.color) for s in samples]),
            "shape": torch.tensor([ds.SHAPES.index(s.shape) for s in samples]),
            "background": torch.tensor([ds.COLOR_NAMES.index(s.background) for s in samples]),
        }
        return ids, labels

    def losses(ids, labels):
        h = text_encoder(ids)[0]  # B x T x H (after the final layer norm)
        after_eos = (ids == eos).float()  # the EOS token and the padding after it (pad = EOS)
        out, acc = 0.0, {}
        for k, head in heads.items():
            logits = head(h)  # B x T x K
            ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels[k].repeat_interleave(ids.shape[1]), reduction="none")
            out = out + (ce.view(ids.shape) * after_eos).sum() / after_eos.sum()
            first = (ids == eos).float().argmax(1)
            acc[k] = (logits[torch.arange(len(ids)), first].argmax(-1) == labels[k]).float().mean().item()
        return out, acc

    t0 = time.time()
    for step in range(steps):
        ids, labels = batch_of([ds.random_sample(rng) for _ in range(batch)])
        loss, acc = losses(ids, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 250 == 0 or step == steps - 1:
            print(f"text step {step} loss {loss.item():.4f} acc {acc} {time.time() - t0:.0f}s", flush=True)
    text_encoder.eval()
    held = [s for s in (ds.random_sample(rng, allow_held_out=True) for _ in range(4000)) if (s.color, s.shape) in ds.HELD_OUT_PAIRS][:256]
    with torch.no_grad():
        _, acc = losses(*batch_of(held, ds.HELD_OUT_TEMPLATES))
    print("text encoder on unseen pairs + unseen phrasings:", acc, flush=True)
    return acc


def cached_text_encoder(torch, text_encoder, tokenizer, steps, seed):
    """Phase 1, or its saved result: it is deterministic from (seed, steps), so a second UNet run
    (a different --fg-weight, say) reuses it instead of spending the same 8 minutes again."""
    from transformers import CLIPTextModel

    path = WORK_DIR / f"text_encoder_s{seed}_t{steps}"
    if (path / "accuracy.json").exists():
        text_encoder.load_state_dict(CLIPTextModel.from_pretrained(path, torch_dtype=torch.float32).state_dict())
        print("text encoder from", path, flush=True)
        return json.loads((path / "accuracy.json").read_text())
    acc = pretrain_text_encoder(torch, text_encoder, tokenizer, steps, seed)
    text_encoder.save_pretrained(path, safe_serialization=True)
    (path / "accuracy.json").write_text(json.dumps(acc))
    return acc


def foreground_weights(torch, samples, k):
    """1 + k on the 16x16 latent pixels the shape touches and a one-pixel ring around them (the
    background between a star's points is as much the shape as the points), 1 elsewhere."""
    import numpy as np

    t0 = time.time()
    masks = torch.from_numpy(np.stack([ds.shape_mask(s) for s in samples]))[:, None]
    f = ds.SIZE // 16
    lat = torch.nn.functional.max_pool2d(masks, f)
    lat = torch.nn.functional.max_pool2d((lat > 0.05).float(), 3, stride=1, padding=1)
    print(f"foreground maps in {time.time() - t0:.0f}s, mean coverage {lat.mean().item():.3f}", flush=True)
    return 1.0 + k * lat[:, 0]


def shipped_vae(base: Path | None = None):
    """The VAE a run ships: its --base folder's, or else the one whose decoder was fine-tuned
    (train_vae --phase decoder; the encoder, hence the latent space, is unchanged), or the phase-1
    VAE when that step was skipped."""
    import torch
    from diffusers import AutoencoderKL

    if base is not None:
        return AutoencoderKL.from_pretrained(base / "vae", torch_dtype=torch.float32).eval()
    ft = WORK_DIR / "vae_ft"
    return AutoencoderKL.from_pretrained(ft if ft.exists() else WORK_DIR / "vae").eval()


def save_pipeline(unet, text_encoder, tokenizer, vae, out: Path, dtype="float16"):
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=build_scheduler(),
        safety_checker=None, feature_extractor=None, image_encoder=None, requires_safety_checker=False,
    )
    if dtype == "float16":
        pipe = pipe.to(torch.float16)
    pipe.save_pretrained(out, safe_serialization=True)
    if dtype == "float16":
        pipe.to(torch.float32)
    # model_index.json: no safety checker / feature extractor / image encoder
    mi = json.loads((out / "model_index.json").read_text())
    mi["safety_checker"] = [None, None]
    mi["feature_extractor"] = [None, None]
    mi["image_encoder"] = [None, None]
    mi["requires_safety_checker"] = False
    (out / "model_index.json").write_text(json.dumps(mi, indent=2, sort_keys=True) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=8e-4)
    ap.add_argument("--ema", type=float, default=0.99)
    ap.add_argument("--n-images", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ckpt-every", type=int, default=50)
    ap.add_argument("--text-steps", type=int, default=1200)
    ap.add_argument("--min-snr", type=float, default=5.0)
    ap.add_argument("--fg-weight", type=float, default=3.0,
                    help="extra loss weight on the latent pixels in and around the shape (0 = plain MSE)")
    ap.add_argument("--ckpt-dir", default=str(WORK_DIR / "unet_ckpt"))
    ap.add_argument("--resume", action="store_true", help="continue from CKPT_DIR/state.pt")
    ap.add_argument("--base", default=None,
                    help="a pipeline folder this script wrote: take its VAE and (frozen) text encoder instead of "
                         "WORK/vae and the text-encoder phase")
    ap.add_argument("--init-unet", action="store_true", help="with --base: also start the UNet from its weights (fine-tuning)")
    ap.add_argument("--unet-size", choices=sorted(UNET_SIZES), default="small")
    ap.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant",
                    help="after the warmup: constant, or a cosine decay to 0 at --steps")
    ap.add_argument("--out", default=str(PIPELINE_DIR))
    args = ap.parse_args(argv)

    torch = setup_torch(args.seed)
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

    base = Path(args.base) if args.base else None
    if args.init_unet and not base:
        ap.error("--init-unet needs --base")
    # a later stage reads its VAE and text encoder from an earlier stage's output folder (fp16
    # weights, loaded as fp32), so the chain is reproducible from what that stage wrote
    vae = shipped_vae(base) if base else AutoencoderKL.from_pretrained(WORK_DIR / "vae").eval()
    samples, _, lat_mean, lat_std = cached_latents(torch, vae, args.n_images, 2000 + args.seed, vae_tag(base) if base else "train")
    print("latents", tuple(lat_mean.shape), "std", lat_mean.std().item(), flush=True)

    tokenizer = build_tokenizer()
    torch.manual_seed(args.seed)
    unet = build_unet(args.unet_size)
    torch.manual_seed(args.seed + 1)
    text_encoder = build_text_encoder(tokenizer)
    print("unet", count(unet), "text", count(text_encoder), flush=True)
    if base:
        if args.init_unet:
            unet.load_state_dict(UNet2DConditionModel.from_pretrained(base / "unet", torch_dtype=torch.float32).state_dict())
        text_encoder.load_state_dict(CLIPTextModel.from_pretrained(base / "text_encoder", torch_dtype=torch.float32).state_dict())
        text_acc = {"from": str(base)}
        print("VAE and text encoder from", base, "(and the UNet)" if args.init_unet else "", flush=True)
    else:
        text_acc = cached_text_encoder(torch, text_encoder, tokenizer, args.text_steps, args.seed)
    text_encoder.requires_grad_(False).eval()
    ema_unet = build_unet(args.unet_size)
    ema_unet.load_state_dict(unet.state_dict())
    ema_unet.requires_grad_(False).eval()
    pairs = list(zip(unet.parameters(), ema_unet.parameters()))

    noise_sched = DDPMScheduler.from_config(build_scheduler().config)
    alphas = noise_sched.alphas_cumprod
    snr = alphas / (1 - alphas)

    params = list(unet.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.99))
    warm = 50
    # constant LR after warmup (+ EMA): the state after K steps does not depend on --steps, so a
    # checkpoint at step K is exactly what `--steps K` produces. Cosine: the decay to 0 is what a
    # constant-LR run never gets (its weights keep jittering around the minimum at the full LR)
    def factor(s):
        if args.lr_schedule == "cosine" and s >= warm:
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, args.steps - warm))))
        return min(1.0, (s + 1) / warm)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    captioner = Captioner(torch, tokenizer, seed=args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    fg_map = foreground_weights(torch, samples, args.fg_weight) if args.fg_weight > 0 else None
    unet.train()
    t0 = time.time()
    running = 0.0
    ckpt = Path(args.ckpt_dir)
    start = 0
    if args.resume and (ckpt / "state.pt").exists():
        st = torch.load(ckpt / "state.pt", weights_only=False)
        unet.load_state_dict(st["unet"])
        ema_unet.load_state_dict(st["ema"])
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
        gen.set_state(st["gen"])
        captioner.rng.setstate(st["captioner"])
        running, start = st["running"], st["step"]
        t0 -= st["seconds"]
        print(f"resumed at step {start}", flush=True)
    for step in range(start, args.steps):
        idx = torch.randint(0, len(lat_mean), (args.batch,), generator=gen)
        z0 = lat_mean[idx] + lat_std[idx] * torch.randn(lat_mean[idx].shape, generator=gen)
        ids, _ = captioner([samples[i] for i in idx.tolist()])
        noise = torch.randn(z0.shape, generator=gen)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (args.batch,), generator=gen)
        zt = noise_sched.add_noise(z0, noise, t)
        with torch.no_grad():
            hidden = text_encoder(ids)[0]
        pred = unet(zt, t, hidden).sample
        target = noise_sched.get_velocity(z0, noise, t)
        # v-MSE equals (snr + 1) x the x0-MSE; weight so the x0 weight is clamp(snr, 1, min_snr):
        # min-SNR-gamma (Hang et al. 2023) for the low-noise end, but the high-noise end (where the
        # prompt decides the colours) keeps full weight instead of going to 0 at zero SNR
        w = torch.clamp(snr[t], min=1.0, max=args.min_snr) / (snr[t] + 1)
        err = (pred - target) ** 2
        if fg_map is not None:
            # the shape is a few percent of the pixels, the background the rest: without this the
            # loss is almost all background colour and the outline (star vs circle) barely counts
            m = fg_map[idx].unsqueeze(1)
            err = err * m / m.mean(dim=(2, 3), keepdim=True)
        loss = (err.mean(dim=(1, 2, 3)) * w).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for p, e in pairs:
                e.mul_(decay).add_(p.detach(), alpha=1 - decay)
        running = 0.98 * running + 0.02 * loss.item() if step else loss.item()
        if step % 25 == 0 or step == args.steps - 1:
            el = time.time() - t0
            print(f"step {step} loss {running:.4f} lr {sched.get_last_lr()[0]:.2e} {el:.0f}s eta {el / (step + 1) * (args.steps - step - 1) / 60:.1f}min", flush=True)
        if (step + 1) % args.ckpt_every == 0 or step == args.steps - 1:
            ema_unet.save_pretrained(ckpt / "unet", safe_serialization=True)
            text_encoder.save_pretrained(ckpt / "text_encoder", safe_serialization=True)
            state = {
                "unet": unet.state_dict(), "ema": ema_unet.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                "gen": gen.get_state(), "captioner": captioner.rng.getstate(), "running": running, "step": step + 1,
                "seconds": time.time() - t0,
            }
            torch.save(state, ckpt / "state.tmp")
            (ckpt / "state.tmp").replace(ckpt / "state.pt")
            (ckpt / "step.txt").write_text(json.dumps({"step": step + 1, "seconds": time.time() - t0, "loss": running}))

    total = time.time() - t0
    out = Path(args.out)
    save_pipeline(ema_unet, text_encoder, tokenizer, vae if base else shipped_vae(), out)
    info = {"base": args.base, "init_unet": args.init_unet, "unet_size": args.unet_size, "lr_schedule": args.lr_schedule, "lr": args.lr, "steps": args.steps, "batch": args.batch, "seconds": total, "final_loss": running, "text_encoder_heldout_accuracy": text_acc}
    (WORK_DIR / "unet_info.json").write_text(json.dumps(info, indent=1))
    print("saved", out, json.dumps(info), flush=True)


def export_checkpoint(argv=None):
    """Write the pipeline folder from WORK_DIR/unet_ckpt (the EMA weights after the last finished
    checkpoint), i.e. what `train_unet --steps <that step>` writes at its end."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(PIPELINE_DIR))
    ap.add_argument("--ckpt-dir", default=str(WORK_DIR / "unet_ckpt"))
    ap.add_argument("--base", default=None, help="the run's --base, whose VAE it used")
    args = ap.parse_args(argv)
    import torch
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    ckpt = Path(args.ckpt_dir)
    save_pipeline(
        UNet2DConditionModel.from_pretrained(ckpt / "unet", torch_dtype=torch.float32),
        CLIPTextModel.from_pretrained(ckpt / "text_encoder", torch_dtype=torch.float32),
        build_tokenizer(),
        shipped_vae(Path(args.base) if args.base else None),
        Path(args.out),
    )
    print("exported", (ckpt / "step.txt").read_text(), "->", args.out)


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 1 and sys.argv[1] == "export":
        export_checkpoint(sys.argv[2:])
    else:
        main()
