"""trajcache: record diffusion-LM denoising trajectories once, score trajectory metrics many times."""

__version__ = "0.1.0"
