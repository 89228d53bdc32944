"""The shared trainer: LoRA/LoKR fine-tuning of ACE-Step 1.5 (docs/training.md).

One library behind the CLI (`train.py`), the wizard and the bot. Entry points:

- `training.config.TrainConfig`: every setting (JSON round trip, `check(command)`);
- `training.preprocess.preprocess(config)`: audio folder -> training tensors;
- `training.loop.train(config, on_step=...)`: tensors -> adapter (`TrainResult`);
- `training.estimate.estimate(config)`: module sensitivity ranking;
- `training.launcher.launch_training(config)`: training in a child process with a
  JSON-lines progress stream (`TrainingJob.events()`) and a clean stop
  (`TrainingJob.request_stop()`), for the bot;
- `training.presets`: shipped VRAM-profile presets and saved ones.

Modules import torch lazily where they can, so `train.py --help` is instant.
"""
