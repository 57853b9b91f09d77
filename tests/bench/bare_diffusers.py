"""The baseline for `npm run bench`: the same generations with diffusers alone.

No Atelier code: load the pipeline, set the scheduler, then for every seed read
from stdin generate one image, save its PNG and print one JSON line with the
time. The bench alternates between this process and the app, so both see the
same machine (other load, thermal state) and the ratio stays fair.
"""
import argparse
import json
import os
import sys
import time

t_start = time.perf_counter()
import torch  # noqa: E402
from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline  # noqa: E402

t_imported = time.perf_counter()

parser = argparse.ArgumentParser()
parser.add_argument("--model", required=True)
parser.add_argument("--steps", type=int, default=20)
parser.add_argument("--size", type=int, default=256)
parser.add_argument("--seed", type=int, default=1)
parser.add_argument("--out", required=True)
args = parser.parse_args()

device = "cuda" if torch.cuda.is_available() else "cpu"
dtype = torch.float16 if device == "cuda" else torch.float32
pipe = StableDiffusionPipeline.from_pretrained(args.model, dtype=dtype, safety_checker=None, requires_safety_checker=False)
pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
pipe = pipe.to(device)
pipe.set_progress_bar_config(disable=True)
t_loaded = time.perf_counter()

def generate(seed: int, index: int) -> float:
    t0 = time.perf_counter()
    image = pipe(
        "a red circle on a white background",
        negative_prompt="blurry",
        num_inference_steps=args.steps,
        guidance_scale=7.0,
        width=args.size,
        height=args.size,
        generator=torch.Generator("cpu").manual_seed(seed),
    ).images[0]
    image.save(os.path.join(args.out, f"{index}.png"), compress_level=1)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


# The first image is the cold start (import + load + first call), reported apart.
generate(args.seed, 0)
print(json.dumps({"device": device, "import_s": t_imported - t_start, "load_s": t_loaded - t_imported, "first_image_s": time.perf_counter() - t_start}), flush=True)
for i, line in enumerate(sys.stdin, start=1):
    print(json.dumps({"seconds": generate(int(line), i)}), flush=True)
