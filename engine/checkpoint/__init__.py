"""ACE-Step model files: find a checkpoint, read and convert the original layout to diffusers,
load the pipeline, download weights; the tiny random-weight model for tests."""
