"""`python -m bot`: run the radio on Discord (see bot.app)."""

import sys

from bot.app import main

sys.exit(main())
