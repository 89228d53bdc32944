"""What a server's listeners like: `profile` learns it from their reactions (evidence,
feature scores, the lean for auto songs), `features` describes a song, `render` shows
it in embeds. The 👍/👎 buttons that collect the reactions are `bot.taste_buttons`.

The names below are what the store (`bot.store.taste`) reads the profile through.
"""

from bot.taste.profile import WINDOW, PlayEvidence, SongEvidence, TasteProfile, build_profile

__all__ = ["WINDOW", "PlayEvidence", "SongEvidence", "TasteProfile", "build_profile"]
