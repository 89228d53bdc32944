"""What a server's listeners like: `profile` learns it from their reactions (evidence,
feature scores, the lean for auto songs), `features` describes a song, `render` shows
it in embeds. The 👍/👎 buttons that collect the reactions are `bot.taste.buttons`.
"""
