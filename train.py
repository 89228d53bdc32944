"""Entry point of the shared trainer (LoRA/LoKR fine-tuning of ACE-Step 1.5).

The trainer is not built yet (issue 7): this stub says so and exits with 2,
so that scripts calling it fail loudly instead of silently doing nothing.
"""

import sys

MESSAGE = (
    "train.py: the trainer is not implemented yet. Preprocessing, LoRA/LoKR training, "
    "resume and the wizard arrive with the trainer issue; see docs/training.md."
)


def main() -> int:
    print(MESSAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
