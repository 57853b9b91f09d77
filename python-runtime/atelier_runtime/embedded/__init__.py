"""The embedded default model ("atelier-shapes"): a small Stable Diffusion-format pipeline and a
canny ControlNet, trained from scratch on procedurally drawn shapes so Atelier works offline on
a CPU. See README.md in this folder for the recipe."""
