"""The slash commands and event listeners: thin handlers over bot.radio and the stations."""
