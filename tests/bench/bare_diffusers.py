"""The baseline for `npm run bench`: the same generations with diffusers alone.

No Atelier code: load the pipeline, set the scheduler, call it N times, save
each PNG. Prints one JSON line with the timings.
"""
import argparse
import json
import os
import time

t_start = time.perf_counter()
import torch  # noqa: E402
from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline  # noqa: E402

t_imported = time.perf_counter()

parser = argparse.ArgumentParser()
parser.add_argument("--model", required=True)
parser.add_argument("--n", type=int, default=5)
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

times = []
first_image_s = None
for i in range(args.n + 1):  # the first call warms up (as the app's cold start does) and is timed apart
    t0 = time.perf_counter()
    image = pipe(
        "a red circle on a white background",
        negative_prompt="blurry",
        num_inference_steps=args.steps,
        guidance_scale=7.0,
        width=args.size,
        height=args.size,
        generator=torch.Generator("cpu").manual_seed(args.seed + i),
    ).images[0]
    image.save(os.path.join(args.out, f"{i}.png"), compress_level=1)
    if device == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    if i == 0:
        first_image_s = time.perf_counter() - t_start
    else:
        times.append(dt)

print(json.dumps({
    "device": device,
    "import_s": t_imported - t_start,
    "load_s": t_loaded - t_imported,
    "first_image_s": first_image_s,
    "per_image_s": times,
}))
