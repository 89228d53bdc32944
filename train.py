"""Entry point of the shared trainer: LoRA/LoKR fine-tuning of ACE-Step 1.5.

    python train.py                 # interactive wizard
    python train.py --help          # subcommands fixed, vanilla, estimate

See docs/training.md; the code lives in training/ (training.cli).
"""

import sys

from training.cli import main

if __name__ == "__main__":
    sys.exit(main())
