"""diffrl-plugin-diffusion: a diffusion actor head and Diffusion-QL's denoising loss term."""
