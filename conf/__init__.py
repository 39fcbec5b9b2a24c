"""domaintune's built-in configs. The wheel packages this folder as `domaintune.conf`, which Hydra
reads through `pkg://domaintune.conf`; Hydra needs this file to find it."""
